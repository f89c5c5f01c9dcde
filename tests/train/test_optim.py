"""AdamW parameter groups, the lr / weight-decay schedules, and the precision setting."""

from __future__ import annotations

import math

import pytest
import torch

from damt.config import OptimConfig, load_config
from damt.tasks import MultiTaskObjective
from train.optim import Schedule, build_optimizer, param_groups
from train.precision import resolve_precision


def test_param_groups_decay_only_weight_matrices(repo):
    cfg = load_config(repo / "configs" / "tiny.yaml", ["tasks.weighting=uncertainty"])
    model = MultiTaskObjective(cfg, 20, 8, 101)
    decay, no_decay = param_groups(model)
    names = {id(p): n for n, p in model.named_parameters()}
    undecayed = {names[id(p)] for p in no_decay["params"]}
    decayed = {names[id(p)] for p in decay["params"]}
    assert "encoder.mask_token" in undecayed and "weighting.params" in undecayed
    assert any(n.endswith("relative_position_bias_table") for n in undecayed)
    assert all(not n.endswith(".bias") and "norm" not in n for n in decayed)
    assert "encoder.swinViT.patch_embed.proj.weight" in decayed
    assert len(decayed) + len(undecayed) == len(list(model.parameters()))
    opt = build_optimizer(model, cfg.optim)
    assert isinstance(opt, torch.optim.AdamW) and [g["wd_scale"] for g in opt.param_groups] == [1.0, 0.0]


def test_schedule_follows_method_md():
    cfg = OptimConfig()  # 5e-4 per 256, warm-up 5 epochs from 1e-6, cosine to 1e-7, wd 0.04 -> 0.4
    s = Schedule.build(cfg, steps_per_epoch=100, epochs=301, global_batch=8)
    assert s.peak_lr == pytest.approx(5e-4 * 8 / 256)          # the linear scaling rule
    assert s.warmup_steps == 500 and s.total_steps == 30100
    assert s.lr(0) == pytest.approx(1e-6)
    assert s.lr(250) == pytest.approx(1e-6 + (s.peak_lr - 1e-6) / 2)
    assert s.lr(500) == pytest.approx(s.peak_lr)
    mid = 500 + (30100 - 500) // 2
    assert s.lr(mid) == pytest.approx(1e-7 + (s.peak_lr - 1e-7) / 2)
    assert s.lr(30100) == pytest.approx(1e-7) and s.lr(40000) == pytest.approx(1e-7)
    lrs = [s.lr(i) for i in range(0, 30101, 100)]
    top = lrs.index(max(lrs))
    assert all(a <= b for a, b in zip(lrs[:top], lrs[1:top + 1]))   # rises, then
    assert all(a >= b for a, b in zip(lrs[top:], lrs[top + 1:]))    # only falls
    assert s.wd(0) == pytest.approx(0.04) and s.wd(30100) == pytest.approx(0.4)
    assert s.wd(15050) == pytest.approx(0.22)
    assert all(a <= b for a, b in zip([s.wd(i) for i in range(0, 30101, 100)],
                                      [s.wd(i) for i in range(100, 30201, 100)]))


def test_schedule_applies_lr_and_wd_per_group():
    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.LayerNorm(3))
    opt = build_optimizer(model, OptimConfig())
    s = Schedule.build(OptimConfig(), steps_per_epoch=10, epochs=2, global_batch=2)
    lr, wd = s.apply(opt, 7)
    assert [g["lr"] for g in opt.param_groups] == [lr, lr]
    assert [g["weight_decay"] for g in opt.param_groups] == [wd, 0.0]
    assert s.state_dict() == Schedule(**s.state_dict()).state_dict()
    assert math.isfinite(lr) and 0 < wd


def test_precision_auto_is_fp32_on_cpu_and_fp16_has_a_scaler():
    cpu = torch.device("cpu")
    auto = resolve_precision("auto", cpu)
    assert auto.name == "fp32" and auto.scaler is None and auto.dtype is None
    fp16 = resolve_precision("fp16", cpu)
    assert fp16.name == "fp16" and isinstance(fp16.scaler, torch.amp.GradScaler)
    bf16 = resolve_precision("bf16", cpu)
    with bf16.autocast():
        assert torch.mm(torch.ones(2, 2), torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError):
        resolve_precision("fp8", cpu)
