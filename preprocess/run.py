"""The preprocess driver: discover, plan (skip what is current), run one dask task per subject,
write the manifest. The driver never holds cohort arrays: tasks return manifest rows only.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from tqdm import tqdm

from damt.cache import (
    CONFIG_FILE,
    MANIFEST_FILE,
    STORE_FORMAT,
    TARGETS_FILE,
    Layout,
    clean_debris,
    hold_lock,
    open_lock,
    read_manifest,
    read_store_attrs,
    rows_by_key,
    to_frame,
    write_manifest,
)
from damt.config import ConfigError, DamtConfig, config_hash, dump_config, to_dict
from damt.config.scopes import scoped_dict
from damt.durable import atomic_write_text
from damt.errors import CacheWriteError, SubjectError, write_error
from damt.labels import LabelTable, load_label_table
from preprocess.adopt import store_owners, store_row
from preprocess.cluster import cluster_rows, worker_died_error, worker_died_stale, worker_limit_token
from preprocess.discover import SubjectInput, discover, parse_cohorts, require_subjects
from preprocess.interrupt import (
    PreprocessInterrupted,
    children_ignore_sigint,
    quiet_dask_logs,
    signal_name,
    sigterm_as_interrupt,
)
from preprocess.subject import failed_row, is_unchanged, process_subject, stat_fingerprint
from preprocess.targets import TargetPlan, build_plan, refit_targets_json

#: failure reasons that belong to discovery, not to a subject's files (they never own an id)
_ID_REASONS = {"duplicate_subject_id", "bad_subject_id"}


@dataclass
class RunSummary:
    """What one ``damt preprocess`` run did. ``by_reason`` counts failed subjects of this run's roots."""

    found: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    processed: int = 0
    seconds: float = 0.0
    by_reason: Counter = field(default_factory=Counter)
    manifest_written: bool = False
    targets_written: bool = False
    notes: list = field(default_factory=list)
    cache: str = ""
    #: (cohort, subject_id, reason, message) of this run's failed subjects, in manifest order
    failures: list = field(default_factory=list)
    #: (cohort, subject_id) of manifest rows dropped: their folders are gone from their cohort root
    dropped: list = field(default_factory=list)
    #: rows of the whole manifest (every cohort, also those not given this run): total, ok
    manifest_rows: tuple = (0, 0)

    @property
    def unwritten(self) -> int:
        """Subjects whose store could not be written (full disk, read-only cache): the run did not
        do its job for a reason outside the inputs, so ``damt preprocess`` exits non-zero."""
        return self.by_reason["disk_full"] + self.by_reason["read_only"]

    def table(self, max_failures: int = 10) -> str:
        """A plain-text summary for the console: counts, the first ``max_failures`` failed
        subjects with their reason and message (which says what to do), and where the rest is."""
        lines = [f"{'subjects found':<28}{self.found:>8}", f"{'  ok':<28}{self.ok:>8}",
                 f"{'  failed':<28}{self.failed:>8}"]
        lines += [f"{'    ' + reason:<28}{n:>8}" for reason, n in sorted(self.by_reason.items())]
        lines += [f"{'processed this run':<28}{self.processed:>8}",
                  f"{'skipped (unchanged)':<28}{self.skipped:>8}",
                  f"{'wall time (s)':<28}{self.seconds:>8.1f}", f"cache: {self.cache}", *self.notes]
        total, ok = self.manifest_rows
        if total != self.found:  # other cohorts' rows: say so, so that damt qc's counts add up
            lines.append(f"manifest: {total} rows of all cohorts ({ok} ok, {total - ok} failed)")
        rule = "-" * 36
        out = [rule, *lines, rule]
        if self.failures:
            shown = self.failures[:max_failures]
            more = f" (the first {len(shown)} of {len(self.failures)})" if len(self.failures) > len(shown) else ""
            out.append(f"failed subjects{more}:")
            out += [f"  {coh}/{sid}  {reason}: {message}" for coh, sid, reason, message in shown]
        cache = Path(self.cache)
        out.append(f"all rows: {cache / MANIFEST_FILE}; report: damt qc --cache {cache}"
                   + ("; reasons and fixes: docs/preprocessing.md" if self.failures else ""))
        return "\n".join(out)


