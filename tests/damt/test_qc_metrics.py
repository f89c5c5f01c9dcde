"""The pure parts of ``damt qc``: robust z, outlier flags, structure lookup, mid-slices, montage,
SVG plots and the HTML page."""

from __future__ import annotations

import io
import json
import re
import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from damt.labels import load_label_table
from damt.qc import (Column, MontageItem, Report, flag_outliers, mid_slices, montage_png, palette, render_html,
                     robust_z, strip_plot_svg, structure_classes)
from damt.qc.render import MAX_POINTS


def test_robust_z_is_median_and_scaled_mad():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
    z, med, scale = robust_z(x, min_n=3)
    assert med == 3.0 and scale == pytest.approx(1.4826)  # MAD of |x - 3| = [2, 1, 0, 1, 97] is 1
    assert z == pytest.approx((x - 3.0) / 1.4826)


def test_robust_z_guards_a_zero_mad():
    x = np.array([5.0, 5.0, 5.0, 5.0, 5.0, 9.0])  # MAD 0: mean absolute deviation instead
    z, _, scale = robust_z(x, min_n=3)
    assert scale == pytest.approx(4 / 6 * 1.2533) and np.isfinite(z).all()
    assert z[:5] == pytest.approx(0.0) and z[5] > 3.5
    z, _, scale = robust_z(np.full(6, 7.0), min_n=3)  # all equal: nothing is an outlier
    assert scale == 0.0 and (z == 0).all()


def test_robust_z_ignores_missing_values_and_needs_min_n():
    x = np.array([1.0, np.nan, 2.0, 3.0, np.inf])
    z, _, _ = robust_z(x, min_n=3)
    assert np.isnan(z[[1, 4]]).all() and np.isfinite(z[[0, 2, 3]]).all()
    z, _, _ = robust_z(x, min_n=4)
    assert np.isnan(z).all()


def test_robust_z_is_column_wise():
    rng = np.random.default_rng(0)
    x = rng.normal([0.0, 100.0], [1.0, 20.0], size=(200, 2))
    z, med, scale = robust_z(x, min_n=8)
    assert z.shape == x.shape
    assert med == pytest.approx([0.0, 100.0], abs=3) and scale == pytest.approx([1.0, 20.0], rel=0.2)
    assert (np.abs(z) > 3.5).mean() < 0.01  # normal data: few chance flags


def test_flag_outliers_records_metric_and_z_and_respects_groups():
    frame = pd.DataFrame({"a": [10.0, 11, 9, 10, 10.5, 9.5, 10, 50], "b": [1.0] * 7 + [1.0]})
    out = flag_outliers(frame, ["a", "b"], threshold=3.5, min_n=5)
    assert list(out["index"]) == [7] and out["metric"].iloc[0] == "a" and out["z"].iloc[0] > 3.5
    assert out["median"].iloc[0] == 10.0 and out["value"].iloc[0] == 50.0
    # a per-metric threshold
    assert flag_outliers(frame, ["a", "b"], threshold=[1e6, 3.5], min_n=5).empty
    # within groups: each group of 4 is below min_n, so nothing is scored
    groups = pd.Series(["x"] * 4 + ["y"] * 4)
    assert flag_outliers(frame, ["a"], 3.5, min_n=5, groups=groups).empty
    frame2 = pd.concat([frame, frame.assign(a=frame["a"] * 100)], ignore_index=True)
    groups2 = pd.Series(["x"] * 8 + ["y"] * 8)
    out = flag_outliers(frame2, ["a"], 3.5, min_n=5, groups=groups2)
    assert sorted(out["index"]) == [7, 15]
    out_all = flag_outliers(frame2, ["a"], 3.5, min_n=5)
    assert 15 in set(out_all["index"]) and 7 not in set(out_all["index"])


def test_structure_classes_join_both_sides_and_reject_typos():
    table = load_label_table("damt-v1")
    found = structure_classes(table, ["Hippocampus", "Lateral-Ventricle"])
    assert [table.class_names[c] for c in found["Hippocampus"]] == ["Left-Hippocampus", "Right-Hippocampus"]
    assert len(found["Lateral-Ventricle"]) == 2
    with pytest.raises(ValueError, match="Hipocampus"):
        structure_classes(table, ["Hipocampus"])


def test_mid_slices_show_the_same_planes_in_any_orientation():
    ras = np.arange(7 * 9 * 11, dtype=np.float32).reshape(7, 9, 11)  # odd sizes: one true middle
    # the same volume stored LIA (FreeSurfer's conformed order): L = -R, I = -S, A
    lia = np.flip(np.flip(ras, 0).transpose(0, 2, 1), 1)
    for a, b in zip(mid_slices(ras, "RAS"), mid_slices(lia, "LIA")):
        assert np.array_equal(a, b)
    axial, coronal, sagittal = mid_slices(ras, "RAS")
    assert axial.shape == (9, 7) and coronal.shape == (11, 7) and sagittal.shape == (11, 9)
    # axial: top row is most anterior, right column is the subject's right (neurological)
    assert axial[0, -1] == ras[6, 8, 5] and axial[-1, 0] == ras[0, 0, 5]
    assert coronal[0, -1] == ras[6, 4, 10] and sagittal[0, -1] == ras[3, 8, 10]


