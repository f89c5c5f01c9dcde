"""Whether this process is one rank of several (the one test every data-parallel code path uses)."""

from __future__ import annotations


def is_distributed() -> bool:
    """True inside an initialised torch.distributed process group of more than one rank.

    Imports torch.distributed only when called, so the library stays importable without it.
    """
    import torch.distributed as dist  # noqa: PLC0415

    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
