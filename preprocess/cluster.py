"""Subject tasks on a dask.distributed cluster, such that no subject can take the others down.

Each task gets its arguments by value: the config, the label table and the target plan cut down
to its own subject's imported CSV rows (:meth:`TargetPlan.for_subject`), a few hundred kB at most.
Objects scattered once with ``broadcast=True`` live only on the workers that hold them: when those
workers die (a subject that exhausts memory kills its worker), every later task that needs them
fails with ``FutureCancelledError ... already forgotten``.

A worker's death is blamed by the scheduler on every task it was processing, running or queued
(``ts.suspicious``), so after ``distributed.scheduler.allowed-failures`` deaths innocent subjects
queued beside the culprit end as ``KilledWorker`` too. Every subject that ends so is therefore run
again *alone* once the others are done: alone, a ``KilledWorker`` can only be its own, and it
becomes a ``worker_died`` row (with the worker memory limit in the message); a bystander simply
completes.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator

from damt.errors import WorkerDiedError

#: what the worker_died message says about the limit, and what decides whether a later run retries
#: such a row (see :func:`worker_limit_token`)
_LIMIT_WORDS = "worker memory limit"


def worker_limit_token(memory_limit_gb: float, scheduler: str | None) -> str | None:
    """The words a ``worker_died`` message carries about the worker memory limit of this run, or
    None under an external scheduler (its workers' memory is set outside DAMT: such rows are
    always retried). A row whose message lacks the current token is retried by the next run, so
    raising ``dask.memory_limit_gb`` retries the subjects that died."""
    return None if scheduler else f"{_LIMIT_WORDS} {memory_limit_gb:g} GiB (dask.memory_limit_gb)"


def worker_died_stale(row: dict[str, Any], token: str | None) -> bool:
    """True if ``row`` is a ``worker_died`` row the current run should retry."""
    return row.get("reason") == "worker_died" and (token is None or token not in str(row.get("message")))


def _memory_limit_words(client) -> str:
    try:
        limits = {int(w.get("memory_limit") or 0) for w in client.scheduler_info()["workers"].values()}
    except Exception:  # noqa: BLE001 - only for the message
        limits = set()
    limits.discard(0)
    if not limits:
        return f"{_LIMIT_WORDS}: none reported by the scheduler"
    return f"{_LIMIT_WORDS} {max(limits) / 2 ** 30:.3g} GiB per worker (as the scheduler reports it)"


def worker_died_error(subject: str, deaths: int, token: str | None, client) -> WorkerDiedError:
    """The typed error of a subject whose task killed its worker also when it ran alone."""
    limit = token or _memory_limit_words(client)
    return WorkerDiedError(
        f"{subject}: the worker process died while preprocessing this subject, {deaths} times in a row "
        f"with it alone on the cluster; the usual cause is memory ({limit}). Give the "
        f"workers more memory, or lower preprocess.max_voxels so that such inputs are refused from "
        f"their header; the subject is retried when the limit changes")


def cluster_rows(client, tasks: list, call: Callable[[Any, Any], tuple], key: Callable[[Any], str],
                 guard: Callable[[Any, Callable[[], dict]], dict], retries: int,
                 died: Callable[[Any, int], dict]) -> Iterator[dict[str, Any]]:
    """Run ``tasks`` [(subject, previous row)] on ``client``; yield one row per task as it ends.

    call(subject, previous) -> (function, *args) of the task; key(subject) -> its dask key;
    guard(subject, get) -> the row of ``get()``, or a failed row for the exception it raised;
    died(subject, deaths) -> the row of a subject that killed its worker even alone.
    """
    from distributed import as_completed, wait  # noqa: PLC0415 - only the driver needs distributed
    from distributed.scheduler import KilledWorker  # noqa: PLC0415

    def submit(s, prev, suffix=""):
        fn, *args = call(s, prev)
        return client.submit(fn, *args, key=key(s) + suffix, pure=False, retries=retries)

    suspects = []
    futures = {submit(s, prev): (s, prev) for s, prev in tasks}
    for fut in as_completed(futures):
        s, prev = futures.pop(fut)
        if fut.status == "error" and isinstance(fut.exception(), KilledWorker):
            suspects.append((s, prev))  # perhaps only a bystander of another subject's death
        else:
            yield guard(s, fut.result)
        fut.release()
    for s, prev in suspects:  # one at a time: now a death can only be this subject's own
        fut = submit(s, prev, "-alone")
        wait([fut])
        err = fut.exception() if fut.status == "error" else None
        if isinstance(err, KilledWorker):
            yield died(s, int(getattr(err, "allowed_failures", 0)) + 1)
        else:
            yield guard(s, fut.result)
        fut.release()
