"""Every bad-input case becomes a typed ``failed`` row with an actionable message, and every good
subject of the same cohort still completes."""

from __future__ import annotations

import numpy as np
import pytest

from damt.cache import open_subject, read_manifest
from damt.config import load_config
from damt.errors import REASONS
from damt.synth import BAD_CASES, bad_subject_id, make_bad_case, make_subject
from preprocess.run import run_preprocess

EXPECTED = {
    "truncated_nii": ("corrupt_file", "truncated"),
    "truncated_mgz": ("corrupt_file", "truncated"),
    "not_an_image": ("not_an_image", "not a readable"),
    "missing_parcellation": ("missing_parcellation", "aparc+aseg"),
    "grid_mismatch": ("grid_mismatch", "shape"),
    "affine_mismatch": ("grid_mismatch", "affines"),
    "four_d": ("not_3d", "3-D"),
    "nonfinite": ("nonfinite_voxels", "NaN"),
    "constant": ("constant_image", "percentiles"),
    "empty": ("empty_foreground", "empty"),
    "unknown_labels": ("unknown_labels", "9999"),
    "no_affine": ("no_affine", "qform_code"),
}
OK_CASES = {"singleton_4d", "binary_mask", "unknown_labels"}  # unknown_labels is ok in background mode


@pytest.fixture(scope="module")
def bad_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad") / "cohort"
    for kind in BAD_CASES:
        make_bad_case(root, kind)
    make_subject(root, "good-1", seed=1, shape=(80, 80, 80))
    make_subject(root, "good-2", seed=2, shape=(80, 80, 80))
    (root / "bad id").mkdir()          # a folder name outside the id allowlist
    (root / "bad id" / "mri").mkdir()
    return root


def _run(root, tmp_path, *extra):
    cfg = load_config(None, [f"data.inputs=['{root}']", *extra])
    summary = run_preprocess(cfg, tmp_path / "cache", workers=0, progress=False)
    return summary, read_manifest(tmp_path / "cache").set_index("subject_id")


def test_every_case_is_covered():
    assert set(EXPECTED) | OK_CASES >= set(BAD_CASES)


@pytest.fixture(scope="module")
def result(bad_cohort, tmp_path_factory):
    return _run(bad_cohort, tmp_path_factory.mktemp("run"), "preprocess.unknown_labels=fail")


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_bad_case_fails_with_typed_reason(result, kind):
    _, man = result
    row = man.loc[bad_subject_id(kind)]
    reason, words = EXPECTED[kind]
    assert row["status"] == "failed" and row["reason"] == reason, row["message"]
    assert words in row["message"] and row["reason"] in REASONS
    assert row["store"] == ""


def test_good_subjects_complete_beside_the_bad_ones(result):
    summary, man = result
    for sid in ("good-1", "good-2", bad_subject_id("singleton_4d"), bad_subject_id("binary_mask")):
        assert man.loc[sid, "status"] == "ok", man.loc[sid, "message"]
    assert man.loc[bad_subject_id("binary_mask"), "image_source"].startswith("norm")
    assert summary.failed == len(EXPECTED) + 1 and "internal_error" not in summary.by_reason


def test_bad_subject_id_is_refused_before_any_path(result, tmp_path):
    _, man = result
    row = man.loc["bad id"]
    assert row["reason"] == "bad_subject_id" and "rename the folder" in row["message"]


def test_unknown_labels_mapped_to_background_and_counted(bad_cohort, tmp_path):
    _, man = _run(bad_cohort, tmp_path)
    row = man.loc[bad_subject_id("unknown_labels")]
    assert row["status"] == "ok" and row["unknown_label_voxels"] > 0
    atlas = open_subject(tmp_path / "cache" / row["store"])["atlas"][...]
    assert atlas.max() <= 100


def test_failed_rows_are_not_retried_when_unchanged(bad_cohort, tmp_path):
    _run(bad_cohort, tmp_path)
    summary, _ = _run(bad_cohort, tmp_path)
    assert summary.processed == 0


def test_nothing_partial_after_failures(result, tmp_path):
    _, man = result
    stores = [s for s in man["store"] if s]
    assert len(stores) == (man["status"] == "ok").sum()
    assert np.all(man.loc[man["status"] == "failed", "shape"] == "")
