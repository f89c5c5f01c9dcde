"""Pictures for the QC report: montage planes as PNG (pillow) and distribution plots as inline SVG.
No plotting library: the report must open offline, and the plots are simple enough to draw.

A montage plane is two PNGs at the store's resolution: the grey image, and the parcellation in
the label table's colours with a transparent background; the page stacks them (overlay opacity is
a page control) and scales them up, and draws the orientation letters as text.
"""

from __future__ import annotations

import colorsys
import io
import math
from html import escape
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

#: (name, RAS axis normal to the plane, RAS axis shown left->right, RAS axis shown bottom->top);
#: neurological convention: the subject's left is on the viewer's left.
PLANES = (("axial", 2, 0, 1), ("coronal", 1, 0, 2), ("sagittal", 0, 1, 2))
#: (negative, positive) pole of each RAS axis
POLES = (("L", "R"), ("P", "A"), ("I", "S"))
#: outline colour of the structure that flagged a subject
FOCUS_RGB = (255, 48, 48)
#: subjects per cohort above which a strip plot draws a histogram instead of one dot each
MAX_POINTS = 1500
OUTLIER_RGB = "#d62728"


def palette(n_classes: int) -> np.ndarray:
    """Distinct colours per class (uint8, [n_classes, 3]); class 0 (background) is black.

    Hues step by the golden angle so neighbouring class ids (often neighbouring structures) differ.
    """
    rgb = np.zeros((n_classes, 3), np.uint8)
    for c in range(1, n_classes):
        h = (c * 0.618033988749895) % 1.0
        rgb[c] = np.round(np.array(colorsys.hsv_to_rgb(h, 0.75 if c % 2 else 0.95, 1.0)) * 255)
    return rgb


def _ras_axes(axcodes: str) -> list[tuple[int, bool]]:
    """For each RAS axis (0=R, 1=A, 2=S): (array axis holding it, True if it runs the other way)."""
    pos = {"R": (0, False), "L": (0, True), "A": (1, False), "P": (1, True), "S": (2, False), "I": (2, True)}
    out: list[tuple[int, bool] | None] = [None, None, None]
    for axis, code in enumerate(axcodes.upper()):
        ras, flip = pos[code]
        out[ras] = (axis, flip)
    if any(o is None for o in out):
        raise ValueError(f"axis codes {axcodes!r} do not name each of R/L, A/P, S/I once")
    return out  # type: ignore[return-value]


def plane_labels(plane: str) -> dict[str, str]:
    """The anatomical direction at each edge of a plane as drawn by :func:`slices`:
    {"left", "right", "top", "bottom"} -> one of L R A P S I."""
    _, _, horiz, vert = next(p for p in PLANES if p[0] == plane)
    return {"left": POLES[horiz][0], "right": POLES[horiz][1], "top": POLES[vert][1], "bottom": POLES[vert][0]}


def slices(arr: Any, axcodes: str, centre: Sequence[int] | None = None) -> list[np.ndarray]:
    """The axial, coronal and sagittal planes of a 3-D array (numpy or zarr: only the three planes
    are read) through the array index ``centre`` (default: the middle of each axis), each as a 2-D
    array in display order (row 0 at the top; edges as :func:`plane_labels` names them)."""
    ras = _ras_axes(axcodes)
    out = []
    for _, normal, horiz, vert in PLANES:
        axis, _ = ras[normal]
        index: list[Any] = [slice(None)] * 3
        index[axis] = arr.shape[axis] // 2 if centre is None else int(centre[axis])
        plane = np.asarray(arr[tuple(index)])
        rest = [a for a in range(3) if a != axis]  # the array axes left in ``plane``, in order
        (h_axis, h_flip), (v_axis, v_flip) = ras[horiz], ras[vert]
        plane = plane.transpose(rest.index(h_axis), rest.index(v_axis))
        if h_flip:
            plane = plane[::-1]
        if not v_flip:  # display rows go downwards, so the "up" axis is reversed
            plane = plane[:, ::-1]
        out.append(np.ascontiguousarray(plane.T))
    return out


