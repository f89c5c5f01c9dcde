"""Column-wise normalisation of regression targets over a cohort, robust to outliers.

Why: the original z-scored each column with mean/std, which gave NaN on constant columns, and left
heavy-tailed radiomics columns (ClusterProminence spans orders of magnitude) at a loss ~250x the
other tasks. Here, per column and over PRESENT entries only:

1. centre ``c`` = median; scale ``s`` = IQR / 1.349 (the standard deviation for normal data). If
   that is zero or not finite (over half the values tied): MAD x 1.4826; then the standard
   deviation; then 1.0 (a constant column normalises to exactly 0, never NaN).
   ``method = "standard"`` uses mean and std (then 1.0) instead, as the original did.
2. Signed-log transform, decided per column: with ``transform = "auto"`` a column gets
   ``u = asinh((x - c) / s)`` when it has at least ``min_present_for_auto`` present values and its
   tail ratio (q99 - q1) / (q75 - q25) exceeds ``tail_ratio`` (normal data: 3.4; log-normal with
   sigma 1: ~7; a zero IQR counts as heavy-tailed). asinh is linear near 0 and logarithmic in the
   tails, and keeps the sign, so it works for negative columns too (ClusterShade, Imc1). ``u`` is then
   centred and scaled again with step 1's rule. ``transform = "asinh"`` always applies it,
   ``"none"`` never.
3. Output clipped to +-``clip`` (default 10): a target beyond 10 robust SD is an error or an
   extreme subject, and must not dominate an L1 loss. Not-present entries are set to 0.

The statistics are a plain JSON-serialisable dict (lists of floats/strings), saved in targets.json.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

_IQR_TO_SD = 1.349    # IQR of a standard normal distribution
_MAD_TO_SD = 1.4826   # 1 / (75th percentile of a standard normal)
STATS_VERSION = 1


def _scale(x: np.ndarray, centre: float, method: str) -> float:
    """Robust (or standard) scale of the 1-D float64 ``x`` with the fallbacks of the module doc."""
    candidates = []
    if method == "robust":
        q25, q75 = np.quantile(x, [0.25, 0.75])
        candidates += [(q75 - q25) / _IQR_TO_SD, np.median(np.abs(x - centre)) * _MAD_TO_SD]
    candidates.append(np.std(x))
    for s in candidates:
        # Relative floor: a scale at float rounding level of the centre is a tie, not a spread.
        if math.isfinite(s) and s > 1e-12 * max(1.0, abs(centre)):
            return float(s)
    return 1.0


def _centre(x: np.ndarray, method: str) -> float:
    c = float(np.median(x) if method == "robust" else np.mean(x))
    return c if math.isfinite(c) else 0.0


def tail_ratio(x: np.ndarray) -> float:
    """(q99 - q1) / (q75 - q25) of 1-D ``x``; inf when the IQR is zero but the range is not, 0 for
    a constant column."""
    q01, q25, q75, q99 = np.quantile(x, [0.01, 0.25, 0.75, 0.99])
    if q99 - q01 <= 0:
        return 0.0
    return float((q99 - q01) / (q75 - q25)) if q75 > q25 else math.inf


def fit(values: np.ndarray, present: np.ndarray, *, method: Literal["robust", "standard"] = "robust",
        transform: Literal["auto", "none", "asinh"] = "auto", tail_ratio_max: float = 10.0,
        min_present_for_auto: int = 8, clip: float = 10.0) -> dict:
    """Per-column statistics over the present entries.

    values: float32 [n_subjects, n_columns]; present: bool, same shape (non-finite values are
    treated as not present). Returns a JSON-serialisable dict: ``centre``, ``scale``, ``transform``
    ("none" | "asinh"), ``centre_t``, ``scale_t`` (after the transform; 0/1 when none),
    ``n_present`` (lists, one entry per column), plus ``method``, ``clip``, ``version``.
    A column with no present entry gets centre 0, scale 1, no transform.
    """
    values = np.asarray(values, dtype=np.float64)
    present = np.asarray(present, dtype=bool)
    if values.ndim != 2 or values.shape != present.shape:
        raise ValueError(f"values and present must be 2-D of one shape, got {values.shape} and "
                         f"{present.shape}")
    present = present & np.isfinite(values)
    stats: dict = {"version": STATS_VERSION, "method": method, "clip": float(clip), "centre": [],
                   "scale": [], "transform": [], "centre_t": [], "scale_t": [], "n_present": []}
    for j in range(values.shape[1]):
        x = values[present[:, j], j]
        c, s, kind, c2, s2 = 0.0, 1.0, "none", 0.0, 1.0
        if x.size:
            c = _centre(x, method)
            s = _scale(x, c, method)
            heavy = x.size >= min_present_for_auto and tail_ratio(x) > tail_ratio_max
            if transform == "asinh" or (transform == "auto" and heavy):
                u = np.arcsinh((x - c) / s)
                kind, c2 = "asinh", _centre(u, method)
                s2 = _scale(u, c2, method)
        for key, v in (("centre", c), ("scale", s), ("transform", kind), ("centre_t", c2),
                       ("scale_t", s2), ("n_present", int(x.size))):
            stats[key].append(v)
    return stats


def apply(values: np.ndarray, present: np.ndarray, stats: dict) -> np.ndarray:
    """Normalise with statistics from :func:`fit`.

    values: float32 [n_subjects, n_columns] or [n_columns] (one subject); present: bool, same
    shape. Returns float32 of the same shape, clipped to +-stats["clip"], 0 where not present or
    not finite.
    """
    x = np.asarray(values, dtype=np.float64)
    present = np.asarray(present, dtype=bool)
    if x.shape != present.shape or x.shape[-1] != len(stats["centre"]):
        raise ValueError(f"values {x.shape} / present {present.shape} do not match statistics "
                         f"for {len(stats['centre'])} columns")
    centre = np.asarray(stats["centre"], dtype=np.float64)
    scale = np.asarray(stats["scale"], dtype=np.float64)
    asinh = np.asarray([t == "asinh" for t in stats["transform"]], dtype=bool)
    with np.errstate(all="ignore"):
        z = (x - centre) / scale
        zt = (np.arcsinh(z) - np.asarray(stats["centre_t"])) / np.asarray(stats["scale_t"])
        z = np.where(asinh, zt, z)
        z = np.clip(z, -stats["clip"], stats["clip"])
    ok = present & np.isfinite(z)
    return np.where(ok, z, 0.0).astype(np.float32)


def fit_kwargs(cfg, kind: Literal["morphometry", "radiomics"]) -> dict:
    """Keyword arguments of :func:`fit` from a ``NormaliseConfig`` for one target kind
    (imported texture CSVs count as radiomics)."""
    return {"method": cfg.method,
            "transform": cfg.transform_morphometry if kind == "morphometry" else cfg.transform_radiomics,
            "tail_ratio_max": cfg.tail_ratio, "min_present_for_auto": cfg.min_present_for_auto,
            "clip": cfg.clip}