def preprocess_hash(cfg: DamtConfig, table: LabelTable, plan: TargetPlan) -> str:
    """Hash of everything that changes a subject store's contents: the config keys of scope
    "store" (damt/config/scopes.py): those of the preprocess section by value, ``labels.table``
    through the label table's bytes, ``targets.*`` through the target plan (schema, tissues,
    pyradiomics settings, imported CSV values); and the store format. Keys of scope "cache" (the
    store layout: chunks and codec change bytes on disk, never array values; the input size
    limit: it decides only whether a file is read), "run" (training, target normalisation) and
    "io" are left out, so changing them rebuilds no store; ``damt cache relayout`` applies a
    layout change."""
    section = scoped_dict(cfg.preprocess, "store")  # the keys of scope "store", in field order
    return config_hash({"preprocess": section, "label_table_sha256": table.sha256,
                        "targets": plan.digest(), "store_format": STORE_FORMAT})


def _normalise_changed(cache: Path, cfg: DamtConfig) -> bool:
    """True if targets.json was fitted with other normalisation settings than ``cfg``'s."""
    try:
        doc = json.loads((cache / TARGETS_FILE).read_text())
    except (OSError, ValueError):
        return True  # missing or damaged: refit it
    return not isinstance(doc, dict) or doc.get("normalise_config") != to_dict(cfg.targets.normalise)


@contextmanager
def cache_writes(cache: Path, what: str) -> Iterator[None]:
    """Turn a full disk or a read-only cache met by the driver into one CacheWriteError that says
    what to do (temporary files are removed by the atomic writers themselves)."""
    try:
        yield
    except OSError as err:
        typed = write_error(err, f"{what} in {cache}")
        if typed is None:
            raise
        raise CacheWriteError(f"{typed.message.removesuffix(' (this subject is retried)')}. Every "
                              f"complete store stays valid; rerun damt preprocess afterwards") from err


@contextmanager
def cache_lock(cache: Path) -> Iterator[None]:
    """Hold the cache lock (damt.cache.lock) so two runs never clean or write the same cache at
    once; CacheBusyError if another holds it, CacheWriteError if it cannot be created."""
    with cache_writes(cache, "creating the lock file"):
        fd = open_lock(cache)
    with hold_lock(fd, cache):
        yield


def plan(subjects: list[SubjectInput], previous: dict, chash: str, cache: Path, targets: TargetPlan,
         stale: Callable[[dict], bool] = lambda row: False) -> tuple[list, list]:
    """Split subjects into (tasks [(subject, previous row)], kept rows).

    A subject is kept without reading anything when its last row has this config hash, the same
    file sizes and mtimes, and is still valid (see ``is_unchanged``). Discovery errors become
    failed rows here; everything else becomes a task (which may still find the bytes unchanged).
    ``stale(row)``: a failed row made under other limits (see :func:`limits_changed`); its subject
    is processed again from scratch.
    """
    tasks, kept = [], []
    for s in subjects:
        prev = previous.get((s.cohort, s.subject_id))
        if s.error is not None:
            kept.append(_same_failure(prev, failed_row(s, chash, s.error)))
        elif prev is not None and stale(prev):
            tasks.append((s, _compare_with(None, s, chash, cache)))
        elif prev is not None and prev.get("input_stat") == stat_fingerprint(s, targets.subject_digest(s.subject_id)) \
                and is_unchanged(prev, prev.get("input_hash"), chash, cache):
            kept.append(prev)
        else:
            tasks.append((s, _compare_with(prev, s, chash, cache)))
    return tasks, kept


def limits_changed(cfg: DamtConfig, scheduler: str | None) -> Callable[[dict], bool]:
    """``row -> True`` for a failed row whose limit is not this run's: ``too_large`` under another
    ``preprocess.max_voxels``, ``worker_died`` under another worker memory limit. Neither limit is
    in the store hash (raising one must not rebuild every store), so rows carry them in their
    message and are retried when they change."""
    words = f"preprocess.max_voxels = {cfg.preprocess.max_voxels:,}"
    token = worker_limit_token(cfg.dask.memory_limit_gb, scheduler)
    return lambda row: (row.get("reason") == "too_large" and words not in str(row.get("message"))) \
        or worker_died_stale(row, token)


