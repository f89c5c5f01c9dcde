"""One optimisation step, with non-finite steps detected and skipped.

A step always runs forward and backward (under DDP every rank must take part in the gradient
all-reduce), then :func:`step_is_finite` decides whether the optimiser applies it. A skipped step
leaves parameters and optimiser state untouched; with a GradScaler the scale still backs off.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import Tensor, nn

from damt.views import Views
from train.dist import all_true
from train.precision import Precision


@dataclass
class StepResult:
    """What one step did. ``losses`` are the task losses as floats (NaN/inf kept as they were)."""

    applied: bool
    loss: float
    losses: dict[str, float] = field(default_factory=dict)
    grad_norm: float = math.nan


def step_is_finite(loss: torch.Tensor, grad_norm: torch.Tensor) -> bool:
    """The single decision whether a step is applied: loss and gradient norm both finite.

    Under DDP the flag is all-reduced with MIN (:func:`train.dist.all_true`): the gradients are
    averaged across ranks, but each rank's loss is its own, so a loss that is non-finite on one
    rank alone must still make every rank skip, or the replicas would drift apart. Nothing else
    in the trainer needs to know about ranks to skip consistently.
    """
    return all_true(torch.isfinite(loss) & torch.isfinite(grad_norm))


#: what the step calls: the objective (damt.tasks.MultiTaskObjective), bare, in DDP or compiled;
#: one forward from the views to (weighted total [], {task: loss []})
Objective = Callable[[Views], tuple[Tensor, dict[str, Tensor]]]


def train_step(objective: Objective, views: Views, optimizer: torch.optim.Optimizer,
               precision: Precision, grad_clip_norm: float) -> StepResult:
    """Forward, backward, clip, finiteness check, optimiser step (or skip)."""
    with precision.autocast():
        total, losses = objective(views)
    scaler = precision.scaler
    (scaler.scale(total) if scaler is not None else total).backward()
    if scaler is not None:
        scaler.unscale_(optimizer)  # clip and judge the true gradients, not the scaled ones
    params = [p for group in optimizer.param_groups for p in group["params"]]
    # max_norm=inf computes the norm without clipping when clipping is off
    grad_norm = nn.utils.clip_grad_norm_(params, grad_clip_norm if grad_clip_norm > 0 else math.inf)
    applied = step_is_finite(total.detach(), grad_norm)
    if applied:
        if scaler is not None:
            scaler.step(optimizer)
        else:
            optimizer.step()
    if scaler is not None:
        scaler.update()  # backs the scale off after an overflow, grows it after a clean run
    optimizer.zero_grad(set_to_none=True)
    return StepResult(applied=applied, loss=float(total.detach()),
                      losses={k: float(v.detach()) for k, v in losses.items()},
                      grad_norm=float(grad_norm))