def mid_slices(arr: Any, axcodes: str) -> list[np.ndarray]:
    """:func:`slices` through the middle of the array."""
    return slices(arr, axcodes)


def focus_point(atlas: np.ndarray, classes: Sequence[int]) -> tuple[int, int, int] | None:
    """An array index inside a structure, to slice through it: the voxel of the structure's largest
    class (of ``classes``, e.g. the larger of both hippocampi) nearest that class's centroid (a
    ventricle is C-shaped: its centroid may lie outside it). None when no class has a voxel.

    atlas: uint8 [X, Y, Z] class ids."""
    counts = np.bincount(np.asarray(atlas).ravel(), minlength=max(classes) + 1)[list(classes)]
    if counts.max() == 0:
        return None
    voxels = np.argwhere(atlas == classes[int(np.argmax(counts))])
    near = np.argmin(((voxels - voxels.mean(axis=0)) ** 2).sum(axis=1))
    return tuple(int(v) for v in voxels[near])  # type: ignore[return-value]


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True, **({"transparency": 0} if image.mode == "P" else {}))
    return buf.getvalue()


def grey_png(plane: np.ndarray) -> bytes:
    """An image plane ([H, W], values in [0, 1]) as an 8-bit grey PNG at its own resolution (the
    page scales it; a larger PNG would add bytes, not detail)."""
    grey = np.clip(np.nan_to_num(np.asarray(plane, np.float32)), 0.0, 1.0) * 255.0
    return _png(Image.fromarray(np.round(grey).astype(np.uint8), "L"))


def labels_png(plane: np.ndarray, colours: np.ndarray) -> bytes:
    """An atlas plane ([H, W] class ids) as a paletted PNG in the class colours, background (class 0)
    transparent, so the page can lay it over the image at any opacity. colours: uint8 [n, 3]."""
    lab = np.clip(np.asarray(plane).astype(np.int64), 0, len(colours) - 1).astype(np.uint8)
    image = Image.fromarray(lab, "P")
    pal = np.zeros((256, 3), np.uint8)
    pal[:len(colours)] = colours[:256]
    image.putpalette(pal.ravel().tolist())
    return _png(image)


def outline_png(plane: np.ndarray, classes: Sequence[int], rgb: Sequence[int] = FOCUS_RGB) -> bytes:
    """The outline of the voxels of ``classes`` in an atlas plane ([H, W] class ids) as a paletted
    PNG, transparent elsewhere: drawn over the overlay, it marks the structure that flagged a
    subject. A pixel is on the outline when it is in the structure within 2 pixels (4-neighbour
    steps) of a pixel that is not: two pixels wide, so it stays visible when the page scales it."""
    mask = np.isin(np.asarray(plane), list(classes))
    inner = mask
    for _ in range(2):
        pad = np.pad(inner, 1)
        inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:] & inner
    image = Image.fromarray((mask & ~inner).astype(np.uint8), "P")
    image.putpalette([0, 0, 0, *rgb])
    return _png(image)


