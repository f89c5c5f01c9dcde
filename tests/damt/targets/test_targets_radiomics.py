"""Radiomics GLCM texture vector: real bert, degenerate masks, pyradiomics equivalence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from damt.config.targets import GLCM_FEATURES, RadiomicsConfig
from damt.targets.radiomics import pyradiomics_settings, texture_vector

CFG = RadiomicsConfig()


def _synthetic(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.random((30, 30, 30), dtype=np.float32)
    atlas = np.zeros((30, 30, 30), dtype=np.uint8)
    atlas[2:14] = 33          # a cortical class -> GM
    atlas[15:28] = 1          # cerebral WM -> WM
    return image, atlas


def test_empty_tissue_is_absent_not_a_crash():
    image, atlas = _synthetic()
    values, present, names = texture_vector(image, atlas, 1.25, CFG)
    csf = np.asarray([n.startswith("CSF.") for n in names])
    assert not present[csf].any() and (values[csf] == 0).all()
    assert present[~csf].all() and np.isfinite(values).all()
    values, present, _ = texture_vector(image, np.zeros_like(atlas), 1.25, CFG)
    assert not present.any() and (values == 0).all()


def test_small_flat_and_degenerate_masks():
    image, atlas = _synthetic()
    atlas[:] = 0
    atlas[5, 5, 5:55 // 2] = 2                         # 22 CSF voxels < min_mask_voxels
    atlas[10, 10, :] = 1                               # 30 voxels on one line: 1 axis > 1 voxel
    cfg = dataclasses.replace(CFG, min_mask_voxels=10)
    _, present, _ = texture_vector(image, atlas, 1.25, cfg)
    assert not present.any()
    atlas[:] = 0
    atlas[3:20, 3:20, 3:20] = 33
    image[:] = 0.5                                     # one grey level: some features undefined
    values, present, _ = texture_vector(image, atlas, 1.25, CFG)
    assert np.isfinite(values).all() and (values[~present] == 0).all()
    image[3, 3, 3] = np.nan                            # non-finite voxel: left out of the mask
    values, _, _ = texture_vector(image, atlas, 1.25, CFG)
    assert np.isfinite(values).all()


def test_config_variants_and_errors():
    image, atlas = _synthetic()
    cfg = dataclasses.replace(CFG, features=["Contrast", "Idm"], discretisation="bin_count",
                              bin_count=16, distances_vox=[1, 2])
    values, present, names = texture_vector(image, atlas, 1.0, cfg)
    assert names == ["GM.glcm.Contrast", "GM.glcm.Idm", "WM.glcm.Contrast", "WM.glcm.Idm",
                     "CSF.glcm.Contrast", "CSF.glcm.Idm"]
    assert present.tolist() == [True] * 4 + [False] * 2
    assert pyradiomics_settings(cfg)["binCount"] == 16 and "binWidth" not in pyradiomics_settings(cfg)
    assert len(GLCM_FEATURES) == 24
    with pytest.raises(ValueError, match="one shape"):
        texture_vector(image, atlas[:-1], 1.25, CFG)
    with pytest.raises(ValueError, match="spacing_mm"):
        texture_vector(image, atlas, 0.0, CFG)
