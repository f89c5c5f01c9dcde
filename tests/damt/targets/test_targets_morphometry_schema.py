"""Morphometry schema and vector: stats values, parcellation fallback, presence flags."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from damt.targets.fsstats import read_stats_dir
from damt.targets.schema import (
    SchemaError,
    id_counts,
    load_schema,
    morphometry_from_values,
    morphometry_vector,
    parse_schema,
)


@pytest.fixture(scope="module")
def schema():
    return load_schema("damt-v1")


def _parcellation(subject: Path) -> tuple[np.ndarray, float]:
    img = nib.load(subject / "mri" / "aparc+aseg.mgz")
    return np.asarray(img.dataobj), float(abs(np.linalg.det(img.affine[:3, :3])))


def test_schema_layout(schema):
    assert len(schema) == 334
    assert schema.group_mask("global").sum() == 25 and schema.group_mask("local").sum() == 309
    assert len(set(schema.names)) == len(schema)
    g = schema.group_mask("global")
    assert not g[np.argmax(~g):].any()          # global block first, then local
    assert schema.parcellation_derivable.sum() == 8 + 37 + 68
    i = schema.names.index("aseg.Left-Thalamus-Proper.Volume_mm3")
    assert schema.aliases[i] == ("aseg.Left-Thalamus.Volume_mm3",) and schema.parc_ids[i] == (10,)
    i = schema.names.index("aseg.measure.lhCortexVol")
    assert schema.parc_ids[i] == (3, *range(1000, 1036))
    assert all(u for u in schema.units)


def test_bert_all_present_from_stats(fs_data: Path, schema):
    bert = fs_data / "fs_bert" / "bert"
    values, present = morphometry_vector(bert / "stats", None, 1.0, schema)
    assert values.dtype == np.float32 and present.dtype == bool and values.shape == (334,)
    assert present.all() and np.isfinite(values).all()
    stats, _, _ = read_stats_dir(bert / "stats")
    for name in ("aseg.measure.eTIV", "aseg.Left-Hippocampus.Volume_mm3",
                 "lh.aparc.superiorfrontal.ThickAvg", "rh.aparc.insula.MeanCurv"):
        assert values[schema.names.index(name)] == np.float32(stats[name])


def test_bert_parcellation_fallback_and_preference(fs_data: Path, schema):
    bert = fs_data / "fs_bert" / "bert"
    parc, voxvol = _parcellation(bert)
    assert voxvol == pytest.approx(1.0)
    from_stats, _ = morphometry_vector(bert / "stats", parc, voxvol, schema)
    no_stats, present = morphometry_vector(None, parc, voxvol, schema)
    derivable = schema.parcellation_derivable
    assert (present == derivable).all()
    assert (no_stats[~present] == 0.0).all() and np.isfinite(no_stats).all()
    # voxel counts equal aseg.stats NVoxels exactly (same segmentation, 1 mm voxels)
    stats, _, _ = read_stats_dir(bert / "stats")
    i = schema.names.index("aseg.Left-Hippocampus.Volume_mm3")
    assert no_stats[i] == stats["aseg.Left-Hippocampus.NVoxels"] == 4424
    # cortical grey volumes and global tissue volumes agree closely with the surface-based stats
    for name in ("lh.aparc.superiorfrontal.GrayVol", "aseg.measure.CortexVol",
                 "aseg.measure.SubCortGrayVol", "aseg.measure.TotalGrayVol"):
        j = schema.names.index(name)
        assert no_stats[j] == pytest.approx(from_stats[j], rel=0.06), name
    preferred, pres2 = morphometry_vector(bert / "stats", parc, voxvol, schema,
                                          prefer_parcellation=True)
    assert pres2.all()
    assert (preferred[derivable] == no_stats[derivable]).all()
    assert (preferred[~derivable] == from_stats[~derivable]).all()


def test_aseg_only_subjects(fs_data: Path, schema):
    is_aparc = np.asarray([n.startswith(("lh.", "rh.")) for n in schema.names])
    for name in ("sub-01", "sub-09"):
        sub = fs_data / "fs_training_data" / name
        parc, voxvol = _parcellation(sub)
        values, present = morphometry_vector(sub / "stats", parc, voxvol, schema)
        assert np.isfinite(values).all()
        assert present[~is_aparc].all()                       # everything aseg.stats has
        assert (present[is_aparc] == schema.parcellation_derivable[is_aparc]).all()
        grayvol = np.asarray([n.endswith(".GrayVol") for n in schema.names])
        assert present[grayvol].all() and (values[grayvol] > 0).all()   # from the parcellation
        assert not present[is_aparc & ~grayvol].any()         # thickness, area, curvature: unknown
        assert (values[~present] == 0.0).all()


def test_subject_without_stats_or_parcellation(fs_data: Path, schema):
    sub05 = fs_data / "fs_training_data" / "sub-05"
    values, present = morphometry_vector(sub05 / "stats", None, 1.0, schema)
    assert not present.any() and (values == 0).all()


def test_counts_and_aliases_without_files(schema):
    parc = np.zeros((4, 4, 4), dtype=np.int32)
    parc[0, :2] = 10                       # 8 voxels of Left-Thalamus(-Proper)
    parc[1] = 3000                         # an id beyond every schema id
    parc[2, 0, 0] = -1                     # never written by FreeSurfer: ignored
    counts = id_counts(parc)
    values, present = morphometry_from_values({"aseg.Left-Thalamus.Volume_mm3": 7.0}, counts, 0.5,
                                              schema)
    i = schema.names.index("aseg.Left-Thalamus-Proper.Volume_mm3")
    assert values[i] == 7.0                # FS 7 name found through the alias
    values, present = morphometry_from_values({}, counts, 0.5, schema)
    assert values[i] == 4.0 and present[i]   # 8 voxels x 0.5 mm^3
    j = schema.names.index("aseg.Left-Hippocampus.Volume_mm3")
    assert present[j] and values[j] == 0.0   # derivable and absent from the image: a real 0
    with pytest.raises(ValueError, match="voxel_volume_mm3"):
        morphometry_vector(None, parc, 0.0, schema)
    with pytest.raises(ValueError, match="integer"):
        id_counts(parc.astype(np.float32))


@pytest.mark.parametrize("body, needle", [
    ("a\tmiddle\tmm\t-\t-\td\n", "group must be"),
    ("a\tlocal\tmm\t-\t-\td\nb\tglobal\tmm\t-\t-\td\n", "before local"),
    ("a\tglobal\tmm\t-\t-\td\na\tlocal\tmm\t-\t-\td\n", "used twice"),
    ("a\tglobal\tmm\t4,x\t-\td\n", "parc_ids"),
    ("a\tglobal\tmm\t-\td\n", "6 tab-separated"),
])
def test_schema_errors(body: str, needle: str):
    text = "# c\nname\tgroup\tunit\tparc_ids\taliases\tdescription\n" + body
    with pytest.raises(SchemaError, match=needle):
        parse_schema(text, "t")
    with pytest.raises(SchemaError, match="no such built-in"):
        load_schema("nope-v9")
