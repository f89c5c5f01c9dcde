"""Shared fixtures: the real FreeSurfer subjects in ../shared/data, configs, synthetic cohorts.

Real-data tests skip with a clear reason on a user's machine without ../shared/data, and fail in
CI (the CI environment variable is set) so a missing data folder can never pass silently.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("DAMT_TEST_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real FreeSurfer test subjects (read-only)."""
    if not (DATA / "fs_bert" / "bert").is_dir():
        msg = f"real FreeSurfer test data not found at {DATA} (set DAMT_TEST_DATA or place ../shared/data)"
        if os.environ.get("CI"):
            pytest.fail(msg + " -- required in CI")
        pytest.skip(msg)
    return DATA


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def synth_cohort(tmp_path_factory) -> Path:
    """Three small synthetic subjects (deterministic) in SUBJECTS_DIR layout."""
    from damt.synth import make_cohort

    root = tmp_path_factory.mktemp("synth") / "synth"
    make_cohort(root, n_subjects=3, seed=7, shape=(96, 96, 96))
    return root
