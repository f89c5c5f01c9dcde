"""Data-parallel training across processes: torch DDP, started by ``torchrun`` (docs/scale-out.md).

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` in
every process; :func:`setup` reads them, joins the process group (nccl on CUDA, gloo otherwise)
and picks the rank's device. Without those variables (or with ``WORLD_SIZE=1``) nothing is
initialised and every helper here is a no-op, so the single-process path runs no collective.

The helpers are the few agreements the trainer needs: who writes (:func:`is_main`), a
:func:`barrier` while rank 0 writes a checkpoint, and :func:`all_true` / :func:`max_code` so
that every rank takes the same skip and stop decisions.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from damt.parallel import is_distributed


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: its rank, the number of ranks and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.strip() else default


def setup(device: torch.device | None = None) -> DistContext:
    """Join the process group described by torchrun's environment (once per process).

    ``device``, if given, wins over the default (``cuda:LOCAL_RANK`` when CUDA is available, else
    the CPU). A process group that is already initialised (a test, a launcher of its own) is
    joined as it is.
    """
    world = _env_int("WORLD_SIZE", 1)
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    if dist.is_available() and dist.is_initialized():
        world, rank = dist.get_world_size(), dist.get_rank()
    if device is None:
        if torch.cuda.is_available():
            device = torch.device("cuda", local if world > 1 else torch.cuda.current_device())
        else:
            device = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        if not dist.is_available():
            raise RuntimeError(f"WORLD_SIZE={world} but this torch build has no torch.distributed")
        for name in ("MASTER_ADDR", "MASTER_PORT"):
            if name not in os.environ:
                raise RuntimeError(f"WORLD_SIZE={world} but {name} is not set: start the run with "
                                   f"torchrun (docs/scale-out.md)")
        if device.type == "cuda":
            # before the group: nccl binds each rank's communicator to the current device
            torch.cuda.set_device(device)
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistContext(rank=rank, world_size=world, local_rank=local, device=device)


def is_main() -> bool:
    """Rank 0 (or the only process): the one that writes checkpoints, logs and TensorBoard."""
    return not is_distributed() or dist.get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def _flag_device() -> torch.device:
    # nccl reduces only CUDA tensors; gloo only CPU ones
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_true(flag: torch.Tensor | bool) -> bool:
    """True on every rank only if ``flag`` is true on every rank (an all_reduce with MIN)."""
    if not is_distributed():
        return bool(flag)
    t = torch.as_tensor(flag).to(device=_flag_device(), dtype=torch.int32).reshape(1)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def max_code(code: int) -> int:
    """The largest of an integer code over all ranks (an all_reduce with MAX)."""
    if not is_distributed():
        return int(code)
    t = torch.tensor([int(code)], dtype=torch.int64, device=_flag_device())
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())


def teardown(wait: bool = True) -> None:
    """Leave the process group; with ``wait``, after a barrier, so no rank exits while another
    still talks to it (a failed rank leaves without one: the others may never get there)."""
    if dist.is_available() and dist.is_initialized():
        if wait and dist.get_world_size() > 1:
            dist.barrier()
        dist.destroy_process_group()
