"""Per-subject QC metrics from a cache store, and the robust outlier rule (docs/qc.md).

Metrics come from the store's attributes and small reads only: the uint8 atlas (for class coverage
and key-structure volumes) and the 1-D target vectors. The image is never read here.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from damt.cache import open_subject
from damt.cache.targets import KINDS
from damt.labels import LabelTable

#: MAD -> standard deviation for normal data
MAD_SCALE = 1.4826
#: mean absolute deviation -> standard deviation for normal data (sqrt(pi/2)); used when MAD is 0
MEANAD_SCALE = 1.2533
#: relative floor of the scale: float32 round-off between otherwise equal values is not an outlier
REL_SCALE_FLOOR = 1e-6
#: fewer subjects than this give unstable medians and MADs: the report warns even when they are scored
STABLE_N = 20
#: metrics scored at once by flag_outliers
COLUMN_BLOCK = 64

BRAIN_VOLUME = "brain_volume_ml"
VOLUME_PREFIX = "volume_ml."
P_LOW, P_HIGH = "intensity.p_low", "intensity.p_high"


def robust_z(values: np.ndarray, min_n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Column-wise robust z-scores.

    values: float [n] or [n, k]; NaN marks a missing value (left out, and its z is NaN).
    Returns (z same shape as ``values``, median [k], scale [k]). scale = MAD x 1.4826; where the
    MAD is 0 (over half the values equal) the mean absolute deviation x 1.2533 is used instead, so
    one differing value still gets a finite z. A column whose values are all equal gets z = 0; a
    column with fewer than ``min_n`` values gets NaN (a median of a handful flags noise).
    """
    x = np.asarray(values, dtype=np.float64)
    one_d = x.ndim == 1
    x = x.reshape(len(x), -1)
    finite = np.isfinite(x)
    x = np.where(finite, x, np.nan)
    n = finite.sum(axis=0)
    with warnings.catch_warnings():  # all-NaN columns: their median is NaN, handled by min_n below
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(x, axis=0)
        dev = np.abs(x - med)
        mad = np.nanmedian(dev, axis=0) * MAD_SCALE
        mean_ad = np.nanmean(dev, axis=0) * MEANAD_SCALE
    scale = np.where(mad > 0, mad, mean_ad)
    scale = np.where(np.abs(scale) > REL_SCALE_FLOOR * np.abs(med), scale, 0.0)
    z = np.where(scale > 0, (x - med) / np.where(scale > 0, scale, 1.0), np.where(finite, 0.0, np.nan))
    z[:, n < min_n] = np.nan
    return (z[:, 0] if one_d else z), med, scale


def flag_outliers(frame: pd.DataFrame, metrics: Sequence[str], threshold: float | Sequence[float], min_n: int,
                  groups: pd.Series | None = None) -> pd.DataFrame:
    """Long table of outlying values: one row per (subject, metric) with |z| > ``threshold``.

    frame: one row per ok subject (any index), a numeric column per metric (NaN = no value).
    threshold: one value, or one per metric.
    groups: optional group label per row (e.g. the cohort); z-scores are then computed within
    each group. Returns columns index (the frame's index value), metric, value, median, z, sorted
    by |z| descending.
    """
    parts = []
    label_sets = [(None, frame)] if groups is None else list(frame.groupby(groups, sort=True))
    cols = list(metrics)
    limit = np.broadcast_to(np.asarray(threshold, dtype=np.float64), (len(cols),))
    for _, sub in label_sets:
        # blocks of columns bound the float64 temporaries (100k subjects x 400 target columns)
        for start in range(0, len(cols) if len(sub) else 0, COLUMN_BLOCK):
            block = cols[start:start + COLUMN_BLOCK]
            x = sub[block].to_numpy(dtype=np.float64)
            z, med, _ = robust_z(x, min_n)
            hit = np.abs(np.nan_to_num(z, nan=0.0)) > limit[start:start + len(block)]
            rows, colidx = np.nonzero(hit)
            parts.append(pd.DataFrame({"index": sub.index.to_numpy()[rows], "metric": np.asarray(block)[colidx],
                                       "value": x[rows, colidx], "median": med[colidx], "z": z[rows, colidx]}))
    parts = [p for p in parts if len(p)]
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {"index": [], "metric": [], "value": [], "median": [], "z": []})
    return out.sort_values("z", key=np.abs, ascending=False, kind="stable").reset_index(drop=True)


def structure_classes(table: LabelTable, names: Iterable[str]) -> dict[str, list[int]]:
    """Key structure -> the classes whose name contains it (e.g. 'Hippocampus' -> both sides).

    Raises ValueError naming a structure that matches no class of the table (a typo must not
    silently drop a metric).
    """
    out = {}
    for name in names:
        classes = [c for c, cname in enumerate(table.class_names) if c > 0 and name in cname]
        if not classes:
            raise ValueError(f"structure {name!r} matches no class of label table {table.version}")
        out[name] = classes
    return out


