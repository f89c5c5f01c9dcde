"""``damt qc``: the dataset QC report of a cache, and ``--verify`` (docs/qc.md).

The driver reads the manifest, gathers per-subject metrics from each ok store's attributes, atlas
and target vectors (threads; one subject's arrays at a time, never the cohort's images), scores
outliers, renders the montage from three planes per subject (preprocess/qc_figures.py), and writes ``qc_report.html``,
``qc_subjects.csv`` and ``qc_outliers.csv`` under the output folder.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

import damt
from damt.cache import KINDS, MANIFEST_FILE, TARGETS_FILE, CacheTargets, is_valid_id, read_manifest, store_path
from damt.cache.lock import preprocess_running
from damt.cache.store import SUBJECTS_DIR
from damt.config import ConfigError, DamtConfig
from damt.csvsafe import safe_csv_frame
from damt.durable import atomic_write_text
from damt.errors import REASONS
from damt.labels import load_label_table
from damt.qc import (
    STABLE_N,
    Column,
    Expected,
    Report,
    StrataError,
    flag_outliers,
    render_html,
    stratify,
    structure_classes,
    subject_metrics,
    verify_store,
    volume_metric,
)
from damt.qc.metrics import BRAIN_VOLUME, P_HIGH, P_LOW, SubjectMetrics, target_presence
from preprocess.qc_figures import montage, plots

REPORT_HTML, SUBJECTS_CSV, OUTLIERS_CSV = "qc_report.html", "qc_subjects.csv", "qc_outliers.csv"
#: reasons written by the driver rather than a subject's typed error (damt.errors lists the others)
_EXTRA_REASONS = {"internal_error": "An unexpected error in DAMT itself; the message says what (please report it).",
                  "transient_io": "An I/O error that still failed after dask.retries retries."}


@dataclass(frozen=True)
class Problem:
    """One way a store (or the cache) does not match the contract."""

    subject_id: str
    store: str
    message: str

    def __str__(self) -> str:
        return f"{self.subject_id or '-'} [{self.store}]: {self.message}"


@dataclass
class QcResult:
    """What ``run_qc`` wrote and found. ``problems`` is None unless verification ran."""

    html: Path
    subjects_csv: Path
    outliers_csv: Path
    n_subjects: int
    n_ok: int
    n_failed: int
    flagged: list[str]
    problems: list[Problem] | None = None
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _manifest(cache: Path) -> pd.DataFrame:
    if not (cache / MANIFEST_FILE).is_file():
        raise FileNotFoundError(f"{cache / MANIFEST_FILE} is missing: run `damt preprocess` on this cache first")
    return read_manifest(cache).reset_index(drop=True)


def verify_cache(cfg: DamtConfig, cache: Path, workers: int | None = None) -> tuple[list[Problem], int]:
    """Check every ok manifest row's store against the contract, and find stores no ok row
    references. Returns (problems, number of ok stores checked)."""
    cache = Path(cache)
    man = _manifest(cache)
    ok = man[man["status"] == "ok"]
    problems: list[Problem] = []
    try:
        sizes = {k: CacheTargets.load(cache).size(k) for k in KINDS}
    except (OSError, ValueError, KeyError) as err:
        sizes = None
        problems.append(Problem("", TARGETS_FILE, f"cannot read the target schema ({err}); target lengths "
                                                  f"were not checked"))
    n_classes = load_label_table(cfg.labels.table).n_classes
    jobs = []
    for row in ok.to_dict("records"):
        sid = str(row["subject_id"])
        if not is_valid_id(sid):  # a hand-edited manifest: never form a path from such an id
            problems.append(Problem(sid, str(row["store"]), "subject id is not allowed; store not checked"))
            continue
        path = store_path(cache, sid)
        rel = f"{SUBJECTS_DIR}/{path.name}"
        if str(row["store"]) != rel:
            problems.append(Problem(sid, str(row["store"]), f"manifest store path is not {rel}"))
        exp = Expected(sid, str(row["config_hash"]), str(row["shape"]), cfg.preprocess.min_shape_vox,
                       n_classes, sizes)
        jobs.append((sid, rel, path, exp))
    dup = ok["subject_id"][ok["subject_id"].duplicated()].unique()
    problems += [Problem(str(s), "", "more than one ok manifest row has this subject id") for s in dup]

    def check(job):
        sid, rel, path, exp = job
        return [Problem(sid, rel, p) for p in verify_store(path, exp)]

    with ThreadPoolExecutor(max(1, workers or cfg.qc.workers)) as pool:
        for found in pool.map(check, jobs):
            problems += found
    referenced = {path.name for _, _, path, _ in jobs}
    folder = cache / SUBJECTS_DIR
    for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
        if entry.name not in referenced:
            problems.append(Problem(entry.name.removesuffix(".zarr"), f"{SUBJECTS_DIR}/{entry.name}",
                                    "store not referenced by any ok manifest row (a removed or now failing "
                                    "subject; DAMT never deletes stores: remove it or re-run preprocess)"))
    return problems, len(jobs)


def _flag_text(flags: pd.DataFrame, limit: int = 5) -> str:
    parts = [f"{m} z={z:+.1f}" for m, z in zip(flags["metric"][:limit], flags["z"][:limit])]
    more = f" (+{len(flags) - limit} more)" if len(flags) > limit else ""
    return "; ".join(parts) + more


def _py(v: Any) -> Any:
    """numpy scalars -> Python (JSON); NaN stays NaN (the HTML writer turns it into null)."""
    return v.item() if isinstance(v, np.generic) else v


def _gather(cfg: DamtConfig, cache: Path, ok: pd.DataFrame, workers: int):
    """(per-subject metrics list, numeric frame [ok subjects x metrics], scored metric names, notes)."""
    table = load_label_table(cfg.labels.table)
    try:
        structures = structure_classes(table, cfg.qc.volume_structures)
    except ValueError as err:
        raise ConfigError("qc.volume_structures", str(err)) from None
    notes = []
    score_targets = cfg.qc.target_outliers
    try:
        names = CacheTargets.load(cache).names
    except (OSError, ValueError, KeyError) as err:
        names, score_targets = {k: [] for k in KINDS}, False
        notes.append(f"target columns not scored: {err}")
    # an id outside the allowlist (a hand-edited manifest) never becomes a path; its metrics say why
    paths = [store_path(cache, str(s)) if is_valid_id(str(s)) else None for s in ok["subject_id"]]
    with ThreadPoolExecutor(max(1, workers)) as pool:
        metrics = list(pool.map(lambda p: subject_metrics(p, table, structures) if p is not None
                                else SubjectMetrics(error="subject id is not allowed"), paths))
    scalar_cols = [BRAIN_VOLUME, *(volume_metric(s) for s in structures), P_LOW, P_HIGH]
    target_cols = [f"{k}.{n}" for k in KINDS for n in names[k]]
    cols = scalar_cols + (target_cols if score_targets else [])
    x = np.full((len(ok), len(cols)), np.nan, dtype=np.float32)  # float32: the targets' own precision
    offset = {k: len(scalar_cols) + sum(len(names[j]) for j in KINDS[:i]) for i, k in enumerate(KINDS)}
    for i, m in enumerate(metrics):
        for j, c in enumerate(scalar_cols):
            x[i, j] = m.scalars.get(c, np.nan)
        for k in KINDS if score_targets else ():
            v = m.targets.get(k)
            if v is not None and len(v) == len(names[k]):
                x[i, offset[k]:offset[k] + len(v)] = v
            elif v is not None:  # a store/schema mismatch: leave its targets unscored, say where to look
                notes.append(f"{ok['subject_id'].iloc[i]}: {k} has {len(v)} values but targets.json names "
                             f"{len(names[k])}; not scored (run damt qc --verify)")
    return metrics, pd.DataFrame(x, columns=cols), cols, names, notes


def _target_table(cache: Path, metrics: list[SubjectMetrics], names: dict[str, list[str]]) -> list[dict[str, Any]]:
    """One row per target kind with columns: its schema (source), and how much of it the ok
    subjects have (:func:`damt.qc.metrics.target_presence`)."""
    try:
        sources = CacheTargets.load(cache).sources
    except (OSError, ValueError, KeyError):
        sources = {}
    return [{"target": k, "source": sources.get(k, ""), "columns": len(names[k]),
             **target_presence([m.targets.get(k) for m in metrics], len(names[k]))}
            for k in KINDS if names.get(k)]


def _order(structures: list[str]) -> list[str]:
    """Column order of the subject table and CSV: who, outcome, outlier flags, then the metrics."""
    return ["cohort", "subject_id", "status", "reason", "message", "flagged", "max_abs_z", "flags", "shape",
            "brain_voxels", BRAIN_VOLUME, "labelled_voxels", P_LOW, P_HIGH,
            *(volume_metric(s) for s in structures), "classes_absent", "classes_absent_names", "unknown_ids",
            "unknown_label_voxels", *(f"{k}_{w}" for k in KINDS for w in ("present", "columns")),
            "image_source", "seconds", "n_flags", "qc_error"]


def _subject_rows(man: pd.DataFrame, ok_idx: list[int], metrics, outliers: pd.DataFrame, names: dict,
                  structures: list[str]) -> list[dict[str, Any]]:
    """One dict per manifest row (every key of ``_order``; None where a failed subject has no value)."""
    rows = []
    by_subject = {i: g for i, g in outliers.groupby("index", sort=False)} if len(outliers) else {}
    pos = {m: i for i, m in enumerate(ok_idx)}
    keys = _order(structures)
    for idx, r in enumerate(man.to_dict("records")):
        row = dict.fromkeys(keys) | {
            "cohort": r["cohort"], "subject_id": r["subject_id"], "status": r["status"],
            "reason": r["reason"] or "", "message": r["message"] or "", "image_source": r["image_source"] or "",
            "shape": r["shape"] or "", "seconds": _py(r["seconds"])}
        i = pos.get(idx)
        if i is not None:
            m = metrics[i]
            flags = by_subject.get(i)
            row |= {k: _py(m.scalars[k]) for k in (BRAIN_VOLUME, P_LOW, P_HIGH) if k in m.scalars}
            row |= {k: int(m.scalars[k]) for k in ("brain_voxels", "labelled_voxels") if k in m.scalars}
            row |= {volume_metric(s): _py(m.scalars[volume_metric(s)]) for s in structures
                    if volume_metric(s) in m.scalars}
            if not m.error:
                row |= {"classes_absent": len(m.classes_absent), "classes_absent_names": "; ".join(m.classes_absent),
                        "unknown_ids": "; ".join(f"{k} ({v} vox)" for k, v in m.unknown_ids.items()),
                        "unknown_label_voxels": sum(m.unknown_ids.values())}
                for k in KINDS:
                    v = m.targets.get(k)
                    row[f"{k}_present"] = int(np.isfinite(v).sum()) if v is not None else 0
                    row[f"{k}_columns"] = len(names.get(k, []))
            row |= {"flagged": flags is not None, "n_flags": 0 if flags is None else len(flags),
                    "max_abs_z": float(np.abs(flags["z"]).max()) if flags is not None else None,
                    "flags": _flag_text(flags) if flags is not None else "", "qc_error": m.error}
        rows.append(row)
    return rows


COLUMN_DOCS = {
    "brain_voxels": "brain voxels on the 1.25 mm grid", BRAIN_VOLUME: "brain voxels x spacing³ (ml)",
    "labelled_voxels": "voxels of any non-background class", P_LOW: "low intensity percentile (input units)",
    P_HIGH: "high intensity percentile (input units)", "classes_absent": "classes (of 100) with no voxel",
    "unknown_ids": "parcellation ids not in the label table (mapped to background)",
    "max_abs_z": "largest |robust z| among the flagged metrics", "flags": "metrics with |z| over the threshold"}


def _csv_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with nullable int/bool columns, so failed rows' blanks keep counts integral."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    cols = {}
    for k in keys:
        raw = [r.get(k) for r in rows]
        vals = [v for v in raw if v is not None and not (isinstance(v, float) and np.isnan(v))]
        kind = ("boolean" if vals and all(isinstance(v, bool) for v in vals) else
                "Int64" if vals and all(isinstance(v, int) for v in vals) else None)
        cols[k] = pd.array([None if v is None or (isinstance(v, float) and np.isnan(v)) else v for v in raw],
                           dtype=kind) if kind else raw
    return pd.DataFrame(cols, columns=keys)


def _warnings(cfg: DamtConfig, frame: pd.DataFrame, scored: list[str], groups: pd.Series | None,
              scope: str) -> list[str]:
    """Warnings with n for scoring groups too small for a stable median and MAD (docs/qc.md)."""
    out = []
    labels = groups if groups is not None else pd.Series("", index=frame.index)
    m = cfg.qc.min_subjects
    for name, idx in labels.groupby(labels, sort=True).groups.items():
        where = f"{scope} {name!r}" if groups is not None else "all ok subjects"
        n = len(idx)
        if n < m:
            out.append(f"{where}: n = {n}, fewer than qc.min_subjects = {m}: no outliers flagged (a median and "
                       f"MAD of so few subjects are unstable; adding one subject changes who is flagged)")
            continue
        if n < STABLE_N:
            out.append(f"{where}: n = {n}: outliers are flagged (qc.min_subjects = {m}) but robust z-scores from "
                       f"fewer than {STABLE_N} subjects are unstable; treat the flags as hints")
        few = int((frame.loc[idx, scored].notna().sum() < m).sum())
        if few:
            out.append(f"{where}: {few} of {len(scored)} metrics have fewer than {m} values and are not scored")
    return out


def _columns(rows: list[dict[str, Any]], key_columns: set[str]) -> list[Column]:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    return [Column(k, k.replace("volume_ml.", "").replace("intensity.", ""), COLUMN_DOCS.get(k, k), k in key_columns)
            for k in keys]


def _group_rows(rows: list[dict[str, Any]], key: str, order: list[str] | None = None) -> list[dict[str, Any]]:
    """Per-group counts (found, ok, failed, flagged) for the summary tables."""
    counts: dict[str, dict[str, Any]] = {}
    for r in rows:
        c = counts.setdefault(str(r[key]), {key: str(r[key]), "found": 0, "ok": 0, "failed": 0, "flagged": 0})
        c["found"] += 1
        c["ok" if r["status"] == "ok" else "failed"] += 1
        c["flagged"] += bool(r.get("flagged"))
    rank = {g: i for i, g in enumerate(order or sorted(counts))}
    return [counts[g] for g in sorted(counts, key=lambda g: (rank.get(g, len(rank)), g))]


def run_qc(cfg: DamtConfig, cache: Path, out: Path | None = None, verify: bool = False,
           workers: int | None = None, table: Path | None = None, by: str | None = None) -> QcResult:
    """Write the QC report of ``cache`` to ``out`` (default ``qc.out_dir``, else ``<cache>/qc``);
    with ``verify``, also check every ok store against the contract (``QcResult.problems``).
    ``table`` and ``by``: stratify by column ``by`` of the user's CSV/TSV ``table`` (both or
    neither; raises StrataError for an unusable table, ConfigError for ``qc.z_scope: by`` without)."""
    cache = Path(cache)
    out = Path(out or cfg.qc.out_dir or cache / "qc")
    workers = workers or cfg.qc.workers
    if (table is None) != (by is None):
        raise StrataError("--csv FILE and --by COLUMN go together")
    if cfg.qc.z_scope == "by" and by is None:
        raise ConfigError("qc.z_scope", "'by' scores within the strata of damt qc --csv FILE --by COLUMN; "
                                        "give both, or use 'all' or 'cohort'")
    man = _manifest(cache)
    strata = stratify(man, table, by) if by is not None else None
    notes = ["a damt preprocess run is writing this cache now; rerun qc after it ends"] \
        if preprocess_running(cache) else []
    notes += strata.notes if strata else []
    ok_mask = (man["status"] == "ok").to_numpy()
    ok_idx = [int(i) for i in np.flatnonzero(ok_mask)]
    ok = man.iloc[ok_idx].reset_index(drop=True)
    metrics, frame, scored, names, more = _gather(cfg, cache, ok, workers)
    notes += more
    scope = {"all": None, "cohort": "cohort", "by": by}[cfg.qc.z_scope]
    groups = (None if scope is None else ok["cohort"].astype(str) if scope == "cohort" else
              pd.Series([strata.labels[i] for i in ok_idx], dtype=object))
    limits = [cfg.qc.target_z_threshold if c.startswith(tuple(f"{k}." for k in KINDS)) else cfg.qc.z_threshold
              for c in scored]
    outliers = flag_outliers(frame, scored, limits, cfg.qc.min_subjects, groups)
    warnings = _warnings(cfg, frame, scored, groups, scope or "")
    structures = list(cfg.qc.volume_structures)
    rows = _subject_rows(man, ok_idx, metrics, outliers, names, structures)
    by_key = None
    if strata:  # the stratum as a column, beside the cohort; a name DAMT uses gets a prefix
        by_key = by if by not in _order(structures) else f"csv.{by}"
        rows = [{"cohort": r["cohort"], "subject_id": r["subject_id"], by_key: lab} | r
                for r, lab in zip(rows, strata.labels)]
    hits = outliers["index"].astype(int).to_numpy() if len(outliers) else np.zeros(0, int)
    outliers = outliers.assign(cohort=ok["cohort"].to_numpy()[hits], subject_id=ok["subject_id"].to_numpy()[hits],
                               row=np.asarray(ok_idx, int)[hits] if len(hits) else hits)
    flags = {int(row): list(g["metric"]) for row, g in outliers.groupby("row", sort=False)}
    problems, checked = verify_cache(cfg, cache, workers) if verify else (None, 0)

    out.mkdir(parents=True, exist_ok=True)
    # text cells from user data (ids, messages, paths) must not run as spreadsheet formulas
    atomic_write_text(out / SUBJECTS_CSV, safe_csv_frame(_csv_frame(rows)).to_csv(index=False))
    atomic_write_text(out / OUTLIERS_CSV, safe_csv_frame(
        outliers[["cohort", "subject_id", "metric", "value", "median", "z"]]).to_csv(index=False))
    failed = [r for r in rows if r["status"] != "ok"]
    by_reason = pd.Series([r["reason"] for r in failed], dtype=object).value_counts()
    flagged_ids = [r["subject_id"] for r in rows if r.get("flagged")]
    unreadable = sum(bool(r.get("qc_error")) for r in rows)
    report_groups = [("Per cohort", "cohort", _group_rows(rows, "cohort"))]
    if strata:
        report_groups.append((f"Per {by} (--csv {Path(table).name})", by_key, _group_rows(rows, by_key, strata.levels)))
    scope_text = {"all": "all ok subjects", "cohort": "each cohort", "by": f"each {by} stratum"}[cfg.qc.z_scope]
    key_columns = {"cohort", "subject_id", by_key, "status", "reason", "flagged", "max_abs_z", "flags", BRAIN_VOLUME,
                   "qc_error"}
    report = Report(
        title="DAMT dataset QC report",
        meta={"cache": str(cache.resolve()), "generated": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "damt": damt.__version__, "label table": cfg.labels.table,
              "outlier rule": f"|robust z| > {cfg.qc.z_threshold:g} (target columns {cfg.qc.target_z_threshold:g}) "
                              f"within {scope_text}; groups and metrics with fewer than {cfg.qc.min_subjects} "
                              f"values are not scored"},
        summary={"subjects found": len(man), "ok": len(ok), "failed": len(failed), "flagged": len(flagged_ids),
                 "unreadable": unreadable},
        reasons=[{"reason": k, "count": int(v), "meaning": REASONS.get(k) or _EXTRA_REASONS.get(k, "")}
                 for k, v in by_reason.items()],
        groups=report_groups,
        failed=[{k: r[k] for k in ("cohort", "subject_id", "reason", "message")} for r in failed],
        flagged=sorted(({k: r[k] for k in ("cohort", "subject_id", "n_flags", "max_abs_z", "flags")} | {"row": i}
                        for i, r in enumerate(rows) if r.get("flagged")), key=lambda r: -r["max_abs_z"]),
        outliers=outliers.to_dict("records"), columns=_columns(rows, key_columns), rows=rows,
        plots=plots(rows, outliers, structures, by_key or "cohort", strata.levels if strata else None),
        plots_by=by or "cohort", montage=montage(cfg, cache, rows, flags, workers),
        verify=None if problems is None else [str(p) for p in problems], verify_checked=checked, warnings=warnings,
        targets=_target_table(cache, metrics, names))
    atomic_write_text(out / REPORT_HTML, render_html(report))
    return QcResult(html=out / REPORT_HTML, subjects_csv=out / SUBJECTS_CSV, outliers_csv=out / OUTLIERS_CSV,
                    n_subjects=len(man), n_ok=len(ok), n_failed=len(failed), flagged=flagged_ids,
                    problems=problems, notes=notes + [f"{r['subject_id']}: store unreadable ({r['qc_error']})"
                                                      for r in rows if r.get("qc_error")], warnings=warnings)
