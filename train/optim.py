"""AdamW with the linear scaling rule, linear warm-up, cosine lr and cosine weight decay.

The schedules are plain functions of the global step (no scheduler object with hidden state), so a
resumed run recomputes exactly the same values from the step it restores. What a checkpoint
stores as "scheduler" is :meth:`Schedule.state_dict`: the numbers that define the schedule,
checked against the resumed run's.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from damt.config import OptimConfig

# parameters that are never decayed although they are not 1-D: Swin's relative position bias
# tables (as in the Swin and SwinUNETR recipes) and the MIM mask token (an input, not a weight)
NO_DECAY_NAMES = ("relative_position_bias_table", "mask_token")


def param_groups(model: nn.Module) -> list[dict]:
    """Two AdamW groups: weights with weight decay, and biases / norm scales / tokens / the
    uncertainty weights without (decaying those only pulls them to 0 for no regularising gain)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if p.ndim <= 1 or any(key in name for key in NO_DECAY_NAMES):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "wd_scale": 1.0, "name": "decay"},
            {"params": no_decay, "wd_scale": 0.0, "name": "no_decay"}]


def build_optimizer(model: nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; lr and weight decay are set every step by the Schedule."""
    return torch.optim.AdamW(param_groups(model), lr=cfg.warmup_start_lr,
                             betas=tuple(cfg.betas), weight_decay=0.0)


@dataclass(frozen=True)
class Schedule:
    """lr and weight decay as functions of the global step.

    peak_lr = base_lr * global_batch / lr_reference_batch (the linear scaling rule). lr rises
    linearly from warmup_start_lr to peak_lr over warmup_steps, then follows a half cosine to
    final_lr at total_steps. Weight decay follows a half cosine from weight_decay_start at step 0
    to weight_decay_end at total_steps (the DINO recipe the seed used).
    """

    peak_lr: float
    warmup_start_lr: float
    final_lr: float
    warmup_steps: int
    total_steps: int
    wd_start: float
    wd_end: float

    @classmethod
    def build(cls, cfg: OptimConfig, steps_per_epoch: int, epochs: int, global_batch: int) -> "Schedule":
        if steps_per_epoch < 1:
            raise ValueError("an epoch has no step: fewer samples than one global batch")
        total = steps_per_epoch * epochs
        return cls(peak_lr=cfg.base_lr * global_batch / cfg.lr_reference_batch,
                   warmup_start_lr=cfg.warmup_start_lr, final_lr=cfg.final_lr,
                   warmup_steps=min(round(cfg.warmup_epochs * steps_per_epoch), total),
                   total_steps=total, wd_start=cfg.weight_decay_start, wd_end=cfg.weight_decay_end)

    def lr(self, step: int) -> float:
        if step < self.warmup_steps:
            return self.warmup_start_lr + (self.peak_lr - self.warmup_start_lr) * step / self.warmup_steps
        span = max(self.total_steps - self.warmup_steps, 1)
        t = min(step - self.warmup_steps, span) / span
        return self.final_lr + 0.5 * (self.peak_lr - self.final_lr) * (1 + math.cos(math.pi * t))

    def wd(self, step: int) -> float:
        t = min(step, self.total_steps) / max(self.total_steps, 1)
        return self.wd_end + 0.5 * (self.wd_start - self.wd_end) * (1 + math.cos(math.pi * t))

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> tuple[float, float]:
        """Set every group's lr and weight decay for ``step``; returns (lr, wd)."""
        lr, wd = self.lr(step), self.wd(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
            group["weight_decay"] = wd * group.get("wd_scale", 1.0)
        return lr, wd

    def state_dict(self) -> dict:
        return asdict(self)
