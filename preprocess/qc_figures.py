"""The pictures of ``damt qc``: distribution plots per group and the montage (docs/qc.md).

Which subjects get a montage bounds the report's size on any cohort: every flagged subject up to
``qc.montage_max_flagged`` (largest |z| first) and a seeded sample of ``qc.montage_sample``
others, so 10k subjects cost the same ~60 montages as 100. A montage is three planes at the
store's resolution: a sample subject's mid-planes, a flagged subject's planes through the
structure behind its largest flag (the atlas is read whole for that; the image only as planes).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from damt.cache import open_subject, store_path
from damt.config import DamtConfig
from damt.labels import class_colours, load_label_table
from damt.qc import MontageItem, MontagePlane, strip_plot_svg, volume_metric
from damt.qc.metrics import BRAIN_VOLUME, P_HIGH, P_LOW, metric_structure
from damt.qc.render import PLANES, focus_point, grey_png, labels_png, outline_png, palette, plane_labels, slices


def plots(rows: list[dict[str, Any]], outliers: pd.DataFrame, structures: list[str], group_key: str,
          order: Sequence[str] | None = None) -> list[str]:
    """One SVG per metric, one plot row per group (``row[group_key]``: the cohort or a --by stratum),
    in ``order`` (default: sorted)."""
    ok = [r for r in rows if r["status"] == "ok"]
    hit = set(zip(outliers["subject_id"], outliers["metric"])) if len(outliers) else set()
    out = []
    specs = [(BRAIN_VOLUME, "brain volume (ml)"), *((volume_metric(s), f"{s} volume (ml)") for s in structures),
             (P_LOW, "low intensity percentile"), (P_HIGH, "high intensity percentile"),
             ("classes_absent", "classes absent"), ("unknown_label_voxels", "unknown-label voxels"),
             ("morphometry_present", "morphometry columns present"), ("radiomics_present", "radiomics columns present"),
             ("n_flags", "outlying metrics per subject"), ("seconds", "preprocess seconds")]
    by_group: dict[str, list] = {}
    for r in ok:
        by_group.setdefault(str(r[group_key]), []).append(r)
    rank = {g: i for i, g in enumerate(order or sorted(by_group))}
    names = sorted(by_group, key=lambda g: (rank.get(g, len(rank)), g))
    for key, title in specs:
        groups: dict[str, tuple] = {}
        for name in names:
            rs = by_group[name]
            vals = np.array([np.nan if r.get(key) is None else r[key] for r in rs], float)
            flagged = np.array([(r["subject_id"], key) in hit or (key == "n_flags" and r["flagged"]) for r in rs])
            groups[name] = (vals, [r["subject_id"] for r in rs], flagged)
        out.append(strip_plot_svg(title, groups))
    return out


def _focus(flags: Sequence[str], table) -> tuple[str, str, list[int]] | None:
    """(metric, structure, classes) of the first flag (largest |z| first) that measures a structure."""
    for metric in flags:
        found = metric_structure(metric, table)
        if found:
            return (metric, *found)
    return None


def montage(cfg: DamtConfig, cache: Path, rows: list[dict[str, Any]], flags: Mapping[int, list[str]],
            workers: int) -> list[MontageItem]:
    """Montages of the flagged subjects and a seeded sample of the others.

    rows: the report's subject rows (index = anchor); flags: row index -> its flagged metrics,
    largest |z| first."""
    ok = [(i, r) for i, r in enumerate(rows) if r["status"] == "ok" and not r.get("qc_error")]
    flagged = sorted(((i, r) for i, r in ok if r["flagged"]), key=lambda t: -t[1]["max_abs_z"])
    flagged = flagged[:cfg.qc.montage_max_flagged]
    rest = [(i, r) for i, r in ok if not r["flagged"]]
    rng = np.random.default_rng(cfg.qc.seed)
    pick = sorted(rng.choice(len(rest), min(cfg.qc.montage_sample, len(rest)), replace=False)) if rest else []
    chosen = flagged + [rest[k] for k in pick]
    table = load_label_table(cfg.labels.table)
    colours = class_colours(cfg.labels.table, table)
    colours = palette(table.n_classes) if colours is None else colours  # a custom table without colours
    edges = [plane_labels(p[0]) for p in PLANES]

    def render(item):
        i, r = item
        caption = "random sample (mid-planes)"
        try:
            g = open_subject(store_path(cache, r["subject_id"]))
            ax = str(g.attrs.get("axcodes", cfg.preprocess.orientation))
            centre, classes = None, []
            if r["flagged"]:
                caption = "mid-planes"
                focus = _focus(flags.get(i, []), table)
                if focus:
                    metric, name, classes = focus
                    centre = focus_point(g["atlas"][...], classes)
                    classes = classes if centre else []
                    caption = (f"planes through {name} ({metric}; red outline)" if centre else
                               f"mid-planes: no voxel of {name} ({metric})")
                caption += f"; flagged: {r['flags']}"
            planes = zip(slices(g["image"], ax, centre), slices(g["atlas"], ax, centre))
            out = [MontagePlane(p[0], grey_png(img), labels_png(lab, colours), e,
                                outline_png(lab, classes) if classes else b"")
                   for p, (img, lab), e in zip(PLANES, planes, edges)]
        except Exception:  # noqa: BLE001 - a picture must not stop the report (the store shows as unreadable)
            return None
        return MontageItem(str(r["subject_id"]), str(r["cohort"]), caption, out, bool(r["flagged"]), i)

    with ThreadPoolExecutor(max(1, workers)) as pool:
        return [m for m in pool.map(render, chosen) if m is not None]
