"""Shared pieces of the ``damt bench`` commands: the machine record and one-thread pinning."""

from __future__ import annotations

import os
import platform
from contextlib import contextmanager
from functools import wraps
from typing import Any, Callable, Iterator


def machine() -> dict[str, str | int]:
    """A short description of this machine for a benchmark record."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count() or 0,
            "python": platform.python_version()}


@contextmanager
def one_thread() -> Iterator[None]:
    """Pin torch, Blosc and zarr-python to one thread while the block runs, so CPU time means
    "per core", and restore the previous settings after it (a benchmark called from a longer
    process, a test suite or a notebook, must not leave it single-threaded: another thread count
    changes torch's reduction order, so later runs would not reproduce their numbers bit for bit).
    (tensorstore: CacheDataset's reader opens its context with one I/O and one copy thread.)"""
    import numcodecs.blosc
    import torch
    import zarr

    threads = torch.get_num_threads()
    blosc = numcodecs.blosc.set_nthreads(1)
    torch.set_num_threads(1)
    try:
        with zarr.config.set({"threading.max_workers": 1}):
            yield
    finally:
        torch.set_num_threads(threads)
        numcodecs.blosc.set_nthreads(blosc)


def single_threaded(bench: Callable[..., Iterator[Any]]) -> Callable[..., Iterator[Any]]:
    """Decorate a benchmark generator so that it runs under :func:`one_thread` until it is
    exhausted or closed."""

    @wraps(bench)
    def run(*args: Any, **kwargs: Any) -> Iterator[Any]:
        with one_thread():
            yield from bench(*args, **kwargs)

    return run
