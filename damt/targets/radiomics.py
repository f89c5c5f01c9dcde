"""Radiomics texture targets: pyradiomics GLCM features per tissue (GM, WM, CSF).

Computed on the already-preprocessed grid (1.25 mm, intensities in [0, 1]); pyradiomics never
resamples, normalises or filters here. The GLCM feature class is called directly on the mask's
bounding box rather than through ``RadiomicsFeatureExtractor``: the values are identical (a test
checks it) and it skips the extractor's per-call image checks, hashing and diagnostics, about half
of the time.

A tissue whose mask is empty, smaller than ``min_mask_voxels``, too flat for
``min_roi_dimensions``, or for which pyradiomics fails, gives present=False (value 0.0) for all of
its features; a NaN/inf feature value gives present=False for that feature alone.
"""

from __future__ import annotations

import functools
import logging
import warnings

import numpy as np
import radiomics
import SimpleITK as sitk
from radiomics.glcm import RadiomicsGLCM

from damt.config.targets import RadiomicsConfig
from damt.targets.tissues import TissueTable, load_tissue_table, tissue_labels

log = logging.getLogger(__name__)


def _quiet_pyradiomics() -> None:
    """pyradiomics logs INFO/WARNING chatter and an ERROR traceback for every feature that fails to
    compute; failures are handled here (present=False), so its logger is raised to CRITICAL."""
    radiomics.setVerbosity(logging.CRITICAL)
    logging.getLogger("radiomics").setLevel(logging.CRITICAL)


_quiet_pyradiomics()


@functools.lru_cache(maxsize=8)
def _tissue_table(name_or_path: str) -> TissueTable:
    return load_tissue_table(name_or_path)


def texture_names(cfg: RadiomicsConfig, tissue_table: TissueTable | None = None) -> list[str]:
    """Column names in vector order, tissue-major: ``GM.glcm.Autocorrelation``, ..., ``CSF.glcm.SumSquares``."""
    table = tissue_table or _tissue_table(cfg.tissue_table)
    return [f"{t}.glcm.{f}" for t in table.tissues for f in cfg.features]


def pyradiomics_settings(cfg: RadiomicsConfig) -> dict:
    """The pyradiomics settings (keyword names as in a pyradiomics parameter file) for ``cfg``."""
    settings = {
        "label": cfg.label,
        "distances": list(cfg.distances_vox),
        "symmetricalGLCM": cfg.symmetrical_glcm,
        "force2D": cfg.force_2d,
        "force2Ddimension": cfg.force_2d_dimension,
        "weightingNorm": None if cfg.weighting_norm == "none" else cfg.weighting_norm,
    }
    if cfg.discretisation == "bin_count":
        settings["binCount"] = cfg.bin_count
    else:
        settings["binWidth"] = cfg.bin_width
    return settings


def _to_sitk(array: np.ndarray, spacing_mm: float) -> sitk.Image:
    """numpy [X, Y, Z] -> SimpleITK image of size (X, Y, Z); SimpleITK reads numpy arrays as
    [z, y, x], hence the transpose. Origin and direction do not affect GLCM features."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing((spacing_mm,) * 3)
    return image


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Tight slices around the True voxels of a non-empty 3-D mask (projections beat np.nonzero)."""
    out = []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        out.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(out)


def glcm_features(image: np.ndarray, mask: np.ndarray, spacing_mm: float,
                  cfg: RadiomicsConfig) -> tuple[np.ndarray, np.ndarray]:
    """GLCM features of one mask.

    image: float32 [X, Y, Z]; mask: bool [X, Y, Z]. Returns (values float32 [n_features],
    present bool [n_features]) in ``cfg.features`` order; all absent when the mask is too small
    or too flat, or pyradiomics fails.
    """
    n = len(cfg.features)
    values, present = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=bool)
    n_vox = int(np.count_nonzero(mask))
    if n_vox < max(cfg.min_mask_voxels, 1):
        return values, present
    box = _bounding_box(mask)
    if sum((s.stop - s.start) > 1 for s in box) < cfg.min_roi_dimensions:
        return values, present
    sub_mask = mask[box].astype(np.uint8) * np.uint8(cfg.label)
    try:
        # Degenerate GLCMs (one grey level, one direction) divide by zero inside pyradiomics; the
        # resulting NaN/inf are turned into present=False below, so the warnings are noise.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            glcm = RadiomicsGLCM(_to_sitk(image[box], spacing_mm), _to_sitk(sub_mask, spacing_mm),
                                 **pyradiomics_settings(cfg))
            for name in cfg.features:
                glcm.enableFeatureByName(name)
            result = glcm.execute()
    except Exception as err:  # noqa: BLE001 - any pyradiomics failure means "no texture target"
        log.warning("pyradiomics GLCM failed on a mask of %d voxels: %s", n_vox, err)
        return values, present
    for i, name in enumerate(cfg.features):
        value = float(np.asarray(result.get(name, np.nan), dtype=np.float64).reshape(-1)[0])
        if np.isfinite(value) and abs(value) <= np.finfo(np.float32).max:
            values[i], present[i] = value, True
    return values, present


def texture_vector(image: np.ndarray, atlas: np.ndarray, spacing_mm: float, cfg: RadiomicsConfig,
                   tissue_table: TissueTable | None = None
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The texture target of one subject: GLCM features x tissues.

    image: float32 [X, Y, Z], preprocessed intensities in [0, 1]; atlas: uint8 [X, Y, Z] class
    indices on the same grid; spacing_mm: its isotropic voxel size. ``tissue_table`` defaults to
    ``cfg.tissue_table`` (loaded once per process; check it against the label table at start-up
    with :func:`damt.targets.tissues.check_against_labels`). Non-finite image voxels are left out
    of every mask. Returns (values float32 [n_tissues * n_features], present bool [same],
    names list[str] [same]), tissue-major as :func:`texture_names`.
    """
    if image.ndim != 3 or image.shape != atlas.shape:
        raise ValueError(f"image and atlas must be 3-D arrays of one shape, got {image.shape} "
                         f"and {atlas.shape}")
    if not (np.isfinite(spacing_mm) and spacing_mm > 0):
        raise ValueError(f"spacing_mm must be a positive number, got {spacing_mm!r}")
    table = tissue_table or _tissue_table(cfg.tissue_table)
    image = np.asarray(image, dtype=np.float32)
    labels = tissue_labels(atlas, table)
    finite = np.isfinite(image)
    if not finite.all():
        labels = np.where(finite, labels, np.uint8(0))
        image = np.where(finite, image, np.float32(0.0))
    parts = [glcm_features(image, labels == i + 1, float(spacing_mm), cfg)
             for i in range(len(table.tissues))]
    values = np.concatenate([p[0] for p in parts])
    present = np.concatenate([p[1] for p in parts])
    return values, present, texture_names(cfg, table)
