"""Assemble the self-contained QC report: one HTML file, no network resources.

The subject table's rows travel as JSON inside the page (one array per row, keys named once) and a
few lines of vanilla JS draw,
sort and filter them, so a cohort of 100k subjects stays one file that a browser opens quickly
(only the rows that match the filter are drawn, at most ``TABLE_LIMIT`` at a time). Everything
people must act on (warnings, failures, outliers, verification problems) is also static HTML, so
it is readable with scripts off.

Anchors: subject table row ``i`` (the i-th entry of ``Report.rows``) is ``#s-<i>``; its montage,
when it has one, ``#m-<i>``. Outlier rows link to both; following ``#s-<i>`` makes the script show
that row whatever the filters were. Section headings are ``#sec-<name>``. Extra sections
(``Report.sections``) slot in after the distributions and get a link in the page's contents bar.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from html import escape
from typing import Any, NamedTuple, Sequence

from damt.qc.page_assets import CSS, JS
from damt.qc.render import fmt

TABLE_LIMIT = 1000      # subject rows drawn at once; the filter narrows the rest
STATIC_LIMIT = 2000     # rows of the static failure and outlier tables (the CSVs have all)
MONTAGE_TILE_PX = 256   # on-screen size of one montage plane (the enlarged view is larger)


@dataclass
class Column:
    """A subject-table column: key in each row dict, header label, tooltip; ``key_column``: shown
    in the compact default view (the others are one click away)."""

    key: str
    label: str
    doc: str = ""
    key_column: bool = True


@dataclass
class MontagePlane:
    """One plane of a montage: the grey image, the transparent class overlay and optionally the
    outline of the structure that flagged the subject (PNG bytes of equal size), and the
    anatomical direction at each edge (``render.plane_labels``)."""

    name: str
    image_png: bytes
    labels_png: bytes
    edges: dict[str, str]
    outline_png: bytes = b""


@dataclass
class MontageItem:
    """A subject's montage; ``row`` is its index in ``Report.rows`` (the link anchor)."""

    subject_id: str
    cohort: str
    caption: str
    planes: list[MontagePlane]
    flagged: bool
    row: int


@dataclass
class Section:
    """An extra report section: ``html`` is trusted markup made by DAMT code, not user text."""

    id: str
    title: str
    html: str


@dataclass
class Report:
    """Everything the page shows.

    ``rows``: one JSON-able dict per subject (keys of ``columns`` plus ``status`` and ``flagged``).
    ``failed``, ``flagged`` (one per flagged subject) and ``outliers`` (one per flagged value): row
    dicts for the static tables; a ``row`` key (index into ``rows``) makes the subject a link.
    ``groups``: (title, key column, rows) summary tables, e.g. per cohort and per ``--by`` stratum.
    ``warnings``: shown in a box under the summary. ``verify``: None when --verify did not run, else
    its problem lines."""

    title: str
    meta: dict[str, str]
    summary: dict[str, int]
    reasons: list[dict[str, Any]]
    groups: list[tuple[str, str, list[dict[str, Any]]]]
    failed: list[dict[str, Any]]
    flagged: list[dict[str, Any]]
    outliers: list[dict[str, Any]]
    columns: list[Column]
    rows: list[dict[str, Any]]
    plots: list[str] = field(default_factory=list)
    plots_by: str = "cohort"
    montage: list[MontageItem] = field(default_factory=list)
    verify: list[str] | None = None
    verify_checked: int = 0
    warnings: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    #: one row per target kind: target, source (schema), columns, subjects, present_fraction, complete, none
    targets: list[dict[str, Any]] = field(default_factory=list)


class Link(NamedTuple):
    """A table cell that links within the page."""

    text: str
    href: str
    title: str = ""