def _same_failure(prev: dict | None, row: dict) -> dict:
    """``prev`` if it already records this failure (nothing to rewrite), else ``row``."""
    same = prev is not None and all(prev.get(k) == row[k] for k in ("status", "reason", "message", "config_hash"))
    return prev if same else row


def _compare_with(prev: dict | None, s: SubjectInput, chash: str, cache: Path) -> dict | None:
    """The row a task checks the subject's inputs against: the manifest's current ok row, or else
    the subject's complete store (preprocess/adopt.py), which then is kept if its inputs still hash
    to it; else the manifest's row, if any."""
    if prev is not None and prev.get("status") == "ok" and prev.get("config_hash") == chash:
        return prev
    return store_row(cache, s.subject_id, s.cohort) or prev


def _client(cfg: DamtConfig, workers: int, scheduler: str | None):
    import dask  # noqa: PLC0415 - only the driver needs dask
    from dask.distributed import Client, LocalCluster  # noqa: PLC0415

    if scheduler:
        return Client(scheduler), None
    # Tasks return small rows and hold no dask data, so spilling and pausing cannot help: a worker
    # paused at 80 % of its limit by memory it does not give back would wait forever. Only the
    # nanny's terminate threshold stays, which kills a worker a subject made exceed its limit.
    # (The nannies keep this config for the workers they restart; their merge is shallow, hence
    # the whole config.)
    no_pause = {"distributed": {"worker": {"memory": {"target": False, "spill": False, "pause": False}}}}
    with children_ignore_sigint():  # Ctrl-C is the driver's to handle (preprocess/interrupt.py)
        cluster = LocalCluster(n_workers=workers, threads_per_worker=cfg.dask.threads_per_worker,
                               processes=True, memory_limit=f"{cfg.dask.memory_limit_gb}GiB",
                               dashboard_address=None, preload=["preprocess.interrupt"],
                               config=dask.config.merge(dask.config.config, no_pause),
                               # the scheduler's HTTP server on any free port: no warning when
                               # 8787 is taken (another dask, a notebook's dashboard)
                               scheduler_kwargs={"dashboard_address": ":0"})
    return Client(cluster), cluster


def _results(tasks: list, cfg: DamtConfig, table: LabelTable, targets: TargetPlan, cache: Path, chash: str,
             workers: int, scheduler: str | None) -> Iterator[dict[str, Any]]:
    """Yield one manifest row per task as it finishes. ``workers == 0`` runs in this process."""
    if not tasks:  # nothing to run: start no cluster
        return
    if workers == 0 and not scheduler:
        for s, prev in tasks:
            yield _guard(s, chash, lambda s=s, prev=prev: process_subject(s, cfg, table, targets, cache, chash, prev))
        return
    client, cluster = _client(cfg, workers, scheduler)
    token = worker_limit_token(cfg.dask.memory_limit_gb, scheduler)

    def died(s: SubjectInput, deaths: int) -> dict[str, Any]:
        row = failed_row(s, chash, worker_died_error(s.subject_id, deaths, token, client))
        # the stat fingerprint (no file is read) lets the next run keep this row while nothing changes
        return row | {"input_stat": stat_fingerprint(s, targets.subject_digest(s.subject_id))}

    try:
        # arguments by value (see preprocess/cluster.py): nothing a dead worker takes with it
        yield from cluster_rows(
            client, tasks, key=lambda s: f"damt-subject-{s.cohort}-{s.subject_id}",
            call=lambda s, prev: (process_subject, s, cfg, table, targets.for_subject(s.subject_id), cache,
                                  chash, prev),
            guard=lambda s, get: _guard(s, chash, get), retries=cfg.dask.retries, died=died)
    except KeyboardInterrupt:
        quiet_dask_logs()  # the teardown's warnings about cancelled tasks are expected now
        raise
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _guard(s: SubjectInput, chash: str, get) -> dict[str, Any]:
    """Call ``get()`` for a row; an exception that escaped the task (a transient error after its
    retries, a lost worker) becomes a failed row instead of stopping the cohort."""
    try:
        return get()
    except SubjectError as err:
        return failed_row(s, chash, err)
    except Exception as err:  # noqa: BLE001 - e.g. distributed.KilledWorker
        row = failed_row(s, chash, SubjectError(f"{type(err).__name__}: {err}"))
        row["reason"] = "internal_error"
        return row


