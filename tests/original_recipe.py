"""The original DAMT's morphometry recipe, re-derived for the tests from the stats files' text (never
through damt.targets.fsstats), and a synthetic DKT table written in a real file's format.

The recipe of the original's extract/glo_feat.py and extract/loc_feat.py:

* global, per hemisphere: the three values of the '# Measure Cortex, NumVert' line and the two
  lines after it, then per table row (file order) the cells NumVert..GausCurv (cells 1-7);
* local, per hemisphere: the third of those Measure values (MeanThickness), then per row ThickAvg
  and MeanCurv x 20;
* lh then rh within each block; the global block, then the local one.
"""

from __future__ import annotations

import re

import numpy as np

GLOBAL_COLS = ("NumVert", "SurfArea", "GrayVol", "ThickAvg", "ThickStd", "MeanCurv", "GausCurv")
MEASURES = ("NumVert", "WhiteSurfArea", "MeanThickness")
NOT_IN_DKT = ("bankssts", "frontalpole", "temporalpole")   # Desikan regions the DKT protocol drops


def recipe(lh_text: str, rh_text: str) -> tuple[list[str], np.ndarray]:
    """(column names, float64 values) of the original recipe on two surface tables' text."""
    glob_names, glob_vals, loc_names, loc_vals = [], [], [], []
    for hemi, text in (("lh", lh_text), ("rh", rh_text)):
        lines = text.splitlines()
        first = next(i for i, ln in enumerate(lines) if ln.startswith("# Measure Cortex, NumVert,"))
        measures = [float(ln.split(", ")[3]) for ln in lines[first:first + 3]]
        head = next(i for i, ln in enumerate(lines) if ln.startswith("# ColHeaders"))
        rows = [ln.split() for ln in lines[head + 1:] if ln.strip()]
        glob_names += [f"global.{hemi}.measure.{m}" for m in MEASURES]
        glob_vals += measures
        loc_names.append(f"local.{hemi}.measure.MeanThickness")
        loc_vals.append(measures[2])
        for cells in rows:
            glob_names += [f"global.{hemi}.{cells[0]}.{c}" for c in GLOBAL_COLS]
            glob_vals += [float(x) for x in cells[1:8]]
            loc_names += [f"local.{hemi}.{cells[0]}.ThickAvg", f"local.{hemi}.{cells[0]}.MeanCurv_x20"]
            loc_vals += [float(cells[4]), float(cells[6]) * 20]
    return glob_names + loc_names, np.asarray(glob_vals + loc_vals)


def dkt_from_desikan(text: str) -> str:
    """A ?h.aparc.DKTatlas.stats text in the real file's format: header lines renamed, the three
    non-DKT rows dropped, and every Measure value and table number changed (x1.1 + 1)."""
    out = []
    for line in text.splitlines():
        if line.startswith("# Measure "):
            parts = line.split(", ")
            parts[-2] = f"{float(parts[-2]) * 1.1 + 1:.6f}"
            line = ", ".join(parts)
        elif line.startswith("#"):
            line = re.sub(r"\b([lr]h)\.aparc\.(annot|stats)", r"\1.aparc.DKTatlas.\2", line).replace(
                "aparc.annot.ctab", "aparc.annot.DKTatlas.ctab")
        elif line.strip():
            cells = line.split()
            if cells[0] in NOT_IN_DKT:
                continue
            line = f"{cells[0]:<40} " + " ".join(f"{float(c) * 1.1 + 1:.4f}" for c in cells[1:])
        out.append(line)
    return "\n".join(out) + "\n"
