"""Fixtures for the targets tests: the shared real FreeSurfer data and a preprocessed bert."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

# tests/damt/targets -> repo root (parents[3]) -> its parent holds shared/data
DATA_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data"


@pytest.fixture(scope="session")
def fs_data() -> Path:
    """The real FreeSurfer subjects; skip when absent, but fail on CI (where they must exist)."""
    if not DATA_DIR.is_dir():
        msg = f"real FreeSurfer test data not found at {DATA_DIR} (see DESIGN.md 'Test data')"
        if os.environ.get("CI"):
            pytest.fail(msg + "; CI is set, so this is an error")
        pytest.skip(msg)
    return DATA_DIR


@pytest.fixture(scope="session")
def bert_preprocessed(fs_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """bert approximately as METHOD.md preprocesses it: crop to the brain, 1.25 mm (linear image,
    nearest labels), percentiles 0.05/99.95 inside the brain to [0, 1], ids -> classes.
    Returns (image float32 [X,Y,Z] in [0, 1], atlas uint8 [X,Y,Z])."""
    import nibabel as nib
    from scipy import ndimage

    from damt.labels import load_label_table, remap

    mri = fs_data / "fs_bert" / "bert" / "mri"
    image = np.asarray(nib.load(mri / "brainmask.mgz").dataobj, dtype=np.float32)
    parc = np.asarray(nib.load(mri / "aparc+aseg.mgz").dataobj).astype(np.int32)
    box = tuple(slice(int(a.min()), int(a.max()) + 1) for a in np.nonzero(image > 0))
    image = ndimage.zoom(image[box], 1 / 1.25, order=1)
    parc = ndimage.zoom(parc[box], 1 / 1.25, order=0)
    lo, hi = np.percentile(image[image > 0], [0.05, 99.95])
    image = np.clip((image - lo) / (hi - lo), 0, 1).astype(np.float32)
    atlas, _ = remap(parc, load_label_table("damt-v1").lookup())
    return image, atlas