def fmt(v: float) -> str:
    """A number for people: 4 significant digits, no exponent for ordinary magnitudes."""
    if v is None or not math.isfinite(v):
        return ""
    return f"{v:.4g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.2e}"


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / n))
    for mult in (1, 2, 2.5, 5, 10):
        if span / (step * mult) <= n:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def strip_plot_svg(title: str, groups: Mapping[str, tuple[np.ndarray, Sequence[str], np.ndarray]],
                   width: int = 560, row_h: int = 34) -> str:
    """An SVG distribution plot: one row per group (cohort), value on the x axis.

    groups: name -> (values [n] float, subject ids [n], flagged [n] bool). Each row has the IQR as
    a box and the median as a bar; subjects are dots (a histogram when a group has more than
    MAX_POINTS), flagged subjects red dots with the id as tooltip. NaN values are left out.
    """
    label_w, pad = 120, 12
    clean = {}
    for name, (vals, ids, flagged) in groups.items():
        vals = np.asarray(vals, np.float64)
        keep = np.isfinite(vals)
        clean[name] = (vals[keep], [i for i, k in zip(ids, keep) if k], np.asarray(flagged, bool)[keep])
    allv = np.concatenate([v for v, _, _ in clean.values()]) if clean else np.array([])
    height = 30 + row_h * max(len(clean), 1) + 26
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'class="plot" role="img" aria-label="{escape(title)}">',
             f'<text x="4" y="16" class="pt">{escape(title)}</text>']
    if allv.size == 0:
        parts.append(f'<text x="{label_w}" y="{30 + row_h // 2}" class="pl">no values</text></svg>')
        return "".join(parts)
    lo, hi = float(allv.min()), float(allv.max())
    if hi - lo < 1e-12 * max(1.0, abs(hi)):
        lo, hi = lo - 0.5 * max(1.0, abs(lo)) * 0.01, hi + 0.5 * max(1.0, abs(hi)) * 0.01
    margin = (hi - lo) * 0.04
    lo, hi = lo - margin, hi + margin
    x0, x1 = label_w, width - pad

    def sx(v):
        return x0 + (v - lo) / (hi - lo) * (x1 - x0)

    rng = np.random.default_rng(0)  # jitter only; fixed so the report is reproducible
    for r, (name, (vals, ids, flagged)) in enumerate(clean.items()):
        y = 30 + r * row_h
        cy = y + row_h / 2
        parts.append(f'<text x="4" y="{cy + 4:.1f}" class="pl">{escape(name)[:18]} (n={vals.size})</text>')
        if vals.size == 0:
            continue
        q1, med, q3 = np.percentile(vals, [25, 50, 75])
        parts.append(f'<rect x="{sx(q1):.1f}" y="{y + 6}" width="{max(sx(q3) - sx(q1), 1):.1f}" '
                     f'height="{row_h - 12}" class="box"/>')
        parts.append(f'<line x1="{sx(med):.1f}" x2="{sx(med):.1f}" y1="{y + 4}" y2="{y + row_h - 4}" class="med"/>')
        normal = ~flagged
        if vals.size > MAX_POINTS:
            counts, edges = np.histogram(vals[normal], bins=60, range=(lo, hi))
            top = max(int(counts.max()), 1)
            for c, e0, e1 in zip(counts, edges[:-1], edges[1:]):
                if c:
                    bh = (row_h - 8) * c / top
                    parts.append(f'<rect x="{sx(e0):.1f}" y="{y + row_h - 4 - bh:.1f}" '
                                 f'width="{max(sx(e1) - sx(e0) - 0.5, 0.5):.1f}" height="{bh:.1f}" class="hist"/>')
        else:
            jit = rng.uniform(-0.3, 0.3, vals.size) * row_h
            for v, sid, j in zip(vals[normal], np.asarray(ids, object)[normal], jit[normal]):
                parts.append(f'<circle cx="{sx(v):.1f}" cy="{cy + j:.1f}" r="2.5" class="pt-ok">'
                             f'<title>{escape(str(sid))}: {fmt(v)}</title></circle>')
        jit = rng.uniform(-0.3, 0.3, int(flagged.sum())) * row_h
        for v, sid, j in zip(vals[flagged], np.asarray(ids, object)[flagged], jit):
            parts.append(f'<circle cx="{sx(v):.1f}" cy="{cy + j:.1f}" r="3.5" fill="{OUTLIER_RGB}">'
                         f'<title>{escape(str(sid))}: {fmt(v)} (flagged)</title></circle>')
    ya = 30 + row_h * len(clean)
    parts.append(f'<line x1="{x0}" x2="{x1}" y1="{ya}" y2="{ya}" class="axis"/>')
    for t in _ticks(lo, hi):
        parts.append(f'<line x1="{sx(t):.1f}" x2="{sx(t):.1f}" y1="{ya}" y2="{ya + 4}" class="axis"/>'
                     f'<text x="{sx(t):.1f}" y="{ya + 16}" class="tk">{fmt(t)}</text>')
    parts.append("</svg>")
    return "".join(parts)