def _json_for_script(obj: Any) -> str:
    """JSON that is safe inside <script> (no '</script>', no HTML parsing surprises); NaN -> null."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v
    text = json.dumps(clean(obj), separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _compact(v: Any) -> Any:
    """A table value for the page's JSON: floats to 6 significant digits (the table shows 4; the
    CSV keeps every digit), so 10k rows stay a few MB."""
    return float(f"{v:.6g}") if isinstance(v, float) and math.isfinite(v) else v


def _cell(v: Any) -> str:
    if isinstance(v, Link):
        title = f' title="{escape(v.title)}"' if v.title else ""
        return f'<td><a href="{escape(v.href)}"{title}>{escape(v.text)}</a></td>'
    if isinstance(v, float):
        return f'<td class="num">{escape(fmt(v))}</td>'
    if isinstance(v, int) and not isinstance(v, bool):
        return f'<td class="num">{v}</td>'
    return f"<td>{escape('' if v is None else str(v))}</td>"


def _table(rows: Sequence[dict[str, Any]], keys: Sequence[str], labels: Sequence[str], limit: int = STATIC_LIMIT,
           table_id: str = "") -> str:
    if not rows:
        return "<p>none</p>"
    head = "".join(f"<th>{escape(lab)}</th>" for lab in labels)
    body = "".join("<tr>" + "".join(_cell(r.get(k)) for k in keys) + "</tr>" for r in rows[:limit])
    more = (f"<p>{len(rows) - limit} more rows are in the CSV files.</p>" if len(rows) > limit else "")
    ident = f' id="{table_id}"' if table_id else ""
    return f'<div class="scroll"><table{ident}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>{more}'


def _linked(rows: Sequence[dict[str, Any]], with_montage: set[int]) -> list[dict[str, Any]]:
    """Static-table rows with the subject as a link to its table row and a link to its montage."""
    out = []
    for r in rows:
        i = r.get("row")
        if i is None:
            out.append(r)
            continue
        mont = (Link("montage", f"#m-{i}", "this subject's montage") if i in with_montage else
                "not shown" if r.get("flagged", True) else "")
        out.append(r | {"subject_id": Link(str(r["subject_id"]), f"#s-{i}", "this subject's row in the table"),
                        "montage": mont})
    return out


def _cards(summary: dict[str, int]) -> str:
    style = {"failed": "bad", "flagged": "warn", "unreadable": "bad"}
    return '<div class="cards">' + "".join(
        f'<div class="card {style.get(k, "") if v else ""}"><b>{v}</b>{escape(k)}</div>'
        for k, v in summary.items()) + "</div>"


def _warnings(lines: Sequence[str]) -> str:
    if not lines:
        return ""
    items = "".join(f"<li>{escape(w)}</li>" for w in lines)
    return f'<div class="warnbox" id="warnings"><b>Warnings</b><ul>{items}</ul></div>'


def _verify_section(report: Report) -> str:
    if report.verify is None:
        return ('<h2 id="sec-verification">Verification</h2><p>Not run. <code>damt qc --verify</code> re-reads '
                "every ok store and checks it against the cache contract.</p>")
    if not report.verify:
        return (f'<h2 id="sec-verification">Verification</h2><p class="good">All {report.verify_checked} ok '
                f"stores match the contract (dtypes, ranges, shapes, completion marker, hashes); no stray stores.</p>")
    items = "".join(f"<li>{escape(p)}</li>" for p in report.verify)
    return (f'<h2 id="sec-verification">Verification</h2><p class="bad">{len(report.verify)} problem(s) in '
            f"{report.verify_checked} ok stores checked:</p><ul>{items}</ul>")


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _plane(p: MontagePlane, subject: str) -> str:
    edges = "".join(f'<span class="ol {side[0]}" title="subject\'s {escape(side)} edge">{escape(letter)}</span>'
                    for side, letter in p.edges.items())
    focus = f'<img class="focus" src="{_data_uri(p.outline_png)}" alt="">' if p.outline_png else ""
    return (f'<div class="plane" data-plane="{escape(p.name)}"><img class="img" src="{_data_uri(p.image_png)}" '
            f'alt="{escape(p.name)} plane of {escape(subject)}"><img class="lab" src="{_data_uri(p.labels_png)}" '
            f'alt="">{focus}{edges}<span class="pn">{escape(p.name)}</span></div>')


def _montage(items: Sequence[MontageItem]) -> str:
    if not items:
        return "<p>no ok subjects</p>"
    figs = []
    for it in items:
        planes = "".join(_plane(p, it.subject_id) for p in it.planes)
        figs.append(f'<figure id="m-{it.row}" class="{"flag" if it.flagged else ""}">'
                    f'<div class="planes" title="click to enlarge">{planes}</div><figcaption><b>'
                    f'<a href="#s-{it.row}" title="this subject\'s row in the table">{escape(it.cohort)} / '
                    f"{escape(it.subject_id)}</a></b> {escape(it.caption)}</figcaption></figure>")
    return (f'<div class="montage" style="--tile:{MONTAGE_TILE_PX}px">' + "".join(figs) + "</div>"
            '<div id="lightbox" hidden><div class="lb-inner"></div><p>click or Esc to close</p></div>')


def _nav(report: Report) -> str:
    links = [("sec-summary", "Summary"), ("sec-verification", "Verification"), ("sec-outliers", "Outliers"),
             ("sec-distributions", "Distributions"), *((f"sec-{s.id}", s.title) for s in report.sections),
             ("sec-subjects", "Subjects"), ("sec-montage", "Montage")]
    return '<nav>' + " · ".join(f'<a href="#{escape(i)}">{escape(t)}</a>' for i, t in links) + "</nav>"


def _targets_section(report: Report) -> str:
    """The present fraction of each target schema over the ok subjects."""
    table = _table(report.targets, ["target", "source", "columns", "subjects", "present_fraction", "complete", "none"],
                   ["target", "schema / source", "columns", "ok subjects", "present fraction",
                    "subjects with every column", "subjects with none"], table_id="targets")
    return ("<h3>Targets present</h3><p>Share of (subject, column) target values present over the ok subjects; "
            "a value is missing when its input is (a stats file or table row, a tissue mask, a CSV row).</p>"
            + table)


def render_html(report: Report) -> str:
    """The report page as one string (UTF-8 when written)."""
    meta = " · ".join(f"{escape(k)}: {escape(str(v))}" for k, v in report.meta.items())
    groups = "".join(
        f"<h3>{escape(title)}</h3>" + _table(rows, [key, "found", "ok", "failed", "flagged"],
                                             [key, "found", "ok", "failed", "flagged"])
        for title, key, rows in report.groups)
    reasons = _table(report.reasons, ["reason", "count", "meaning"], ["reason", "subjects", "meaning"])
    failed = _table(report.failed, ["cohort", "subject_id", "reason", "message"],
                    ["cohort", "subject", "reason", "message"], table_id="failed")
    shown = {m.row for m in report.montage}
    flagged = _table(_linked(report.flagged, shown),
                     ["cohort", "subject_id", "montage", "n_flags", "max_abs_z", "flags"],
                     ["cohort", "subject", "montage", "metrics flagged", "max |z|", "largest first"],
                     table_id="flagged")
    outliers = _table(_linked(report.outliers, shown),
                      ["cohort", "subject_id", "montage", "metric", "value", "median", "z"],
                      ["cohort", "subject", "montage", "metric", "value", "median", "robust z"], table_id="outliers")
    keys = [c.key for c in report.columns] + [k for k in ("status", "flagged") if k not in
                                                {c.key for c in report.columns}]
    data = _json_for_script({"columns": [{"key": c.key, "label": c.label, "doc": c.doc, "key_column": c.key_column}
                                         for c in report.columns], "keys": keys,
                             "rows": [[_compact(r.get(k)) for k in keys] for r in report.rows],
                             "limit": TABLE_LIMIT, "montage": sorted(shown)})
    statuses = sorted({str(r.get("status")) for r in report.rows})
    options = "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in statuses)
    n_key = sum(c.key_column for c in report.columns)
    sections = "".join(f'<h2 id="sec-{escape(s.id)}">{escape(s.title)}</h2>{s.html}' for s in report.sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(report.title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body><header><h1>{escape(report.title)}</h1><div class="meta">{meta}</div>{_nav(report)}</header><main>
<h2 id="sec-summary">Cohort summary</h2>{_cards(report.summary)}{_warnings(report.warnings)}
{groups}
<h3>Failed subjects by reason</h3>{reasons}
<h3>Failed subjects</h3>{failed}
{_targets_section(report)}
{_verify_section(report)}
<h2 id="sec-outliers">Outliers</h2>
<p>A subject is flagged when a metric's robust z-score, (value &minus; median) / (MAD &times; 1.4826), exceeds
the threshold in absolute value (see the outlier rule at the top). The subject links to its row in the subject
table, "montage" to its planes.</p>{flagged}
<details><summary>Every flagged value ({len(report.outliers)}; also in qc_outliers.csv)</summary>{outliers}</details>
<h2 id="sec-distributions">Distributions per {escape(report.plots_by)}</h2><p>Box: interquartile range; bar: median;
red: flagged subjects (hover for the id).</p>
<div class="plots">{"".join(report.plots)}</div>
{sections}
<h2 id="sec-subjects">Subjects</h2>
<div class="controls"><label>filter <input id="q" type="search" placeholder="id, reason, text..."></label>
<label>status <select id="st"><option value="">all</option>{options}</select></label>
<label><input id="fl" type="checkbox"> flagged only</label><span id="shown"></span></div>
<details id="cols"><summary>Columns: <span id="ncols">{n_key} of {len(report.columns)}</span> shown (choose)</summary>
<div class="colbtns"><button type="button" id="keycols">key columns</button>
<button type="button" id="allcols">all columns</button></div><div id="colboxes"></div></details>
<noscript><p>The subject table needs JavaScript; qc_subjects.csv holds the same rows.</p></noscript>
<div class="scroll"><table id="subjects"><thead><tr></tr></thead><tbody></tbody></table></div>
<h2 id="sec-montage">Montage</h2><p>Flagged subjects (red frame; sliced through the structure that flagged them,
else through the middle) and a random sample of the others (mid-planes), in the label table's FreeSurfer colours.
Letters at the edges give the subject's directions (L/R, A/P, S/I): the subject's left is on the viewer's left.
Hover over a plane to hide the overlay; click a montage to enlarge it.</p>
<div class="controls"><label>overlay opacity <input id="ov" type="range" min="0" max="1" step="0.05"
value="0.45"></label></div>
{_montage(report.montage)}
</main><script type="application/json" id="qc-data">{data}</script><script>{JS}</script></body></html>
"""
