"""One rank of a DDP test run, started by torch.multiprocessing.spawn from test_ddp.py.

Each process sets torchrun's environment variables itself (so it goes through the same
``train.dist.setup`` as under torchrun), builds a :class:`train.loop.Trainer` on configs/tiny.yaml
and runs it, recording after every step its StepResult and a copy of its parameters. A job may
inject a non-finite loss (``inf_rank`` at ``inf_step``) or a SIGTERM (``sigterm_rank`` after
``sigterm_step``) into one rank only. What the rank saw, including every Python warning raised
while it trained (DDP's reducer reports through them), is saved as ``<results>/rank<r>.pt``.
"""

from __future__ import annotations

import math
import os
import signal
import warnings
from pathlib import Path

import torch


def _params(model) -> dict[str, torch.Tensor]:
    from train.state import unwrap  # noqa: PLC0415

    return {k: v.detach().clone() for k, v in unwrap(model).state_dict().items()}


def run_rank(rank: int, world: int, port: int, job: dict) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)  # two ranks share two cores
    import train.loop as loop  # noqa: PLC0415
    from damt.config import load_config  # noqa: PLC0415
    from damt.tasks import MultiTaskObjective  # noqa: PLC0415
    from train import dist  # noqa: PLC0415

    cfg = load_config(Path(job["repo"]) / "configs" / "tiny.yaml", job["overrides"])
    steps: list[dict] = []
    real_step, real_forward = loop.train_step, MultiTaskObjective.forward

    def forward(self, views):
        total, losses = real_forward(self, views)
        if job.get("inf_rank") == rank and len(steps) + 1 == job.get("inf_step"):
            # a constant inf: the loss is non-finite on this rank but every gradient stays finite,
            # so only the reduced flag can make the other rank skip this step too
            total = total + torch.tensor(math.inf)
        return total, losses

    def step(model, *args, **kwargs):
        res = real_step(model, *args, **kwargs)
        steps.append({"applied": res.applied, "loss": res.loss, "grad_norm": res.grad_norm,
                      "losses": res.losses, "params": _params(model)})
        if job.get("sigterm_rank") == rank and len(steps) == job.get("sigterm_step"):
            os.kill(os.getpid(), signal.SIGTERM)
        return res

    MultiTaskObjective.forward, loop.train_step = forward, step
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            trainer = loop.Trainer(cfg, Path(job["cache"]), Path(job["out"]), resume=job["resume"],
                                   progress=False)
            initial = _params(trainer.model)
            grads: list[dict] = []
            # the gradients the optimiser applies (DDP-averaged, clipped), captured before it steps
            trainer.optimizer.register_step_pre_hook(lambda opt, args, kwargs: grads.append(
                {n: p.grad.detach().clone() for n, p in trainer.model.named_parameters()
                 if p.grad is not None}))
            result = trainer.run(job["max_steps"])
        torch.save({"initial": initial, "steps": steps, "grads": grads, "step": result.step,
                    "stopped_by": result.stopped_by, "checkpoint": str(result.checkpoint),
                    "world_size": trainer.dist.world_size, "sampler": trainer.sampler.state_dict(),
                    "warnings": [f"{w.category.__name__}: {w.message}" for w in seen]},
                   Path(job["results"]) / f"rank{rank}.pt")
    finally:
        MultiTaskObjective.forward, loop.train_step = real_forward, real_step
        dist.teardown()
