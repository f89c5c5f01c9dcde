"""Ctrl-C and SIGTERM during ``damt preprocess``: stop at once, keep what is finished, say one line.

A terminal's Ctrl-C reaches every process of the foreground group: the driver *and* the local dask
workers. Workers that see it die with asyncio tracebacks (about a hundred lines) while the driver
tears them down anyway, so they are started with SIGINT ignored and the driver alone handles it.
SIGTERM (a batch scheduler's preemption) is turned into the same exception as SIGINT, so both
paths write the manifest rows finished so far before the process exits.
"""

from __future__ import annotations

import logging
import signal
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from damt.cache import MANIFEST_FILE


class PreprocessInterrupted(KeyboardInterrupt):
    """The run was stopped by SIGINT or SIGTERM after saving the rows of the finished subjects.

    A KeyboardInterrupt, so callers that do not know it still stop; ``str()`` is the one line the
    command prints; ``exit_code`` is the shell's 128 + signal number."""

    def __init__(self, signal_name: str, finished: int, cache: Path, saved: bool):
        self.signal_name, self.finished, self.cache, self.saved = signal_name, finished, Path(cache), saved
        where = f"their rows are in {self.cache / MANIFEST_FILE}" if saved else "nothing to save"
        super().__init__(f"interrupted ({signal_name}): {finished} subject(s) finished in this run ({where}); "
                         f"run the same command again to continue where it stopped")

    @property
    def exit_code(self) -> int:
        return 128 + int(getattr(signal, self.signal_name, signal.SIGINT))


class Stopped(KeyboardInterrupt):
    """Raised in the driver by the SIGTERM handler (``signal_name`` says which signal it was)."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


def signal_name(err: KeyboardInterrupt) -> str:
    """"SIGTERM" for a :class:`Stopped`, else "SIGINT" (a plain KeyboardInterrupt is a Ctrl-C)."""
    return getattr(err, "signal_name", "SIGINT")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM raises :class:`Stopped` in the main thread (elsewhere: no change)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handle(signum: int, frame: object) -> None:
        raise Stopped(signal.Signals(signum).name)

    old = signal.signal(signal.SIGTERM, handle)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


@contextmanager
def children_ignore_sigint() -> Iterator[None]:
    """Ignore SIGINT while the block starts child processes: an ignored disposition survives exec,
    and Python then installs no KeyboardInterrupt handler in the child. The driver's own handler
    is back when the block ends (a Ctrl-C while local workers start is dropped; press it again)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


def _not_a_cancelled_task(record: logging.LogRecord) -> bool:
    """False for the warning a worker logs when it is closed while a task runs (in a DAMT run
    only the teardown of an interrupted run cancels a task); every other record passes."""
    return "ended with CancelledError" not in record.getMessage()


def dask_setup(worker: object) -> None:
    """dask preload hook (``preload=["preprocess.interrupt"]``) of the local workers: ignore
    SIGINT, also in a worker the nanny restarts later after a worker process died, and drop the
    teardown warning about the task that was running. Runs in the worker's main thread, where its
    event loop lives."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker.state_machine").addFilter(_not_a_cancelled_task)


def quiet_dask_logs() -> None:
    """Silence distributed's loggers for the rest of this process: once the run is interrupted
    (and about to exit), the warnings of the teardown (cancelled tasks, closed comms) are noise."""
    for name in ("distributed", "tornado", "asyncio"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