def metric_structure(metric: str, table: LabelTable) -> tuple[str, list[int]] | None:
    """(structure name, its classes) that a scored metric measures, or None (a whole-brain or
    intensity metric, a radiomics column, a global measure).

    ``volume_ml.<name>``: the classes whose name contains it (both sides); a morphometry column
    ``morphometry.aseg.<Struct>.<col>`` or ``morphometry.<hemi>.aparc.<region>.<col>``: the class
    named ``<Struct>`` (FreeSurfer 6's trailing '*' ignored) or ``ctx-<hemi>-<region>``.
    """
    parts = metric.split(".")
    if metric.startswith(VOLUME_PREFIX):
        name = metric[len(VOLUME_PREFIX):]
        classes = [c for c, cname in enumerate(table.class_names) if c > 0 and name in cname]
    elif parts[0] == "morphometry" and len(parts) >= 4 and "measure" not in parts[1:4]:
        name = parts[2] if parts[1] == "aseg" else f"ctx-{parts[1]}-{parts[3]}" if parts[2] == "aparc" else ""
        classes = [c for c, cname in enumerate(table.class_names) if c > 0 and name and
                   cname.rstrip("*") == name.rstrip("*")]
    else:
        return None
    return (name, classes) if classes else None


def volume_metric(structure: str) -> str:
    """Column name of a key structure's volume."""
    return f"{VOLUME_PREFIX}{structure}"


@dataclass
class SubjectMetrics:
    """QC numbers of one ok subject. ``scalars`` holds every numeric column (brain and structure
    volumes, intensity percentiles, voxel counts); ``targets[kind]`` the raw values with NaN where
    not present."""

    scalars: dict[str, float] = field(default_factory=dict)
    shape: str = ""
    image_source: str = ""
    classes_absent: list[str] = field(default_factory=list)
    unknown_ids: dict[str, int] = field(default_factory=dict)
    targets: dict[str, np.ndarray] = field(default_factory=dict)
    error: str = ""


def subject_metrics(path: Path, table: LabelTable, structures: Mapping[str, list[int]]) -> SubjectMetrics:
    """Metrics of the store at ``path`` (attrs, the atlas and the target vectors).

    Never raises for a bad store: a store that cannot be read gives ``error`` set (the report lists
    it; ``damt qc --verify`` says what is wrong).
    """
    m = SubjectMetrics()
    try:
        group = open_subject(path)
        attrs = dict(group.attrs)
        atlas = group["atlas"][...]
        spacing = float(attrs["spacing_mm"])
        voxel_ml = spacing ** 3 / 1000.0
        counts = np.bincount(atlas.ravel(), minlength=table.n_classes)
        lo, hi = (float(v) for v in attrs["percentile_values"])
        m.shape = "x".join(map(str, atlas.shape))
        m.image_source = str(attrs.get("image_source", ""))
        m.scalars = {"brain_voxels": float(attrs["brain_voxels"]),
                     BRAIN_VOLUME: float(attrs["brain_voxels"]) * voxel_ml,
                     "labelled_voxels": float(counts[1:].sum()), P_LOW: lo, P_HIGH: hi}
        for name, classes in structures.items():
            m.scalars[volume_metric(name)] = float(counts[classes].sum()) * voxel_ml
        m.classes_absent = [table.class_names[c] for c in range(1, table.n_classes) if counts[c] == 0]
        m.unknown_ids = {str(k): int(v) for k, v in dict(attrs.get("unknown_label_voxels", {})).items()}
        for kind in KINDS:
            if kind in group:
                values = np.asarray(group[kind][...], dtype=np.float64)
                present = np.asarray(group[f"{kind}_present"][...], dtype=bool)
                m.targets[kind] = np.where(present, values, np.nan)
    except Exception as err:  # noqa: BLE001 - one unreadable store must not stop the report
        m.error = f"{type(err).__name__}: {err}"
    return m


def target_presence(vectors: Sequence[np.ndarray | None], n_columns: int) -> dict[str, Any]:
    """How much of a target schema the ok subjects have: one row of the report's target table.

    vectors: per ok subject, float [n] with NaN where not present (``SubjectMetrics.targets[kind]``),
    or None; vectors of another length than ``n_columns`` (a store of another schema) are left out.
    Returns subjects (counted), present_fraction (present entries / all entries; NaN with no
    subject), complete (subjects with every column) and none (subjects with no column).
    """
    if n_columns < 1:
        raise ValueError("a target with no columns has no presence to report")
    counts = np.asarray([np.isfinite(v).sum() for v in vectors if v is not None and len(v) == n_columns],
                        dtype=np.int64)   # present columns per counted subject
    if not counts.size:
        return {"subjects": 0, "present_fraction": float("nan"), "complete": 0, "none": 0}
    return {"subjects": int(counts.size), "present_fraction": float(counts.sum() / (counts.size * n_columns)),
            "complete": int((counts == n_columns).sum()), "none": int((counts == 0).sum())}
