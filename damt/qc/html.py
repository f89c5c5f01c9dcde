"""Assemble the self-contained QC report: one HTML file, no network resources.

The subject table's rows travel as JSON inside the page and a few lines of vanilla JS draw,
sort and filter them, so a cohort of 100k subjects stays one file that a browser opens quickly
(only the rows that match the filter are drawn, at most ``TABLE_LIMIT`` at a time). Everything
people must act on (failures, outliers, verification problems) is also static HTML, so it is
readable with scripts off.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass, field
from html import escape
from typing import Any, Sequence

from damt.qc.render import fmt

TABLE_LIMIT = 1000      # subject rows drawn at once; the filter narrows the rest
STATIC_LIMIT = 2000     # rows of the static failure and outlier tables (the CSVs have all)


@dataclass
class Column:
    """A subject-table column: key in each row dict, header label, tooltip."""

    key: str
    label: str
    doc: str = ""


@dataclass
class MontageItem:
    subject_id: str
    cohort: str
    caption: str
    png: bytes
    flagged: bool


@dataclass
class Report:
    """Everything the page shows.

    ``rows``: one JSON-able dict per subject (keys of ``columns`` plus ``status`` and ``flagged``).
    ``failed``, ``flagged`` (one per flagged subject) and ``outliers`` (one per flagged value): row
    dicts for the static tables. ``verify``: None when --verify did not run, else its problem lines."""

    title: str
    meta: dict[str, str]
    summary: dict[str, int]
    reasons: list[dict[str, Any]]
    cohorts: list[dict[str, Any]]
    failed: list[dict[str, Any]]
    flagged: list[dict[str, Any]]
    outliers: list[dict[str, Any]]
    columns: list[Column]
    rows: list[dict[str, Any]]
    plots: list[str] = field(default_factory=list)
    montage: list[MontageItem] = field(default_factory=list)
    verify: list[str] | None = None
    verify_checked: int = 0
    #: one row per target kind: target, source (schema), columns, subjects, present_fraction, complete, none
    targets: list[dict[str, Any]] = field(default_factory=list)


CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#1f3b57;color:#fff;padding:14px 24px}header h1{margin:0;font-size:22px}
header .meta{opacity:.85;font-size:12px;margin-top:4px}main{padding:8px 24px 40px}
h2{border-bottom:2px solid #1f3b57;padding-bottom:2px;margin-top:28px}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{background:#fff;border:1px solid #ddd;border-radius:6px;
padding:10px 16px;min-width:110px}.card b{display:block;font-size:26px}.card.bad b{color:#b22}.card.warn b{color:#b70}
table{border-collapse:collapse;background:#fff;font-size:13px}th,td{border:1px solid #ddd;padding:3px 6px;
text-align:left;vertical-align:top}th{background:#eef2f6;position:sticky;top:0}
#subjects th{cursor:pointer;white-space:nowrap}#subjects th.asc:after{content:" \\25B2"}#subjects th.desc:after{content:" \\25BC"}
#subjects td{max-width:26em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
details{margin-top:8px}summary{cursor:pointer}.scroll{max-height:640px;overflow:auto;border:1px solid #ccc}tr.failed td{background:#fdeaea}tr.flag td{background:#fff6d8}
td.num{text-align:right;font-variant-numeric:tabular-nums}.controls{margin:8px 0;display:flex;gap:14px;align-items:center}
.plots{display:flex;flex-wrap:wrap;gap:10px}.plot{background:#fff;border:1px solid #ddd}
.plot .pt{font-weight:600;font-size:13px}.plot .pl,.plot .tk{font-size:11px;fill:#333}.plot .tk{text-anchor:middle}
.plot .box{fill:#c6dbef;stroke:#6b8fb5}.plot .med{stroke:#08306b;stroke-width:2}.plot .pt-ok{fill:#1f77b4;fill-opacity:.65}
.plot .hist{fill:#6baed6}.plot .axis{stroke:#555}
.montage{display:flex;flex-wrap:wrap;gap:12px}figure{margin:0;background:#fff;border:1px solid #ddd;padding:6px;width:450px}
figure.flag{border:2px solid #d62728}figure img{display:block;width:450px;image-rendering:auto}
figcaption{font-size:12px;margin-top:4px;word-break:break-word}p.good{color:#276b27}p.bad{color:#b22}
"""

JS = """
(function(){
const data=JSON.parse(document.getElementById('qc-data').textContent);
const cols=data.columns,rows=data.rows,body=document.querySelector('#subjects tbody');
const q=document.getElementById('q'),st=document.getElementById('st'),fl=document.getElementById('fl'),
 info=document.getElementById('shown');let key=null,asc=true;
const esc=s=>String(s).replace(/[&<>"]/g,c=>({'&':'&amp;','<':'&lt;','>':'&gt;','"':'&quot;'}[c]));
const show=v=>v===null||v===undefined?'':typeof v==='number'?(Number.isInteger(v)?v:+v.toPrecision(4)):
 typeof v==='boolean'?(v?'yes':''):v;
const empty=v=>v===null||v===undefined||v==='';
function draw(){
 const t=q.value.toLowerCase();
 let r=rows.filter(x=>(!st.value||x.status===st.value)&&(!fl.checked||x.flagged)&&
  (!t||cols.some(c=>String(show(x[c.key])).toLowerCase().includes(t))));
 if(key)r.sort((a,b)=>{const u=a[key],v=b[key];if(empty(u)&&empty(v))return 0;if(empty(u))return 1;
  if(empty(v))return -1;return (u<v?-1:u>v?1:0)*(asc?1:-1);});
 body.innerHTML=r.slice(0,data.limit).map(x=>'<tr class="'+esc(x.status)+(x.flagged?' flag':'')+'">'+
  cols.map(c=>{const v=esc(show(x[c.key]));return '<td'+(typeof x[c.key]==='number'?' class="num"':'')+
  (v.length>30?' title="'+v+'"':'')+'>'+v+'</td>';}).join('')+'</tr>').join('');
 info.textContent='showing '+Math.min(r.length,data.limit)+' of '+r.length+' matching ('+rows.length+' subjects)';
}
document.querySelectorAll('#subjects th').forEach((th,i)=>th.addEventListener('click',()=>{
 const k=cols[i].key;asc=key===k?!asc:true;key=k;
 document.querySelectorAll('#subjects th').forEach(h=>h.className='');th.className=asc?'asc':'desc';draw();}));
[q,st,fl].forEach(e=>e.addEventListener('input',draw));draw();
})();
"""


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


