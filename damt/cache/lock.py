"""Whether a ``damt preprocess`` run holds a cache now (its ``.lock``, taken with ``flock``)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


def preprocess_running(cache: Path) -> bool:
    """True if a ``damt preprocess`` run holds ``<cache>/.lock`` now. Never blocks, never creates."""
    lock = Path(cache) / ".lock"
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
