"""``damt.qc.verify_store``: each contract check on a small store written by the real writer."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import zarr

from damt.cache import write_subject_store
from damt.qc import Expected, verify_store

SHAPE = (12, 12, 12)


def _store(tmp_path, sid="s1", **over):
    rng = np.random.default_rng(0)
    arrays = {"image": rng.uniform(0, 1, SHAPE).astype(np.float16),
              "atlas": rng.integers(0, 101, SHAPE).astype(np.uint8),
              "morphometry": np.array([1.0, 0.0, 3.0], np.float32),
              "morphometry_present": np.array([True, False, True]),
              "radiomics": np.array([0.5], np.float32), "radiomics_present": np.array([True])} | over
    path = write_subject_store(tmp_path, sid, arrays, {"subject_id": sid, "config_hash": "abc"},
                               chunk_vox=8, codec="none", clevel=0)
    return path, Expected(sid, "abc", "x".join(map(str, arrays["image"].shape)), min_shape_vox=10,
                          n_classes=101, target_sizes={"morphometry": 3, "radiomics": 1})


def test_a_store_as_written_matches(tmp_path):
    path, exp = _store(tmp_path)
    assert verify_store(path, exp) == []


@pytest.mark.parametrize("edit, words", [
    (lambda g: g["image"].__setitem__((1, 1, 1), 0.25), "image sha256"),
    (lambda g: g["image"].__setitem__((1, 1, 1), np.nan), "NaN"),
    (lambda g: g["image"].__setitem__((1, 1, 1), 2.0), "outside [0, 1]"),
    (lambda g: g["atlas"].__setitem__((0, 0, 0), 101), "classes are 0..100"),
    (lambda g: g["radiomics"].__setitem__(0, 0.7), "radiomics sha256"),
])
def test_values_changed_after_the_build_are_found(tmp_path, edit, words):
    path, exp = _store(tmp_path)
    edit(zarr.open_group(str(path), mode="r+"))
    problems = verify_store(path, exp)
    assert any(words in p for p in problems), problems


def test_contract_violations_written_with_matching_hashes_are_found(tmp_path):
    # hashes recorded at write time match, so only the contract checks can catch these
    path, exp = _store(tmp_path, image=np.zeros((12, 12, 9), np.float32),
                       morphometry=np.array([1.0, 2.0, 3.0], np.float32),
                       radiomics=np.array([0.5, 0.1], np.float32))
    problems = " | ".join(verify_store(path, Expected("s1", "abc", "12x12x12", min_shape_vox=10, n_classes=101,
                                                      target_sizes={"morphometry": 3, "radiomics": 1})))
    for words in ("image dtype float32, expected float16", "axis < min_shape_vox", "manifest says 12x12x12",
                  "differs from image shape", "radiomics shape (2,)", "nonzero values where present = false"):
        assert words in problems


def test_marker_format_ids_and_missing_arrays(tmp_path):
    path, exp = _store(tmp_path)
    meta = path / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"] |= {"store_format": "other", "subject_id": "s2", "config_hash": "zzz"}
    meta.write_text(json.dumps(doc))
    problems = " | ".join(verify_store(path, exp))
    assert "store_format 'other'" in problems and "subject_id 's2'" in problems and "config_hash 'zzz'" in problems
    doc["attributes"].pop("status")
    meta.write_text(json.dumps(doc))
    assert verify_store(path, exp) == ["no completion marker (status = None, expected 'complete')"]
    assert verify_store(tmp_path / "nope.zarr", exp) == ["store folder is missing"]
    path, exp = _store(tmp_path, sid="s3")
    shutil.rmtree(path / "radiomics_present")
    assert any("'radiomics_present' is missing" in p for p in verify_store(path, exp))
