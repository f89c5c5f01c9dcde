"""The step: an injected inf is skipped with the parameters and optimiser state unchanged."""

from __future__ import annotations

import math

import pytest
import torch

from damt.config import load_config
from damt.tasks import MultiTaskObjective
from damt.testing import synthetic_views
from train.optim import Schedule, build_optimizer
from train.precision import resolve_precision
from train.step import step_is_finite, train_step


@pytest.fixture(scope="module")
def built(repo):
    """One cheap tiny model for the module (the atlas decoder left out: it dominates a CPU step)."""
    cfg = load_config(repo / "configs" / "tiny.yaml", ["tasks.atlas.enabled=false"])
    torch.manual_seed(0)
    return cfg, MultiTaskObjective(cfg, 20, 8, 101)


def _setup(built, precision="fp32"):
    """The module's model with a fresh optimiser (no state yet) at a warm-up learning rate."""
    cfg, model = built
    opt = build_optimizer(model, cfg.optim)
    Schedule.build(cfg.optim, 10, 2, 2).apply(opt, 5)
    return cfg, model, opt, resolve_precision(precision, torch.device("cpu"))


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_step_is_finite():
    one, inf, nan = torch.tensor(1.0), torch.tensor(math.inf), torch.tensor(math.nan)
    assert step_is_finite(one, one)
    assert not step_is_finite(inf, one) and not step_is_finite(one, nan)


def test_injected_inf_is_skipped_and_parameters_stay_unchanged(built):
    cfg, model, opt, precision = _setup(built)
    views = synthetic_views(cfg, 2, 20, 8, 101)
    views.global1[0, 0, 3, 3, 3] = math.inf
    before = _snapshot(model)
    res = train_step(model, views, opt, precision, cfg.optim.grad_clip_norm)
    assert not res.applied and not math.isfinite(res.loss)
    assert set(res.losses) == {"rotation", "location", "contrastive", "morphometry", "texture", "mim"}
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert opt.state_dict()["state"] == {}  # AdamW never stepped: no moments, no step count
    assert all(p.grad is None for p in model.parameters())
    views.global1[0, 0, 3, 3, 3] = 0.5
    res = train_step(model, views, opt, precision, cfg.optim.grad_clip_norm)
    assert res.applied and math.isfinite(res.loss) and res.grad_norm > 0
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_gradient_clipping_reports_the_unclipped_norm(built):
    cfg, model, opt, precision = _setup(built)
    views = synthetic_views(cfg, 2, 20, 8, 101)
    res = train_step(model, views, opt, precision, grad_clip_norm=1e-3)
    assert res.applied and res.grad_norm > 1e-3  # clipped to 1e-3, logged as it was


def test_fp16_overflow_is_skipped_and_the_scale_backs_off(built):
    cfg, model, opt, precision = _setup(built, "fp16")
    views = synthetic_views(cfg, 2, 20, 8, 101)
    # a loss scale at which the fp16 gradients overflow (to inf) while the loss stays finite, as
    # in the first steps of an fp16 run; whether 2^16 overflows depends on the weights (an L1
    # gradient is bounded whatever the target), so the test does not leave it to chance
    precision.scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 60)
    scale = precision.scaler.get_scale()
    before = _snapshot(model)
    res = train_step(model, views, opt, precision, cfg.optim.grad_clip_norm)
    assert not res.applied and precision.scaler.get_scale() == scale / 2
    assert math.isfinite(res.loss) and not math.isfinite(res.grad_norm)  # the gradient overflowed
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
