"""Shared pieces of the ``damt bench`` commands: the machine record and one-thread pinning."""

from __future__ import annotations

import os
import platform


def machine() -> dict[str, str | int]:
    """A short description of this machine for a benchmark record."""
    return {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count() or 0,
            "python": platform.python_version()}


def one_thread() -> None:
    """Pin torch, Blosc and zarr-python to one thread, so CPU time means "per core".
    (tensorstore: CacheDataset's reader opens its context with one I/O and one copy thread.)"""
    import numcodecs.blosc
    import torch
    import zarr

    torch.set_num_threads(1)
    numcodecs.blosc.set_nthreads(1)
    zarr.config.set({"threading.max_workers": 1})
