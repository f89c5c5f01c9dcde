"""The cache lock: ``<cache>/.lock``, held with ``flock`` by the one ``damt preprocess`` run (or
``damt cache relayout``) that may write the cache; readers only ask whether it is held."""

from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from damt.cache.names import LOCK_FILE
from damt.errors import CacheBusyError


def preprocess_running(cache: Path) -> bool:
    """True if a ``damt preprocess`` run holds ``<cache>/.lock`` now. Never blocks, never creates."""
    lock = Path(cache) / LOCK_FILE
    if not lock.is_file():
        return False
    fd = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


def open_lock(cache: Path) -> int:
    """Open (creating it if needed) ``<cache>/.lock``; returns the descriptor for :func:`hold_lock`.
    OSError if the cache folder cannot be written (read-only, full)."""
    return os.open(Path(cache) / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)


@contextmanager
def hold_lock(fd: int, cache: Path) -> Iterator[None]:
    """Hold the lock opened by :func:`open_lock` exclusively for the block, then close it.
    CacheBusyError (never waits) if another run holds it."""
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CacheBusyError(f"{cache} is in use by another damt preprocess run") from None
        yield
    finally:
        os.close(fd)
