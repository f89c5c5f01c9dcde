"""Synthetic FreeSurfer-like subjects (damt.synth): determinism, anatomy, stats format, bad cases."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damt import synth
from damt.cache.store import is_valid_id
from damt.labels import load_label_table

FILES = ("mri/brainmask.mgz", "mri/aparc+aseg.mgz", "stats/aseg.stats", "stats/lh.aparc.stats",
         "stats/rh.aparc.stats")
CTX_IDS = [*synth.DESIKAN_IDS, *(i + 1000 for i in synth.DESIKAN_IDS)]


def _data(path: Path) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


@pytest.fixture(scope="module")
def subject(tmp_path_factory) -> Path:
    """One default-size (160^3) synthetic subject."""
    return synth.make_subject(tmp_path_factory.mktemp("subj"), "synth-001", seed=7)


@pytest.fixture(scope="module")
def volumes(subject):
    return _data(subject / "mri/brainmask.mgz"), _data(subject / "mri/aparc+aseg.mgz")


def _table(path: Path) -> tuple[list[str], list[list[str]]]:
    """(ColHeaders names, rows split on whitespace) of a FreeSurfer stats file."""
    lines = path.read_text().splitlines()
    head = [ln for ln in lines if ln.startswith("# ColHeaders")]
    assert len(head) == 1
    return head[0].split()[2:], [ln.split() for ln in lines if ln and not ln.startswith("#")]


def _measures(path: Path) -> dict[str, float]:
    """Measure short name -> value ('# Measure a, name, description, value, unit')."""
    out = {}
    for ln in path.read_text().splitlines():
        if ln.startswith("# Measure "):
            parts = [p.strip() for p in ln[len("# Measure "):].split(",")]
            out[parts[-4].split()[0] if len(parts) == 4 else parts[1]] = float(parts[-2])
    return out


def test_deterministic_bytes(subject, tmp_path):
    again = synth.make_subject(tmp_path, "synth-001", seed=7)
    for f in FILES:
        assert (again / f).read_bytes() == (subject / f).read_bytes(), f
    other = synth.make_subject(tmp_path / "other", "synth-001", seed=8)
    assert (other / FILES[0]).read_bytes() != (subject / FILES[0]).read_bytes()


def test_grid_and_dtypes(subject, volumes):
    t1, lab = volumes
    img = nib.load(subject / "mri/brainmask.mgz")
    assert t1.shape == lab.shape == synth.DEFAULT_SHAPE
    assert t1.dtype == np.uint8 and lab.dtype.kind == "i" and lab.dtype.itemsize == 4
    assert nib.aff2axcodes(img.affine) == ("L", "I", "A")
    np.testing.assert_allclose(img.affine, synth.conformed_affine(synth.DEFAULT_SHAPE))
    np.testing.assert_allclose(nib.load(subject / "mri/aparc+aseg.mgz").affine, img.affine)
    np.testing.assert_allclose(img.header.get_zooms(), (1, 1, 1))


@pytest.fixture(scope="module")
def bert(data_dir) -> Path:
    """The real FreeSurfer subject (conftest's data_dir: DAMT_TEST_DATA, and a failure in CI)."""
    return data_dir / "fs_bert" / "bert"


def test_conformed_affine_matches_freesurfer(bert):
    img = nib.load(bert / "mri/brainmask.mgz")
    c_ras = img.affine @ np.array([128, 128, 128, 1.0])
    np.testing.assert_allclose(synth.conformed_affine((256, 256, 256), c_ras[:3]), img.affine, atol=1e-4)


def test_labels_in_table_and_anatomy(volumes):
    _, lab = volumes
    ids = set(np.unique(lab).tolist())
    assert ids <= set(load_label_table("damt-v1").fs_ids.tolist())
    required = {2, 41, 4, 43, 14, 10, 49, 11, 50, 12, 51, 13, 52, 17, 53, 18, 54, 8, 47, 7, 46, 16, 31, 63,
                251, 252, 253, 254, 255, *CTX_IDS}
    assert required <= ids, sorted(required - ids)
    assert not ids & {1004, 2004}


def test_intensity_contrast_and_zero_outside(volumes):
    from scipy import ndimage

    t1, lab = volumes
    brain = lab > 0
    assert (t1[brain] > 0).all()
    # zero outside the brain: nothing nonzero farther than a few voxels of CSF rim from the labels
    near = ndimage.binary_dilation(brain, ndimage.generate_binary_structure(3, 3), iterations=3)
    assert not t1[~near].any()
    assert t1[0].max() == t1[:, 0].max() == t1[..., -1].max() == 0

    def mean(ids):
        return t1[np.isin(lab, ids)].mean()

    wm, gm, csf, sub = mean([2, 41]), mean(CTX_IDS), mean([4, 43]), mean([10, 11, 12, 49, 50, 51])
    assert wm > sub > gm > csf
    assert 100 < wm < 120 and 60 < gm < 80 and 20 < csf < 40


def test_aseg_stats(subject, volumes):
    _, lab = volumes
    cols, rows = _table(subject / "stats/aseg.stats")
    assert cols == ["Index", "SegId", "NVoxels", "Volume_mm3", "StructName", "normMean", "normStdDev",
                    "normMin", "normMax", "normRange"]
    assert len(rows) == 45 and all(len(r) == 10 for r in rows)
    by_id = {int(r[1]): r for r in rows}
    for fs_id in (4, 17, 53, 255):
        assert int(by_id[fs_id][2]) == float(by_id[fs_id][3]) == np.count_nonzero(lab == fs_id) > 0
    assert by_id[10][4] == "Left-Thalamus-Proper"
    m = _measures(subject / "stats/aseg.stats")
    assert m["eTIV"] > m["MaskVol"] > m["BrainSegVol"] == np.count_nonzero(lab)
    assert m["lhCortexVol"] == np.isin(lab, synth.DESIKAN_IDS).sum()


def test_aparc_stats(subject, volumes):
    _, lab = volumes
    for h, hemi in enumerate(("lh", "rh")):
        path = subject / f"stats/{hemi}.aparc.stats"
        cols, rows = _table(path)
        assert cols == ["StructName", "NumVert", "SurfArea", "GrayVol", "ThickAvg", "ThickStd", "MeanCurv",
                        "GausCurv", "FoldInd", "CurvInd"]
        assert [r[0] for r in rows] == synth.DESIKAN
        assert int(rows[0][3]) == np.count_nonzero(lab == 1001 + 1000 * h)
        thick = np.array([float(r[4]) for r in rows])
        assert ((thick > 1.5) & (thick < 4.0)).all()
        m = _measures(path)
        assert 1.5 < m["MeanThickness"] < 4.0 and m["eTIV"] > 0
        assert f"# hemi {hemi}\n" in path.read_text() and "# subjectname synth-001\n" in path.read_text()


def test_stats_layout_matches_freesurfer6(subject, bert):
    """Same comment-line skeleton, TableCol block, ColHeaders and fixed-width rows as bert's files."""
    for name in ("aseg.stats", "lh.aparc.stats"):
        ours, real = (subject / "stats" / name).read_text(), (bert / "stats" / name).read_text()

        def keys(text):
            return [ln.split()[1] if ln.startswith("# ") and len(ln.split()) > 1 else ln
                    for ln in text.splitlines() if ln.startswith("#")]

        def fixed(text):
            heads = ("# TableCol", "# ColHeaders", "# NTableCols")
            return [ln for ln in text.splitlines() if ln.startswith(heads)]

        assert keys(ours) == keys(real)
        assert fixed(ours) == fixed(real)
        assert [m.rsplit(",", 2)[0] for m in ours.splitlines() if m.startswith("# Measure")] == \
            [m.rsplit(",", 2)[0] for m in real.splitlines() if m.startswith("# Measure")]
        ours_rows = [ln for ln in ours.splitlines() if not ln.startswith("#")]
        real_rows = [ln for ln in real.splitlines() if not ln.startswith("#")]
        assert [len(a) for a in ours_rows] == [len(b) for b in real_rows]


def test_cohort(tmp_path):
    ids = synth.make_cohort(tmp_path, n_subjects=3, seed=1, shape=(48, 48, 48))
    assert ids == ["synth-001", "synth-002", "synth-003"]
    blobs = {(tmp_path / s / "mri/brainmask.mgz").read_bytes() for s in ids}
    assert len(blobs) == 3
    assert len(set(synth.cohort_seeds(50, 1))) == 50
    assert synth.cohort_seeds(3, 1) == synth.cohort_seeds(3, 1) != synth.cohort_seeds(3, 2)


@settings(max_examples=8, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), shape=st.tuples(*[st.integers(32, 56)] * 3))
def test_any_seed_and_shape_is_valid(seed, shape):
    t1, lab, _ = synth._synth(seed, shape)
    assert t1.shape == lab.shape == shape and t1.dtype == np.uint8
    assert set(np.unique(lab).tolist()) <= set(load_label_table("damt-v1").fs_ids.tolist())
    assert (t1[lab > 0] > 0).all() and lab.any()


