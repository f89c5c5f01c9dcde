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
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from damt.labels import class_colours, load_label_table
from damt.qc import (
    Column,
    Link,
    MontageItem,
    MontagePlane,
    Report,
    Section,
    flag_outliers,
    focus_point,
    grey_png,
    labels_png,
    metric_structure,
    mid_slices,
    outline_png,
    palette,
    plane_labels,
    render_html,
    robust_z,
    slices,
    strip_plot_svg,
    structure_classes,
)
from damt.qc.render import FOCUS_RGB, MAX_POINTS, PLANES


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


def _ras_volume(shape=(7, 9, 11)) -> np.ndarray:
    """A volume whose voxel value encodes its RAS index: value = 10000 r + 100 a + s."""
    r, a, s = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (10000 * r + 100 * a + s).astype(np.int64)


def _store_as(ras: np.ndarray, axcodes: str) -> np.ndarray:
    """``ras`` stored in another orientation (e.g. FreeSurfer's LIA)."""
    axis_of = {"R": 0, "L": 0, "A": 1, "P": 1, "S": 2, "I": 2}
    vol = ras.transpose([axis_of[c] for c in axcodes])
    for i, c in enumerate(axcodes):
        if c in "LPI":
            vol = np.flip(vol, i)
    return vol


@settings(max_examples=25, deadline=None)
@given(st.permutations([0, 1, 2]), st.lists(st.booleans(), min_size=3, max_size=3))
def test_orientation_letters_name_the_edges_in_any_stored_orientation(order, flips):
    """Each plane's edge letters (plane_labels) say where the subject's L/R, A/P, S/I are, whatever
    orientation the array is stored in: the pixel at the edge marked R is further right than the
    one marked L, and so on."""
    ras = _ras_volume()
    axcodes = "".join(("RAS"[a] if not f else "LPI"[a]) for a, f in zip(order, flips))
    coord = {"R": lambda v: v // 10000, "A": lambda v: v // 100 % 100, "S": lambda v: v % 100}
    opposite = {"L": "R", "P": "A", "I": "S"}
    for (name, *_), plane in zip(PLANES, slices(_store_as(ras, axcodes), axcodes)):
        edges = plane_labels(name)
        h, w = plane.shape
        pixel = {"left": plane[h // 2, 0], "right": plane[h // 2, w - 1], "top": plane[0, w // 2],
                 "bottom": plane[h - 1, w // 2]}
        for a, b in (("left", "right"), ("top", "bottom")):
            pos = edges[b] if edges[b] in coord else edges[a]  # the positive pole: R, A or S
            more, less = (b, a) if pos == edges[b] else (a, b)
            assert coord[pos](pixel[more]) > coord[pos](pixel[less]), (axcodes, name, edges)
            assert opposite.get(edges[less]) == edges[more]
    assert plane_labels("axial") == {"left": "L", "right": "R", "top": "A", "bottom": "P"}
    assert plane_labels("coronal") == {"left": "L", "right": "R", "top": "S", "bottom": "I"}
    assert plane_labels("sagittal") == {"left": "P", "right": "A", "top": "S", "bottom": "I"}


def test_slices_through_a_point_and_focus_point():
    ras = _ras_volume()
    axial, coronal, sagittal = slices(ras, "RAS", centre=(2, 3, 4))
    assert (axial % 100 == 4).all() and (coronal // 100 % 100 == 3).all() and (sagittal // 10000 == 2).all()
    atlas = np.zeros((20, 20, 20), np.uint8)
    atlas[2:5, 2:5, 2:5] = 7          # small class
    atlas[10:18, 10:18, 4:6] = 9      # the larger class of the structure
    atlas[10:18, 10:18, 8] = 9
    atlas[13:15, 13:15, 4:9] = 0      # a hole at the centroid: the point must still be inside
    point = focus_point(atlas, [7, 9])
    assert atlas[point] == 9
    assert focus_point(atlas, [3]) is None


def test_montage_pngs_use_the_class_colours_and_keep_the_background_clear():
    table = load_label_table("damt-v1")
    colours = class_colours("damt-v1", table)
    img = np.linspace(0, 1, 40 * 50, dtype=np.float16).reshape(40, 50)
    grey = Image.open(io.BytesIO(grey_png(img)))
    assert grey.mode == "L" and grey.size == (50, 40)  # the store's own resolution: the page scales it
    assert np.asarray(grey)[0, 0] == 0 and np.asarray(grey)[-1, -1] == 255
    lab = np.zeros((40, 50), np.uint8)
    lab[10:20, 10:30] = 2  # Left-Lateral-Ventricle
    over = Image.open(io.BytesIO(labels_png(lab, colours)))
    rgba = np.asarray(over.convert("RGBA"))
    assert rgba[0, 0, 3] == 0                                      # background: transparent
    assert tuple(rgba[15, 15]) == (120, 18, 134, 255)              # the FreeSurfer LUT purple
    outline = np.asarray(Image.open(io.BytesIO(outline_png(lab, [2]))).convert("RGBA"))
    ring = outline[..., 3] > 0
    assert ring[10, 15] and ring[11, 15] and not ring[12, 20] and not ring[5, 5]  # 2 px wide, inside
    assert tuple(outline[10, 15, :3]) == FOCUS_RGB
    pal = palette(101)  # the fallback for a table without colours
    assert pal.shape == (101, 3) and (pal[0] == 0).all() and len({tuple(c) for c in pal[1:]}) == 100


def test_metric_structure_finds_the_classes_a_metric_measures():
    table = load_label_table("damt-v1")
    names = lambda found: [table.class_names[c] for c in found[1]]  # noqa: E731
    assert names(metric_structure("volume_ml.Hippocampus", table)) == ["Left-Hippocampus", "Right-Hippocampus"]
    assert names(metric_structure("morphometry.aseg.Left-Thalamus-Proper.Volume_mm3", table)) == \
        ["Left-Thalamus-Proper*"]
    assert names(metric_structure("morphometry.lh.aparc.insula.ThickAvg", table)) == ["ctx-lh-insula"]
    for metric in ("brain_volume_ml", "intensity.p_high", "radiomics.GM.glcm.Idmn", "morphometry.aseg.measure.eTIV",
                   "morphometry.lh.aparc.measure.MeanThickness", "morphometry.aseg.Left-choroid-plexus.Volume_mm3"):
        assert metric_structure(metric, table) is None, metric


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


def _report(evil: str = "m") -> Report:
    rows = [{"cohort": "c", "subject_id": "s1", "status": "failed", "reason": "corrupt_file", "message": evil,
             "flagged": None, "value": float("nan")},
            {"cohort": "c", "subject_id": "s2", "status": "ok", "reason": "", "message": "", "flagged": True,
             "value": 1.5},
            {"cohort": "c", "subject_id": "s3", "status": "ok", "reason": "", "message": "", "flagged": True,
             "value": 2.5}]
    plane = MontagePlane("axial", b"\x89PNG-img", b"\x89PNG-lab", plane_labels("axial"), b"\x89PNG-outline")
    return Report(title="QC", meta={"cache": "/x"}, summary={"subjects found": 3, "failed": 1},
                  reasons=[{"reason": "corrupt_file", "count": 1, "meaning": "m"}],
                  groups=[("Per cohort", "cohort", [{"cohort": "c", "found": 3, "ok": 2, "failed": 1, "flagged": 2}]),
                          ("Per site", "site", [{"site": "<A>", "found": 3, "ok": 2, "failed": 1, "flagged": 2}])],
                  failed=[{"cohort": "c", "subject_id": "s1", "reason": "corrupt_file", "message": evil}],
                  flagged=[{"cohort": "c", "subject_id": "s2", "n_flags": 1, "max_abs_z": 9.0, "flags": "v z=+9",
                            "row": 1},
                           {"cohort": "c", "subject_id": "s3", "n_flags": 1, "max_abs_z": 5.0, "flags": "v z=+5",
                            "row": 2}],
                  outliers=[{"cohort": "c", "subject_id": "s2", "metric": "value", "value": 1.5, "median": 0.0,
                             "z": 9.0, "row": 1}],
                  columns=[Column(k, k, key_column=k != "message") for k in rows[0]], rows=rows,
                  montage=[MontageItem("s2", "c", "flagged", [plane], True, row=1)], verify=["s9 [x]: bad"],
                  warnings=[f"all ok subjects: n = 2 {evil}"],
                  sections=[Section("extra", "Extra <figure>", "<p>x</p>")])


def test_html_is_self_contained_and_escapes_data():
    evil = '</script><script>alert(1)</script> & "x"'
    page = render_html(_report(evil))
    assert "<script>alert(1)" not in page and "&lt;/script&gt;" in page
    assert not re.search(r"(src|href)=\"(https?:)?//", page)  # nothing fetched from the network
    data = re.search(r'<script type="application/json" id="qc-data">(.*?)</script>', page, re.S).group(1)
    parsed = json.loads(data)
    first = dict(zip(parsed["keys"], parsed["rows"][0]))
    assert first["message"] == evil and first["value"] is None
    assert "data:image/png;base64," in page and "s9 [x]: bad" in page
    assert "&lt;A&gt;" in page and "Extra &lt;figure&gt;" in page  # group values and section titles escaped


def test_html_links_outliers_to_rows_and_montages():
    page = render_html(_report())
    # the outlier tables link each subject to its table row and, when it has one, to its montage
    flagged = page.split('id="flagged"', 1)[1].split("</table>", 1)[0]
    assert re.search(r'<a href="#s-1" title="[^"]*">s2</a>', flagged)
    assert '<a href="#m-1"' in flagged and '<a href="#m-2"' not in flagged and "not shown" in flagged
    assert '<a href="#s-1"' in page.split('id="outliers"', 1)[1]
    # anchors: the montage figure carries m-<row>; its caption links back to the row
    fig = re.search(r'<figure id="m-1" class="flag">(.*?)</figure>', page, re.S).group(1)
    assert '<a href="#s-1"' in fig
    # three things stacked in the plane: image, overlay, outline; and the four edge letters as text
    assert fig.count("<img ") == 3
    assert re.findall(r'<span class="ol (\w)"[^>]*>(\w)</span>', fig) == [
        ("l", "L"), ("r", "R"), ("t", "A"), ("b", "P")]
    assert '--tile:256px' in page
    # warnings box and the extension section, with a contents link
    assert 'class="warnbox"' in page and "n = 2" in page
    assert '<h2 id="sec-extra">' in page and 'href="#sec-extra"' in page
    # the compact table: key columns flagged in the data (the script shows those first)
    cols = json.loads(re.search(r'id="qc-data">(.*?)</script>', page, re.S).group(1))["columns"]
    assert [c["key"] for c in cols if not c["key_column"]] == ["message"]
    assert '<span id="ncols">6 of 7</span> shown' in page
    assert Link("a", "#b").href == "#b"


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
    report = Report(title="QC", meta={}, summary={}, reasons=[], groups=[], failed=[], flagged=[], outliers=[],
                    columns=[], rows=[], targets=[{"target": "morphometry", "source": "freesurfer:original-dkt",
                                                   "columns": 4, **got}])
    table = re.search(r'<table id="targets">.*?</table>', render_html(report), re.S).group(0)
    assert "<td>freesurfer:original-dkt</td>" in table and '<td class="num">0.4167</td>' in table