def run_preprocess(cfg: DamtConfig, cache: Path, workers: int | None = None, scheduler: str | None = None,
                   progress: bool = True) -> RunSummary:
    """Preprocess every subject of ``cfg.data.inputs`` into ``cache``; returns the summary.

    workers: local worker processes (default ``cfg.dask.workers``; 0 = in this process);
    scheduler: a dask.distributed scheduler address (default ``cfg.dask.scheduler``).
    Rows of cohorts not given this time are kept untouched.
    """
    t0 = time.perf_counter()
    cache = Path(cache)
    if cache.exists() and not cache.is_dir():
        raise ConfigError("data.cache_dir", f"{cache} is a file, not a folder: pass a folder as --cache")
    cohorts = parse_cohorts(cfg.data.inputs)
    require_subjects(cohorts, cfg.data)  # a wrong --input stops here, before the cache folder exists
    with cache_writes(cache, "creating the cache folder"):
        cache.mkdir(parents=True, exist_ok=True)
    workers = cfg.dask.workers if workers is None else workers
    scheduler = scheduler or cfg.dask.scheduler
    with cache_lock(cache):
        with cache_writes(cache, "removing debris of a killed run"):
            clean_debris(cache)
        table = load_label_table(cfg.labels.table)
        previous = rows_by_key(read_manifest(cache))
        subjects, gone = _discover(cohorts, cfg, previous, cache)
        all_ids = sorted({sid for _, sid in previous} | {s.subject_id for s in subjects if s.error is None})
        targets = build_plan(cfg, table, all_ids)
        chash = preprocess_hash(cfg, table, targets)
        tasks, kept = plan(subjects, previous, chash, cache, targets, limits_changed(cfg, scheduler))
        rows = {k: r for k, r in previous.items() if k not in gone} | {(r["cohort"], r["subject_id"]): r for r in kept}
        skipped = sum(r is previous.get((r["cohort"], r["subject_id"])) for r in kept)
        summary = RunSummary(found=len(subjects), skipped=skipped, processed=len(subjects) - skipped,
                             cache=str(cache), dropped=gone)
        if gone:
            listed = ", ".join(f"{c}/{sid}" for c, sid in gone[:5]) + (", ..." if len(gone) > 5 else "")
            summary.notes.append(f"dropped {len(gone)} manifest row(s) of subjects no longer in their cohort "
                                 f"root ({listed}); stores are never deleted")
        bar = tqdm(total=len(tasks), unit="subj", desc="preprocess", disable=not progress, file=sys.stderr)
        last_write = time.monotonic()
        n_done = n_fail = 0
        try:
            with sigterm_as_interrupt():
                for row in _results(tasks, cfg, table, targets, cache, chash, workers, scheduler):
                    rows[(row["cohort"], row["subject_id"])] = row
                    n_done, n_fail = n_done + 1, n_fail + (row["status"] != "ok")
                    bar.update(1)
                    bar.set_postfix(ok=n_done - n_fail, failed=n_fail)
                    if time.monotonic() - last_write > cfg.dask.manifest_every_s:
                        try:
                            write_manifest(cache, to_frame(rows.values()))  # a crash loses at most this interval
                        except OSError as err:  # e.g. a full disk: the final write tries again
                            tqdm.write(f"damt preprocess: could not update the manifest ({err}); going on")
                        last_write = time.monotonic()
        except KeyboardInterrupt as err:  # Ctrl-C or SIGTERM: keep every finished row, then stop
            bar.close()
            saved = rows != previous
            if saved:
                with cache_writes(cache, f"writing {MANIFEST_FILE} after the interruption"):
                    write_manifest(cache, to_frame(rows.values()))
                    atomic_write_text(cache / CONFIG_FILE,
                                      dump_config(cfg) + f"# preprocess hash {chash}\n")
            raise PreprocessInterrupted(signal_name(err), n_done, cache, saved) from None
        bar.close()
        adopted = _adopted(tasks, previous, rows)
        if adopted:
            summary.notes.append(f"{adopted} store(s) the manifest lacked were kept: their inputs still hash "
                                 f"to them (nothing rebuilt)")
        for kind, report in targets.csv_report.items():
            summary.notes.append(f"csv import ({kind}): {report['summary']}")
        changed = rows != previous or not (cache / MANIFEST_FILE).exists()
        with cache_writes(cache, f"writing {MANIFEST_FILE}, {CONFIG_FILE} and {TARGETS_FILE}"):
            if changed:
                frame = to_frame(rows.values())
                write_manifest(cache, frame)
                atomic_write_text(cache / CONFIG_FILE, dump_config(cfg) + f"# preprocess hash {chash}\n")
                summary.manifest_written = True
            if changed or not (cache / TARGETS_FILE).exists() or _normalise_changed(cache, cfg):
                frame = to_frame(rows.values())
                ok = frame[(frame["status"] == "ok") & (frame["config_hash"] == chash)]
                summary.targets_written = refit_targets_json(cache, ok, targets, cfg, chash)
    seen = {(s.cohort, s.subject_id) for s in subjects}
    for key in sorted(seen):
        r = rows[key]
        summary.ok += r["status"] == "ok"
        if r["status"] != "ok":
            summary.failed += 1
            summary.by_reason[r["reason"]] += 1
            summary.failures.append((key[0], key[1], r["reason"], r["message"]))
    summary.manifest_rows = (len(rows), sum(r["status"] == "ok" for r in rows.values()))
    other = other_layout(cache, [rows[k] for k in seen], Layout.from_config(cfg.preprocess))
    if other:
        summary.notes.append(f"{other} ok store(s) are in another layout than preprocess.chunk_vox/slab_vox/codec/"
                             f"clevel; they stay valid (a layout is not in the preprocess hash), and "
                             f"`damt cache relayout --cache {cache}` rewrites them from their own arrays")
    summary.seconds = time.perf_counter() - t0
    return summary


