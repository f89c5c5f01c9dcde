"""Atomic checkpoints: the completion marker, pruning, weights_only loading, RNG and scaler state."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from damt.config import ConfigError, load_config
from train.checkpoint import (
    MARKER_FILE,
    STATE_FILE,
    capture_rng,
    complete_checkpoints,
    latest_checkpoint,
    load_checkpoint,
    restore_rng,
    save_checkpoint,
)
from train.data import ShardedSampler
from train.optim import Schedule, build_optimizer
from train.precision import resolve_precision
from train.state import check_resume_config, make_state, restore_state


def _state(step: int) -> dict:
    return {"step": step, "w": torch.full((3,), float(step)), "nested": {"a": [1, 2.5, "x", None]}}


def test_round_trip_through_weights_only_load(tmp_path):
    folder = save_checkpoint(tmp_path, _state(5) | {"rng": capture_rng()}, step=5, epoch=0, keep=False)
    assert folder.name == "step_000000005" and (folder / MARKER_FILE).is_file()
    back = load_checkpoint(folder)  # torch.load(weights_only=True) inside
    assert back["step"] == 5 and torch.equal(back["w"], torch.full((3,), 5.0))
    assert back["nested"] == {"a": [1, 2.5, "x", None]}


def test_checkpoint_without_marker_is_ignored_and_pruned(tmp_path):
    save_checkpoint(tmp_path, _state(1), step=1, epoch=0, keep=False)
    # a write killed after its rename but before its marker, and one killed before its rename
    half = tmp_path / "step_000000009"
    half.mkdir()
    torch.save(_state(9), half / STATE_FILE)
    (tmp_path / ".step_000000010.abcd1234.tmp").mkdir()
    assert latest_checkpoint(tmp_path).name == "step_000000001"
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint"):
        load_checkpoint(half)
    save_checkpoint(tmp_path, _state(2), step=2, epoch=0, keep=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["step_000000002"]


def test_latest_is_kept_plus_the_periodic_copies(tmp_path):
    save_checkpoint(tmp_path, _state(1), step=1, epoch=1, keep=True)
    for step in (2, 3, 4):
        save_checkpoint(tmp_path, _state(step), step=step, epoch=step, keep=False)
    assert [s for s, _, _ in complete_checkpoints(tmp_path)] == [1, 4]
    # saving the same step again (an epoch end that is also the --max-steps end) only re-flags it
    save_checkpoint(tmp_path, _state(99), step=4, epoch=4, keep=True)
    (_, folder, marker), = [c for c in complete_checkpoints(tmp_path) if c[0] == 4]
    assert marker["keep"] and load_checkpoint(folder)["step"] == 4


def test_corrupted_state_is_refused(tmp_path):
    folder = save_checkpoint(tmp_path, _state(3), step=3, epoch=0, keep=False)
    with open(folder / STATE_FILE, "r+b") as f:
        f.seek(-8, 2)
        f.write(b"\0" * 8)
    with pytest.raises(ValueError, match="sha256"):
        load_checkpoint(folder)


def test_rng_states_round_trip(tmp_path):
    torch.manual_seed(3)
    np.random.seed(3)
    random.seed(3)
    save_checkpoint(tmp_path, {"rng": capture_rng()}, step=1, epoch=0, keep=False)
    first = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    restore_rng(load_checkpoint(latest_checkpoint(tmp_path))["rng"])
    again = (torch.rand(4), np.random.rand(4), [random.random() for _ in range(4)])
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def _parts(cfg, precision):
    model = torch.nn.Linear(4, 2)
    opt = build_optimizer(model, cfg.optim)
    return dict(model=model, optimizer=opt, precision=precision,
                schedule=Schedule.build(cfg.optim, 3, 2, 2), sampler=ShardedSampler(6, 0, 1, seed=0))


def test_fp16_scaler_state_round_trips_through_a_checkpoint(repo, tmp_path):
    cfg = load_config(repo / "configs" / "tiny.yaml", ["train.precision=fp16"])
    parts = _parts(cfg, resolve_precision("fp16", torch.device("cpu")))
    scaler, opt, model = parts["precision"].scaler, parts["optimizer"], parts["model"]
    for bad in (True, False, False):  # one overflow (scale backs off), then two clean steps
        loss = model(torch.ones(1, 4)).sum() * (float("inf") if bad else 1.0)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
    saved = scaler.state_dict()
    assert saved["scale"] == 32768.0 and saved["_growth_tracker"] == 2
    parts["sampler"].advance(2)
    state = make_state(**parts, step=3, epoch=0, skipped_total=1, skipped_consecutive=0, cfg=cfg)
    folder = save_checkpoint(tmp_path, state, step=3, epoch=0, keep=False)
    fresh = _parts(cfg, resolve_precision("fp16", torch.device("cpu")))
    restore_state(load_checkpoint(folder), **fresh, cfg=cfg, allow_config_change=False)
    assert fresh["precision"].scaler.state_dict() == saved
    assert torch.equal(fresh["model"].weight, model.weight)
    assert fresh["sampler"].state_dict() == parts["sampler"].state_dict()


def test_config_change_on_resume_is_refused_unless_allowed(repo):
    cfg = load_config(repo / "configs" / "tiny.yaml", [])
    saved = load_config(repo / "configs" / "tiny.yaml", ["optim.base_lr=0.5", "loader.num_workers=3"])
    from damt.config import to_dict
    with pytest.raises(ConfigError, match="optim.base_lr.*--allow-config-change"):
        check_resume_config(to_dict(saved), cfg, allow_change=False)
    assert check_resume_config(to_dict(saved), cfg, allow_change=True) == ["loader.num_workers",
                                                                            "optim.base_lr"]
    # keys that cannot change the numbers of the run pass without the flag
    free = load_config(repo / "configs" / "tiny.yaml", ["loader.num_workers=3", "train.out_dir=x"])
    assert check_resume_config(to_dict(free), cfg, allow_change=False) == ["loader.num_workers",
                                                                          "train.out_dir"]


def test_resume_rules_follow_the_config_scopes(repo):
    """Keys of scope io (reports included) pass a resume without the flag; store, cache and run
    keys are binding; a key the schema does not know (an older checkpoint's) is binding."""
    from damt.config import to_dict
    cfg = load_config(repo / "configs" / "tiny.yaml", [])
    free = load_config(repo / "configs" / "tiny.yaml", ["qc.z_threshold=4.0", "dask.workers=3"])
    assert check_resume_config(to_dict(free), cfg, allow_change=False) == ["dask.workers",
                                                                          "qc.z_threshold"]
    for key in ("preprocess.spacing_mm=1.5", "preprocess.codec=zstd", "train.seed=3"):
        with pytest.raises(ConfigError, match=key.split("=")[0]):
            check_resume_config(to_dict(load_config(repo / "configs" / "tiny.yaml", [key])), cfg,
                                allow_change=False)
    old = to_dict(cfg) | {"removed_section": {"key": 1}}
    with pytest.raises(ConfigError, match="removed_section.key"):
        check_resume_config(old, cfg, allow_change=False)