# ---- bad cases -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bad_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("bad")
    for kind in synth.BAD_CASES:
        synth.make_bad_case(root, kind)
    return root


def _mri(bad_dir: Path, kind: str) -> Path:
    return bad_dir / synth.bad_subject_id(kind) / "mri"


def test_bad_case_ids_and_files(bad_dir):
    assert len(set(synth.BAD_CASES)) == len(synth.BAD_CASES) == 14
    for kind in synth.BAD_CASES:
        sid = synth.bad_subject_id(kind)
        assert is_valid_id(sid) and sid.startswith("bad-")
        names = sorted(p.name for p in (bad_dir / sid / "mri").iterdir())
        nifti = kind in ("truncated_nii", "four_d", "singleton_4d", "nonfinite", "no_affine")
        if nifti:
            assert names == ["aparc+aseg.nii.gz", "brainmask.nii.gz"]
        elif kind == "missing_parcellation":
            assert names == ["brainmask.mgz"]
        elif kind == "binary_mask":
            assert names == ["aparc+aseg.mgz", "brainmask.mgz", "norm.mgz"]
        else:
            assert names == ["aparc+aseg.mgz", "brainmask.mgz"]
        assert (bad_dir / sid / "stats/aseg.stats").is_file()
    with pytest.raises(ValueError, match="unknown bad case"):
        synth.make_bad_case(bad_dir, "nope")