def other_layout(cache: Path, rows: list[dict[str, Any]], layout: Layout) -> int:
    """How many ok rows' stores do not record ``layout`` (one zarr.json read each)."""
    want = layout.record()
    return sum(1 for r in rows if r.get("status") == "ok" and r.get("store")
               and (read_store_attrs(cache / r["store"]) or {}).get("layout") != want)


def _adopted(tasks: list, previous: dict, rows: dict) -> int:
    """How many tasks kept a store the manifest lacked (their row is the store's, unchanged)."""
    n = 0
    for s, cand in tasks:
        key = (s.cohort, s.subject_id)
        if cand is not None and cand is not previous.get(key) and key in rows:
            r = rows[key]
            n += r["status"] == "ok" and all(r[k] == cand[k] for k in ("input_hash", "finished_at", "store"))
    return n


def _discover(cohorts: list, cfg: DamtConfig, previous: dict, cache: Path
              ) -> tuple[list[SubjectInput], list[tuple[str, str]]]:
    """Discovery with the cache's owners of ids; also the keys of the manifest rows to drop.

    An id is owned by its manifest row or, for an id the manifest lacks, by the cohort its
    complete store names: a lost or stale manifest never lets another cohort's subject overwrite
    a store. An owner of a cohort given this run whose subject folder is gone (renamed or removed)
    owns nothing; its row is dropped (rows of cohorts not given are never dropped).
    """
    taken = {sid: coh for (coh, sid), r in previous.items() if r.get("reason") not in _ID_REASONS}
    taken = store_owners(cache, set(taken)) | taken
    subjects = discover(cohorts, cfg.data, taken)
    given = {c.name for c in cohorts}
    seen = {(s.cohort, s.subject_id) for s in subjects}
    gone = sorted(k for k in previous if k[0] in given and k not in seen)
    stale = {sid for sid, coh in taken.items() if coh in given and (coh, sid) not in seen}
    if stale & {sid for _, sid in seen}:  # a gone owner held an id found now: discover without it
        subjects = discover(cohorts, cfg.data, {sid: coh for sid, coh in taken.items() if sid not in stale})
    return subjects, gone
