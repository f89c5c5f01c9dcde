"""Radiomics GLCM texture vector: real bert, degenerate masks, pyradiomics equivalence."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import SimpleITK as sitk

from damt.config.targets import GLCM_FEATURES, RadiomicsConfig
from damt.targets.radiomics import pyradiomics_settings, texture_names, texture_vector

CFG = RadiomicsConfig()


def test_bert_72_finite_deterministic(bert_preprocessed):
    image, atlas = bert_preprocessed
    v1, p1, names = texture_vector(image, atlas, 1.25, CFG)
    v2, p2, _ = texture_vector(image, atlas, 1.25, CFG)
    assert v1.dtype == np.float32 and p1.dtype == bool and v1.shape == p1.shape == (72,)
    assert p1.all() and np.isfinite(v1).all()
    assert np.array_equal(v1, v2) and np.array_equal(p1, p2)
    assert names == texture_names(CFG) and len(set(names)) == 72
    assert names[0] == "GM.glcm.Autocorrelation" and names[-1] == "CSF.glcm.SumSquares"
    assert 0 < v1[names.index("WM.glcm.Correlation")] <= 1


def test_same_values_as_feature_extractor(bert_preprocessed):
    """The direct GLCM call on the cropped mask equals pyradiomics' own extractor pipeline."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    image, atlas = bert_preprocessed
    values, _, names = texture_vector(image, atlas, 1.25, CFG)
    from damt.targets.tissues import load_tissue_table, tissue_labels
    mask = (tissue_labels(atlas, load_tissue_table()) == 3).astype(np.uint8)   # CSF: smallest
    to_sitk = lambda a: sitk.GetImageFromArray(np.ascontiguousarray(a.transpose(2, 1, 0)))  # noqa: E731
    img, msk = to_sitk(image), to_sitk(mask)
    for s in (img, msk):
        s.SetSpacing((1.25,) * 3)
    extractor = RadiomicsFeatureExtractor(**pyradiomics_settings(CFG), additionalInfo=False)
    extractor.disableAllFeatures()
    extractor.enableFeaturesByName(glcm=list(CFG.features))
    result = extractor.execute(img, msk)
    for f in CFG.features:
        assert values[names.index(f"CSF.glcm.{f}")] == pytest.approx(
            float(result[f"original_glcm_{f}"]), rel=1e-5, abs=1e-7), f


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