def _cell(v: Any) -> str:
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


def _cards(summary: dict[str, int]) -> str:
    style = {"failed": "bad", "flagged": "warn", "unreadable": "bad"}
    return '<div class="cards">' + "".join(
        f'<div class="card {style.get(k, "") if v else ""}"><b>{v}</b>{escape(k)}</div>'
        for k, v in summary.items()) + "</div>"


def _verify_section(report: Report) -> str:
    if report.verify is None:
        return ("<h2>Verification</h2><p>Not run. <code>damt qc --verify</code> re-reads every ok store "
                "and checks it against the cache contract.</p>")
    if not report.verify:
        return (f'<h2>Verification</h2><p class="good">All {report.verify_checked} ok stores match the '
                f"contract (dtypes, ranges, shapes, completion marker, hashes); no stray stores.</p>")
    items = "".join(f"<li>{escape(p)}</li>" for p in report.verify)
    return (f'<h2>Verification</h2><p class="bad">{len(report.verify)} problem(s) in '
            f"{report.verify_checked} ok stores checked:</p><ul>{items}</ul>")


def _montage(items: Sequence[MontageItem]) -> str:
    if not items:
        return "<p>no ok subjects</p>"
    figs = []
    for it in items:
        src = "data:image/png;base64," + base64.b64encode(it.png).decode("ascii")
        figs.append(f'<figure class="{"flag" if it.flagged else ""}"><img src="{src}" '
                    f'alt="mid-slices of {escape(it.subject_id)}"><figcaption><b>{escape(it.cohort)} / '
                    f"{escape(it.subject_id)}</b> {escape(it.caption)}</figcaption></figure>")
    return '<div class="montage">' + "".join(figs) + "</div>"


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
    cohorts = _table(report.cohorts, ["cohort", "found", "ok", "failed", "flagged"],
                     ["cohort", "found", "ok", "failed", "flagged"])
    reasons = _table(report.reasons, ["reason", "count", "meaning"], ["reason", "subjects", "meaning"])
    failed = _table(report.failed, ["cohort", "subject_id", "reason", "message"],
                    ["cohort", "subject", "reason", "message"], table_id="failed")
    flagged = _table(report.flagged, ["cohort", "subject_id", "n_flags", "max_abs_z", "flags"],
                     ["cohort", "subject", "metrics flagged", "max |z|", "largest first"], table_id="flagged")
    outliers = _table(report.outliers, ["cohort", "subject_id", "metric", "value", "median", "z"],
                      ["cohort", "subject", "metric", "value", "median", "robust z"], table_id="outliers")
    heads = "".join(f'<th title="{escape(c.doc)}">{escape(c.label)}</th>' for c in report.columns)
    data = _json_for_script({"columns": [{"key": c.key} for c in report.columns], "rows": report.rows,
                             "limit": TABLE_LIMIT})
    statuses = sorted({str(r.get("status")) for r in report.rows})
    options = "".join(f'<option value="{escape(s)}">{escape(s)}</option>' for s in statuses)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(report.title)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>
<body><header><h1>{escape(report.title)}</h1><div class="meta">{meta}</div></header><main>
<h2>Cohort summary</h2>{_cards(report.summary)}
<h3>Per cohort</h3>{cohorts}
<h3>Failed subjects by reason</h3>{reasons}
<h3>Failed subjects</h3>{failed}
{_targets_section(report)}
{_verify_section(report)}
<h2>Outliers</h2>
<p>A subject is flagged when a metric's robust z-score, (value &minus; median) / (MAD &times; 1.4826), exceeds
the threshold in absolute value (see the outlier rule at the top).</p>{flagged}
<details><summary>Every flagged value ({len(report.outliers)}; also in qc_outliers.csv)</summary>{outliers}</details>
<h2>Distributions per cohort</h2><p>Box: interquartile range; bar: median; red: flagged subjects (hover for the id).</p>
<div class="plots">{"".join(report.plots)}</div>
<h2>Subjects</h2>
<div class="controls"><label>filter <input id="q" type="search" placeholder="id, reason, text..."></label>
<label>status <select id="st"><option value="">all</option>{options}</select></label>
<label><input id="fl" type="checkbox"> flagged only</label><span id="shown"></span></div>
<noscript><p>The subject table needs JavaScript; qc_subjects.csv holds the same rows.</p></noscript>
<div class="scroll"><table id="subjects"><thead><tr>{heads}</tr></thead><tbody></tbody></table></div>
<h2>Mid-slice montage</h2><p>Flagged subjects (red frame) and a random sample of the others. Top row: image;
bottom row: parcellation overlay. Axial, coronal, sagittal; the subject's left is on the left.</p>
{_montage(report.montage)}
</main><script type="application/json" id="qc-data">{data}</script><script>{JS}</script></body></html>
"""
