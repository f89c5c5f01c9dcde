"""Dataset QC (``damt qc``): per-subject metrics, the robust outlier rule, the store contract check,
montage and plot rendering, and the HTML report. The command driver is ``preprocess/qc.py``."""

from damt.qc.html import Column, MontageItem, Report, render_html
from damt.qc.metrics import (SubjectMetrics, flag_outliers, robust_z, structure_classes, subject_metrics,
                             volume_metric)
from damt.qc.render import mid_slices, montage_png, palette, strip_plot_svg
from damt.qc.verify import Expected, verify_store

__all__ = ["Column", "Expected", "MontageItem", "Report", "SubjectMetrics", "flag_outliers", "mid_slices",
           "montage_png", "palette", "render_html", "robust_z", "strip_plot_svg", "structure_classes",
           "subject_metrics", "verify_store", "volume_metric"]
