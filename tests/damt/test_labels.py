"""Label table: versioned file, checked at load, every id remaps as listed, names from the LUT."""

from __future__ import annotations

import hashlib

import nibabel as nib
import numpy as np
import pytest

from damt.labels import LabelTableError, class_colours, load_label_table, parse_label_table, remap

HEADER = "fs_id\tclass\tclass_name\tfs_name\n"


def test_builtin_table_shape():
    t = load_label_table("damt-v1")
    assert t.n_classes == 101 and t.version == "damt-v1" and len(t.sha256) == 64
    assert len(set(t.fs_ids.tolist())) == len(t.fs_ids)
    assert sorted(set(t.classes.tolist())) == list(range(101))
    desikan = [i for i, c in zip(t.fs_ids, t.classes) if i > 1000 and c != 0 and c != 32]
    assert len(desikan) == 68 and 1004 not in desikan and 2004 not in desikan
    for excluded in (251, 255, 30, 31, 62, 63, 72, 80, 85):  # METHOD.md: left out -> background
        assert t.classes[list(t.fs_ids).index(excluded)] == 0


def test_every_table_id_remaps_as_listed():
    t = load_label_table("damt-v1")
    classes, unknown = remap(t.fs_ids.reshape(-1, 1, 1), t.lookup())
    assert unknown == {} and classes.dtype == np.uint8
    np.testing.assert_array_equal(classes.ravel(), t.classes)


def test_names_come_from_freesurfer_lut(data_dir):
    lut = {}
    for line in (data_dir / "freesurfer_lut" / "FreeSurferColorLUT.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            lut.setdefault(int(parts[0]), parts[1])
    t = load_label_table("damt-v1")
    for fs_id, name in zip(t.fs_ids, t.fs_names):
        assert lut[int(fs_id)] == name


def test_real_parcellations_have_no_unknown_ids(data_dir):
    t = load_label_table("damt-v1")
    for f in sorted(data_dir.glob("*/*/mri/aparc+aseg.mgz")):
        ids = np.asanyarray(nib.load(f).dataobj)
        classes, unknown = remap(ids, t.lookup())
        assert unknown == {}, f
        assert len(np.unique(classes)) > 90  # most structures are present in every real subject


def test_unknown_ids_counted_and_mapped_to_background():
    t = load_label_table("damt-v1")
    classes, unknown = remap(np.array([17, 9999, 9999, -3, 70000]), t.lookup())
    assert classes.tolist()[1:] == [0, 0, 0, 0] and classes[0] > 0
    assert unknown == {9999: 2, -3: 1, 70000: 1}


@pytest.mark.parametrize("body,match", [
    ("0\t0\tbg\tUnknown\n2\t1\twm\tWM\n2\t1\twm\tWM\n", "duplicate FreeSurfer ids"),
    ("0\t0\tbg\tUnknown\n2\t2\twm\tWM\n", "contiguous"),
    ("0\t0\tbg\tUnknown\n2\t1\twm\tWM\n3\t1\tgm\tGM\n", "named both"),
    ("0\t1\tbg\tUnknown\n2\t0\twm\tWM\n", "id 0 must map to class 0"),
    ("0\t0\tbg\n", "4 tab-separated"),
])
def test_malformed_tables_rejected(body, match):
    with pytest.raises(LabelTableError, match=match):
        parse_label_table(HEADER + body, "test")


def test_unknown_table_name():
    with pytest.raises(LabelTableError, match="no such built-in label table"):
        load_label_table("damt-v9")


def _lut_rgb(data_dir):
    lut = {}
    for line in (data_dir / "freesurfer_lut" / "FreeSurferColorLUT.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0].isdigit():
            lut.setdefault(int(parts[0]), tuple(int(v) for v in parts[2:5]))
    return lut


def test_class_colours_are_the_freesurfer_lut_colours(data_dir, repo):
    t = load_label_table("damt-v1")
    rgb = class_colours("damt-v1", t)
    assert rgb.shape == (101, 3) and rgb.dtype == np.uint8
    lut = _lut_rgb(data_dir)
    rows = [ln.split("\t") for ln in (repo / "damt/labels/damt-v1.colours.tsv").read_text().splitlines()
            if ln and not ln.startswith("#")][1:]
    for cls, name, fs_id, *_ in rows:  # each colour is its source id's LUT colour, and that id is of the class
        cls, fs_id = int(cls), int(fs_id)
        assert tuple(rgb[cls]) == lut[fs_id] and t.classes[list(t.fs_ids).index(fs_id)] == cls
        assert t.class_names[cls] == name
    assert tuple(rgb[2]) == (120, 18, 134) and tuple(rgb[0]) == (0, 0, 0)  # Left-Lateral-Ventricle purple
    # colours live beside the table: the table's hash (in the preprocess config hash) is its own bytes
    assert t.sha256 == hashlib.sha256((repo / "damt/labels/damt-v1.tsv").read_bytes()).hexdigest()


def test_class_colours_of_a_table_by_path(tmp_path):
    table = tmp_path / "mine.tsv"
    table.write_text(HEADER + "0\t0\tbg\tUnknown\n2\t1\twm\tWM\n")
    t = load_label_table(str(table))
    assert class_colours(str(table), t) is None  # no colour file: the caller picks its own palette
    colours = tmp_path / "mine.colours.tsv"
    head = "class\tclass_name\tfs_id\tr\tg\tb\n"
    colours.write_text(head + "0\tbg\t0\t0\t0\t0\n1\twm\t2\t245\t245\t245\n")
    assert class_colours(str(table), t).tolist() == [[0, 0, 0], [245, 245, 245]]
    for body, match in [("0\tbg\t0\t0\t0\t0\n", "no colour for classes \\[1\\]"),
                        ("0\tbg\t0\t0\t0\t0\n1\tgm\t2\t1\t1\t1\n", "is not a class"),
                        ("0\tbg\t0\t0\t0\t0\n1\twm\t2\t1\t1\t300\n", "outside 0..255"),
                        ("0\tbg\t0\t0\t0\n", "expected class")]:
        colours.write_text(head + body)
        with pytest.raises(LabelTableError, match=match):
            class_colours(str(table), t)