def test_bad_case_deterministic(bad_dir, tmp_path):
    for kind in ("truncated_nii", "not_an_image", "unknown_labels"):
        sid = synth.make_bad_case(tmp_path, kind)
        for p in sorted((bad_dir / sid).rglob("*")):
            if p.is_file():
                assert (tmp_path / sid / p.relative_to(bad_dir / sid)).read_bytes() == p.read_bytes()


def test_truncated(bad_dir):
    img = nib.load(_mri(bad_dir, "truncated_nii") / "brainmask.nii.gz")  # header decodes fine
    assert img.shape == synth.BAD_SHAPE
    with pytest.raises(EOFError, match="ended before the end-of-stream"):
        np.asanyarray(img.dataobj)
    # MGH: nibabel seeks past the data to the footer while loading, so load itself fails
    with pytest.raises(EOFError, match="ended before the end-of-stream"):
        np.asanyarray(nib.load(_mri(bad_dir, "truncated_mgz") / "brainmask.mgz").dataobj)
    _data(_mri(bad_dir, "truncated_mgz") / "aparc+aseg.mgz")  # the other file is intact


def test_not_an_image_and_missing(bad_dir):
    with pytest.raises(gzip.BadGzipFile, match="Not a gzipped file"):  # .mgz bytes that are no gzip stream
        nib.load(_mri(bad_dir, "not_an_image") / "brainmask.mgz")
    assert not list(_mri(bad_dir, "missing_parcellation").glob("aparc+aseg*"))


def test_grid_and_affine_mismatch(bad_dir):
    g = _mri(bad_dir, "grid_mismatch")
    assert nib.load(g / "aparc+aseg.mgz").shape != nib.load(g / "brainmask.mgz").shape
    a = _mri(bad_dir, "affine_mismatch")
    t1, lab = nib.load(a / "brainmask.mgz"), nib.load(a / "aparc+aseg.mgz")
    assert t1.shape == lab.shape
    np.testing.assert_allclose(lab.affine[:3, 3] - t1.affine[:3, 3], [5, 0, 0])
    np.testing.assert_allclose(lab.affine[:3, :3], t1.affine[:3, :3])


def test_four_d_and_singleton(bad_dir):
    assert nib.load(_mri(bad_dir, "four_d") / "brainmask.nii.gz").shape == (*synth.BAD_SHAPE, 3)
    single = _mri(bad_dir, "singleton_4d")
    img = nib.load(single / "brainmask.nii.gz")
    assert img.ndim == 4 and img.shape[-1] == 1
    t1, lab = np.asanyarray(img.dataobj)[..., 0], _data(single / "aparc+aseg.nii.gz")
    assert t1.dtype == np.uint8 and t1.shape == lab.shape and (t1[lab > 0] > 0).all()  # otherwise valid


def test_nonfinite_constant_empty_unknown(bad_dir):
    data = _data(_mri(bad_dir, "nonfinite") / "brainmask.nii.gz")
    assert data.dtype == np.float32
    assert np.isnan(data).sum() == 3 and np.isinf(data).sum() == 3 and np.isfinite(data).sum() > 1000
    const = _data(_mri(bad_dir, "constant") / "brainmask.mgz")
    assert const.min() == const.max() > 0
    assert not _data(_mri(bad_dir, "empty") / "brainmask.mgz").any()
    lab = _data(_mri(bad_dir, "unknown_labels") / "aparc+aseg.mgz")
    assert 0 < np.count_nonzero(lab == 9999) <= 10
    table = set(load_label_table("damt-v1").fs_ids.tolist())
    assert set(np.unique(lab).tolist()) - table == {9999}


def test_no_affine(bad_dir):
    for name in ("brainmask.nii.gz", "aparc+aseg.nii.gz"):
        img = nib.load(_mri(bad_dir, "no_affine") / name)
        assert int(img.header["qform_code"]) == 0 and int(img.header["sform_code"]) == 0
    ok = nib.load(_mri(bad_dir, "four_d") / "aparc+aseg.nii.gz")  # valid NIfTI cases carry codes 1/1
    assert int(ok.header["qform_code"]) == int(ok.header["sform_code"]) == 1


def test_binary_mask(bad_dir):
    mri = _mri(bad_dir, "binary_mask")
    mask, norm = _data(mri / "brainmask.mgz"), _data(mri / "norm.mgz")
    assert set(np.unique(mask).tolist()) == {0, 1}
    assert norm.dtype == np.uint8 and norm.max() > 50
    np.testing.assert_array_equal(mask, norm > 0)
