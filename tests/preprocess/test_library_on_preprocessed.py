"""Library functions on what the preprocess stage makes: texture targets of a preprocessed bert,
and location labels of a head preprocessed to the cache's RAS frame.

These live with the stage's tests because they need its preprocessing (``preprocess.subject``);
the library's own tests (tests/damt) import only ``damt``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from damt.config import load_config
from damt.config.targets import RadiomicsConfig
from damt.targets.radiomics import pyradiomics_settings, texture_names, texture_vector
from damt.views import location_label

CFG = RadiomicsConfig()


@pytest.fixture(scope="session")
def bert_preprocessed(data_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """bert through DAMT's own preprocessing (METHOD.md steps 1-6).
    Returns (image float32 [X,Y,Z] in [0, 1], atlas uint8 [X,Y,Z])."""
    from damt.config import PreprocessConfig
    from damt.io import read_volume
    from damt.labels import load_label_table
    from preprocess.subject import preprocess_volumes

    mri = data_dir / "fs_bert" / "bert" / "mri"
    out = preprocess_volumes(read_volume(mri / "brainmask.mgz"), read_volume(mri / "aparc+aseg.mgz"),
                             PreprocessConfig(), load_label_table("damt-v1").lookup())
    return out.image.astype(np.float32), out.atlas


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


def test_location_label_follows_anatomy_not_array_order():
    """A synthetic head in FreeSurfer's LIA voxel order, preprocessed to the cache's RAS frame: the
    default grid (RAS axes 0 and 2) puts a left-superior structure in the left-superior cell and
    tells it from a left-inferior one, as the original's coronal grid over LIA axes 0 and 1 did."""
    from damt.io import Volume  # noqa: PLC0415
    from damt.labels import load_label_table  # noqa: PLC0415
    from damt.synth import conformed_affine  # noqa: PLC0415
    from preprocess.subject import preprocess_volumes  # noqa: PLC0415

    cfg = load_config(None, [])
    n = 120
    affine = conformed_affine((n, n, n))  # voxel axes: 0 -> Left, 1 -> Inferior, 2 -> Anterior
    lia = np.indices((n, n, n)).transpose(1, 2, 3, 0)
    image = np.where(((lia - n / 2) ** 2).sum(-1) < (0.45 * n) ** 2, 60, 0).astype(np.uint8)
    parc = np.where(image > 0, 2, 0).astype(np.int32)  # white matter everywhere in the head
    lo, hi = n // 2 - 32, n // 2 + 32                  # left/right and superior/inferior thirds
    markers = {"left_superior": (17, (hi, lo)), "left_inferior": (53, (hi, hi)),
               "right_superior": (10, (lo, lo))}       # FreeSurfer id, LIA (axis 0, axis 1) centre
    for fs_id, (c0, c1) in markers.values():
        box = (slice(c0 - 4, c0 + 4), slice(c1 - 4, c1 + 4), slice(n // 2 - 4, n // 2 + 4))
        image[box], parc[box] = 200, fs_id
    table = load_label_table("damt-v1")
    out = preprocess_volumes(Volume(image, affine, "t1"), Volume(parc, affine, "parc"),
                             cfg.preprocess, table.lookup())
    assert out.info["axcodes"] == "RAS"
    ras = np.asarray(out.info["affine"])
    labels, old = {}, {}
    for name, (fs_id, _) in markers.items():
        centre = np.argwhere(out.atlas == table.lookup()[fs_id]).mean(axis=0) + 0.5  # voxel i spans [i, i+1)
        world = ras[:3, :3] @ (centre - 0.5) + ras[:3, 3]
        assert (world[0] < 0) == name.startswith("left") and (world[2] > 0) == ("superior" in name)
        labels[name] = location_label(centre, out.atlas.shape, cfg.views.location_grid,
                                      cfg.views.location_axes)
        old[name] = location_label(centre, out.atlas.shape, 3, axes=(0, 1))
    # cells: bin 0..2 from left to right (RAS axis 0) and from inferior to superior (RAS axis 2)
    assert labels == {"left_superior": 0 * 3 + 2, "left_inferior": 0 * 3 + 0, "right_superior": 2 * 3 + 2}
    # binning the first two array axes of the RAS cache instead mixes superior and inferior
    assert old["left_superior"] == old["left_inferior"]