def test_montage_png_and_palette():
    colours = palette(101)
    assert colours.shape == (101, 3) and (colours[0] == 0).all()
    assert len({tuple(c) for c in colours[1:]}) == 100
    img = np.linspace(0, 1, 40 * 50, dtype=np.float16).reshape(40, 50)
    lab = np.zeros((40, 50), np.uint8)
    lab[10:20, 10:30] = 13
    png = montage_png([img, img.T, img], [lab, lab.T, lab], colours, tile=64)
    sheet = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert sheet.shape == (128, 192, 3)
    top, bottom = sheet[:64].astype(int), sheet[64:].astype(int)
    assert (top[..., 0] == top[..., 1]).all()  # the image row is grey
    assert np.abs(bottom - top).max() > 40     # the overlay row is coloured where labels are


def test_strip_plot_is_valid_svg_with_flagged_ids():
    rng = np.random.default_rng(1)
    vals = rng.normal(10, 1, 30)
    flagged = np.zeros(30, bool)
    flagged[3] = True
    svg = strip_plot_svg("brain <volume>", {"coh&1": (vals, [f"s{i}" for i in range(30)], flagged),
                                            "empty": (np.array([np.nan]), ["x"], np.array([False]))})
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    titles = [t.text for t in root.iter("{http://www.w3.org/2000/svg}title")]
    assert any(t.startswith("s3:") and "flagged" in t for t in titles) and len(titles) == 30
    big = rng.normal(0, 1, MAX_POINTS + 1)
    svg = strip_plot_svg("many", {"c": (big, [str(i) for i in range(big.size)], np.zeros(big.size, bool))})
    assert svg.count("<circle") == 0 and 'class="hist"' in svg  # a histogram, not 1500 dots
    ET.fromstring(strip_plot_svg("none", {}))


def test_html_is_self_contained_and_escapes_data():
    evil = '</script><script>alert(1)</script> & "x"'
    rows = [{"cohort": "c", "subject_id": "s1", "status": "failed", "reason": "corrupt_file", "message": evil,
             "flagged": None, "value": float("nan")},
            {"cohort": "c", "subject_id": "s2", "status": "ok", "reason": "", "message": "", "flagged": True,
             "value": 1.5}]
    report = Report(title="QC", meta={"cache": "/x"}, summary={"subjects found": 2, "failed": 1},
                    reasons=[{"reason": "corrupt_file", "count": 1, "meaning": "m"}],
                    cohorts=[{"cohort": "c", "found": 2, "ok": 1, "failed": 1, "flagged": 1}],
                    failed=[{"cohort": "c", "subject_id": "s1", "reason": "corrupt_file", "message": evil}],
                    flagged=[{"cohort": "c", "subject_id": "s2", "n_flags": 1, "max_abs_z": 9.0, "flags": "v z=+9"}],
                    outliers=[{"cohort": "c", "subject_id": "s2", "metric": "value", "value": 1.5, "median": 0.0,
                               "z": 9.0}],
                    columns=[Column(k, k) for k in rows[0]], rows=rows,
                    montage=[MontageItem("s2", "c", "flagged", b"\x89PNG", True)], verify=["s9 [x]: bad"])
    page = render_html(report)
    assert "<script>alert(1)" not in page and "&lt;/script&gt;" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched from the network
    data = re.search(r'<script type="application/json" id="qc-data">(.*?)</script>', page, re.S).group(1)
    parsed = json.loads(data)
    assert parsed["rows"][0]["message"] == evil and parsed["rows"][0]["value"] is None
    assert "data:image/png;base64," in page and "s9 [x]: bad" in page


def test_target_presence_counts_present_entries_per_schema():
    from damt.qc.metrics import target_presence

    nan = np.nan
    vectors = [np.array([1.0, 2.0, 3.0, 4.0]), np.array([nan, 2.0, nan, nan]), np.full(4, nan), None,
               np.array([1.0, 2.0])]                     # no store, and a store of another schema
    got = target_presence(vectors, 4)
    assert got == {"subjects": 3, "present_fraction": 5 / 12, "complete": 1, "none": 1}
    assert target_presence([None], 4)["subjects"] == 0 and np.isnan(target_presence([], 4)["present_fraction"])
    with pytest.raises(ValueError):
        target_presence(vectors, 0)
    report = Report(title="QC", meta={}, summary={}, reasons=[], cohorts=[], failed=[], flagged=[], outliers=[],
                    columns=[], rows=[], targets=[{"target": "morphometry", "source": "freesurfer:original-dkt",
                                                   "columns": 4, **got}])
    table = re.search(r'<table id="targets">.*?</table>', render_html(report), re.S).group(0)
    assert "<td>freesurfer:original-dkt</td>" in table and '<td class="num">0.4167</td>' in table
