"""`damt preprocess` on the real FreeSurfer subjects in ../shared/data: geometry, intensities,
label remapping, the real failure cases, and incremental behaviour (no-op rerun, rebuilds)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from damt import geometry as geo
from damt.cache import open_subject, read_manifest, read_store_attrs
from damt.config import load_config
from damt.labels import load_label_table, remap
from preprocess.run import run_preprocess


def _cfg(*inputs, extra=()):
    return load_config(None, [f"data.inputs={list(map(str, inputs))}", *extra])


def _snapshot(cache: Path) -> dict[str, int]:
    return {str(p.relative_to(cache)): p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def built(data_dir, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    cfg = _cfg(data_dir / "fs_training_data", data_dir / "fs_bert")
    summary = run_preprocess(cfg, cache, workers=0, progress=False)
    return cache, summary, read_manifest(cache).set_index("subject_id")


def test_cohort_completes_with_the_real_failure(built):
    _, summary, man = built
    assert summary.found == 10 and summary.ok == 9 and summary.failed == 1
    assert man.loc["sub-05", "status"] == "failed"
    assert man.loc["sub-05", "reason"] == "missing_parcellation"
    assert "aparc+aseg" in man.loc["sub-05", "message"]
    assert (man.drop(index="sub-05")["status"] == "ok").all()


def test_store_contract(built):
    cache, _, man = built
    g = open_subject(cache / man.loc["bert", "store"])
    img, atlas = g["image"], g["atlas"]
    assert img.dtype == np.float16 and atlas.dtype == np.uint8 and img.shape == atlas.shape
    # the default layout: slabs 16 voxels thick across the longest axis (y: 156), whole on x and z
    assert min(img.shape) >= 128 and img.shape[1] == max(img.shape) and img.chunks == (img.shape[0], 16, img.shape[2])
    a = read_store_attrs(cache / man.loc["bert", "store"])
    assert a["layout"] == {"chunks": "slab", "slab_vox": 16, "codec": "lz4hc", "clevel": 5, "shuffle": "shuffle"}
    assert a["spacing_mm"] == 1.25 and a["original_axcodes"] == "LIA" and a["axcodes"] == "RAS"
    assert a["label_table"]["version"] == "damt-v1" and a["input_hash"] == man.loc["bert", "input_hash"]
    assert a["config_hash"] == man.loc["bert", "config_hash"] and a["software_version"]


def test_geometry_extent_and_world_position(built, data_dir):
    cache, _, man = built
    a = read_store_attrs(cache / man.loc["bert", "store"])
    crop = np.diff(np.asarray(a["crop_box_vox"]), axis=1).ravel()          # voxels at 1 mm
    extent_in = np.sort(crop * np.asarray(a["original_spacing_mm"]))
    extent_out = np.sort(np.asarray(a["resampled_shape"]) * 1.25)
    assert np.all(np.abs(extent_out - extent_in) <= 1.25)                 # within one voxel
    # the left hippocampus centroid is at the same world position before and after (within a voxel)
    src = nib.load(data_dir / "fs_bert/bert/mri/aparc+aseg.mgz")
    ids = np.asanyarray(src.dataobj)
    c_in = np.argwhere(ids == 17).mean(axis=0)
    world_in = src.affine[:3, :3] @ c_in + src.affine[:3, 3]
    table = load_label_table("damt-v1")
    hippo = int(table.classes[list(table.fs_ids).index(17)])
    atlas = open_subject(cache / man.loc["bert", "store"])["atlas"][...]
    aff = np.asarray(a["affine"])
    world_out = aff[:3, :3] @ np.argwhere(atlas == hippo).mean(axis=0) + aff[:3, 3]
    assert np.linalg.norm(world_in - world_out) < 1.25
    # and its volume is kept to within 5 %
    assert abs((atlas == hippo).sum() * 1.25 ** 3 - (ids == 17).sum()) / (ids == 17).sum() < 0.05


def test_intensities_scaled_inside_the_brain(built):
    cache, _, man = built
    for sid in man.index[man["status"] == "ok"]:
        g = open_subject(cache / man.loc[sid, "store"])
        img = g["image"][...].astype(np.float32)
        a = read_store_attrs(cache / man.loc[sid, "store"])
        assert img.min() >= 0.0 and img.max() <= 1.0
        brain = img[img > 0]
        n = a["brain_voxels"]
        assert 0.5 * n < brain.size <= n
        # 99.95th percentile -> 1: about 0.05 % of brain voxels clip at the top (float16 rounding
        # near 1.0 allows a few more)
        assert (brain >= 1.0).sum() <= 0.002 * n
        lo, hi = a["percentile_values"]
        assert 0 <= lo < hi


def test_labels_remapped_as_the_table_says(built, data_dir):
    cache, _, man = built
    table = load_label_table("damt-v1")
    atlas = open_subject(cache / man.loc["sub-01", "store"])["atlas"][...]
    ids = np.asanyarray(nib.load(data_dir / "fs_training_data/sub-01/mri/aparc+aseg.mgz").dataobj)
    expected, _ = remap(ids, table.lookup())
    present_in = set(np.unique(expected).tolist())
    present_out = set(np.unique(atlas).tolist())
    assert present_out <= present_in and len(present_in - present_out) <= 2   # tiny structures may vanish
    assert atlas.max() < table.n_classes


def test_rerun_is_a_no_op(built, data_dir):
    cache, _, _ = built
    before = _snapshot(cache)
    summary = run_preprocess(_cfg(data_dir / "fs_training_data", data_dir / "fs_bert"), cache, workers=0,
                             progress=False)
    assert summary.processed == 0 and summary.skipped == 10 and not summary.manifest_written
    assert _snapshot(cache) == before


def test_training_settings_change_rebuilds_nothing(built, data_dir):
    cache, _, _ = built
    cfg = _cfg(data_dir / "fs_training_data", data_dir / "fs_bert", extra=["train.epochs=3", "model.embed_dim=24"])
    assert run_preprocess(cfg, cache, workers=0, progress=False).processed == 0


@pytest.fixture()
def small_cohort(data_dir, tmp_path):
    """A writable copy of three real subjects."""
    root = tmp_path / "cohort"
    for sid in ("sub-02", "sub-03", "sub-05"):
        shutil.copytree(data_dir / "fs_training_data" / sid, root / sid)
    return root


def test_input_change_rebuilds_only_that_subject(small_cohort, tmp_path):
    cache = tmp_path / "cache"
    cfg = _cfg(small_cohort)
    assert run_preprocess(cfg, cache, workers=0, progress=False).processed == 3
    # touching a file (same bytes) re-hashes but rewrites nothing
    img = small_cohort / "sub-02/mri/brainmask.mgz"
    os.utime(img, ns=(1, 10**18))
    stores = _snapshot(cache / "subjects")
    s = run_preprocess(cfg, cache, workers=0, progress=False)
    assert s.processed == 1 and _snapshot(cache / "subjects") == stores
    # changed bytes rebuild that subject only
    vol = nib.load(img)
    data = np.asanyarray(vol.dataobj).copy()
    data[data > 0] = np.clip(data[data > 0].astype(int) + 3, 0, 255).astype(np.uint8)
    nib.save(nib.MGHImage(data, vol.affine, vol.header), img)
    s = run_preprocess(cfg, cache, workers=0, progress=False)
    after = _snapshot(cache / "subjects")
    changed = {k.split("/")[0] for k in after if after[k] != stores.get(k)}
    assert s.processed == 1 and changed == {"sub-02.zarr"}


def test_config_change_rebuilds(small_cohort, tmp_path):
    cache = tmp_path / "cache"
    run_preprocess(_cfg(small_cohort), cache, workers=0, progress=False)
    old = read_manifest(cache).set_index("subject_id")
    s = run_preprocess(_cfg(small_cohort, extra=["preprocess.percentile_high=99.5"]), cache, workers=0,
                       progress=False)
    new = read_manifest(cache).set_index("subject_id")
    assert s.processed == 3 and (new["config_hash"] != old["config_hash"]).all()
    a = read_store_attrs(cache / new.loc["sub-02", "store"])
    assert a["config_hash"] == new.loc["sub-02", "config_hash"]


def test_new_cohort_adds_only_its_subjects(small_cohort, data_dir, tmp_path):
    cache = tmp_path / "cache"
    run_preprocess(_cfg(small_cohort), cache, workers=0, progress=False)
    before = _snapshot(cache / "subjects")
    s = run_preprocess(_cfg(small_cohort, data_dir / "fs_bert"), cache, workers=0, progress=False)
    assert s.processed == 1 and s.skipped == 3
    after = _snapshot(cache / "subjects")
    assert {k: v for k, v in after.items() if k in before} == before
    # a later run naming only the new cohort keeps the old cohort's rows
    run_preprocess(_cfg(data_dir / "fs_bert"), cache, workers=0, progress=False)
    assert set(read_manifest(cache)["subject_id"]) == {"sub-02", "sub-03", "sub-05", "bert"}


def test_binary_brainmask_uses_norm(data_dir, tmp_path):
    cache = tmp_path / "cache"
    run_preprocess(_cfg(data_dir / "mrtrix3_test"), cache, workers=0, progress=False)
    row = read_manifest(cache).set_index("subject_id").loc["sub-01"]
    assert row["status"] == "ok" and row["image_source"].startswith("norm.mgz masked by brainmask")
    img = open_subject(cache / row["store"])["image"][...]
    assert len(np.unique(img)) > 100          # a real T1, not a 0/1 mask
    cache2 = tmp_path / "cache2"
    cfg = _cfg(data_dir / "mrtrix3_test", extra=["preprocess.binary_mask_fallback=false"])
    run_preprocess(cfg, cache2, workers=0, progress=False)
    row = read_manifest(cache2).iloc[0]
    assert row["status"] == "failed" and row["reason"] == "binary_mask_image"


def test_duplicate_ids_across_real_cohorts(data_dir, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(data_dir / "fs_training_data" / "sub-01", tmp_path / "first" / "sub-01")
    s = run_preprocess(_cfg(tmp_path / "first", data_dir / "mrtrix3_test"), cache, workers=0, progress=False)
    man = read_manifest(cache)
    dup = man[man["cohort"] == "mrtrix3_test"].iloc[0]
    assert dup["reason"] == "duplicate_subject_id" and "'first'" in dup["message"]
    assert s.ok == 1 and s.failed == 1
    # the cache keeps its owner on a later run that names the cohorts the other way round
    s = run_preprocess(_cfg(data_dir / "mrtrix3_test", tmp_path / "first"), cache, workers=0, progress=False)
    man = read_manifest(cache).set_index("cohort")
    assert man.loc["first", "status"] == "ok" and man.loc["mrtrix3_test", "reason"] == "duplicate_subject_id"


def test_axis_codes_recorded_for_every_subject(built):
    cache, _, man = built
    for sid in man.index[man["status"] == "ok"]:
        a = read_store_attrs(cache / man.loc[sid, "store"])
        assert a["original_axcodes"] == "LIA"
        assert geo.axcodes(np.asarray(a["affine"])) == "RAS"
