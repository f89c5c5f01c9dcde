"""Dataset QC (``damt qc``): per-subject metrics, the robust outlier rule, the store contract check,
montage and plot rendering, strata from a user's table, and the HTML report. The command driver is
``preprocess/qc.py``."""

from damt.qc.html import Column, Link, MontageItem, MontagePlane, Report, Section, render_html
from damt.qc.metrics import (
    STABLE_N,
    SubjectMetrics,
    flag_outliers,
    metric_structure,
    robust_z,
    structure_classes,
    subject_metrics,
    volume_metric,
)
from damt.qc.render import (
    focus_point,
    grey_png,
    labels_png,
    mid_slices,
    outline_png,
    palette,
    plane_labels,
    slices,
    strip_plot_svg,
)
from damt.qc.strata import Strata, StrataError, stratify
from damt.qc.verify import Expected, verify_store

__all__ = [
    "STABLE_N", "Column", "Expected", "Link", "MontageItem", "MontagePlane", "Report", "Section",
    "Strata", "StrataError", "SubjectMetrics", "flag_outliers", "focus_point", "grey_png",
    "labels_png", "metric_structure", "mid_slices", "outline_png", "palette", "plane_labels",
    "render_html", "robust_z", "slices", "stratify", "strip_plot_svg", "structure_classes",
    "subject_metrics", "verify_store", "volume_metric",
]
