"""Fixtures for the targets tests: the shared real FreeSurfer data and a preprocessed bert."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def fs_data(data_dir) -> Path:
    """The real FreeSurfer subjects (tests/conftest.py: skip when absent, fail on CI)."""
    return data_dir


@pytest.fixture(scope="session")
def bert_preprocessed(fs_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """bert through DAMT's own preprocessing (METHOD.md steps 1-6).
    Returns (image float32 [X,Y,Z] in [0, 1], atlas uint8 [X,Y,Z])."""
    from damt.config import PreprocessConfig
    from damt.io import read_volume
    from damt.labels import load_label_table
    from preprocess.subject import preprocess_volumes

    mri = fs_data / "fs_bert" / "bert" / "mri"
    out = preprocess_volumes(read_volume(mri / "brainmask.mgz"), read_volume(mri / "aparc+aseg.mgz"),
                             PreprocessConfig(), load_label_table("damt-v1").lookup())
    return out.image.astype(np.float32), out.atlas
