"""Exact resume, preemption, the completion marker and the resume policy, on real subjects."""

from __future__ import annotations

import json

import pytest
import torch

from damt.config import ConfigError, load_config
from train.loop import Trainer


@pytest.fixture(scope="module")
def runs(short_runs):
    return short_runs  # the session's runs A and B (tests/train/conftest.py)


def _equal_states(a, b) -> list[str]:
    """Keys of two nested checkpoint values that are not bitwise equal."""
    if isinstance(a, torch.Tensor):
        return [] if isinstance(b, torch.Tensor) and torch.equal(a, b) else ["<tensor>"]
    if isinstance(a, dict):
        if a.keys() != b.keys():
            return ["<keys>"]
        return [f"{k}.{d}" for k in a for d in _equal_states(a[k], b[k])]
    if isinstance(a, (list, tuple)):
        if len(a) != len(b):
            return ["<len>"]
        return [f"{i}.{d}" for i, (x, y) in enumerate(zip(a, b)) for d in _equal_states(x, y)]
    return [] if a == b else ["<value>"]


@pytest.mark.slow
def test_sigterm_writes_a_checkpoint_and_exits_143(runs):
    assert runs.sigterm_rc == 143
    lines = [json.loads(x) for x in (runs.run_a / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines[:4]] == [1, 2, 3, 4]  # the resumed segments continue the file


@pytest.mark.slow
def test_resume_is_bitwise_exact(runs):
    a, b = runs.a_at_4, runs.b_at_4
    assert a["step"] == b["step"] == 4 and a["epoch"] == b["epoch"] == 1
    for part in ("model", "optimizer", "rng", "sampler", "scheduler", "skipped"):
        assert _equal_states(a[part], b[part]) == [], part
    # and the logged numbers of steps 2-4 (after the resume) are the straight run's
    la = [json.loads(x) for x in (runs.run_a / "metrics.jsonl").read_text().splitlines()][:4]
    lb = [json.loads(x) for x in (runs.run_b / "metrics.jsonl").read_text().splitlines()]
    strip = ("samples_per_s", "data_wait_frac")
    assert [{k: v for k, v in r.items() if k not in strip} for r in la] == \
           [{k: v for k, v in r.items() if k not in strip} for r in lb]


@pytest.mark.slow
def test_checkpoint_without_marker_is_ignored_on_resume(runs):
    assert runs.third_resume_step == 4  # not the planted step 99 without its marker
    folders = sorted(p.name for p in (runs.run_a / "checkpoints").iterdir())
    assert "step_000000099" not in folders  # pruned as debris by the next complete save


@pytest.mark.slow
def test_config_change_on_resume_is_refused(runs, repo):
    changed = load_config(repo / "configs" / "tiny.yaml", [*runs.overrides, "optim.base_lr=0.01"])
    with pytest.raises(ConfigError, match="optim.base_lr"):
        Trainer(changed, runs.cache, runs.run_b, resume=True, progress=False)
    same = load_config(repo / "configs" / "tiny.yaml", runs.overrides)
    with pytest.raises(ConfigError, match="--resume"):  # never overwrite a run by accident
        Trainer(same, runs.cache, runs.run_b, resume=False, progress=False)
    allowed = Trainer(changed, runs.cache, runs.run_b, resume=True, allow_config_change=True,
                      progress=False)
    allowed.logger.close()
    assert allowed.step == 4


def test_resume_loads_the_model_strictly(repo):
    """Defect 6 of the original: resume with strict=False, so a renamed or foreign key left part of
    the model at its initialisation without a word. Here every key must match."""
    from damt.tasks import MultiTaskObjective  # noqa: PLC0415
    from train.data import ShardedSampler  # noqa: PLC0415
    from train.optim import Schedule, build_optimizer  # noqa: PLC0415
    from train.precision import resolve_precision  # noqa: PLC0415
    from train.state import make_state, restore_state  # noqa: PLC0415

    cfg = load_config(repo / "configs" / "tiny.yaml", ["tasks.atlas.enabled=false"])

    def parts(seed: int) -> dict:
        torch.manual_seed(seed)
        model = MultiTaskObjective(cfg, 20, 8, 101)
        return dict(model=model, optimizer=build_optimizer(model, cfg.optim),
                    precision=resolve_precision("fp32", torch.device("cpu")),
                    schedule=Schedule.build(cfg.optim, 3, 2, 2), sampler=ShardedSampler(6, 0, 1, seed=0))

    saved = make_state(**parts(1), step=3, epoch=0, skipped_total=0, skipped_consecutive=0, cfg=cfg)
    key = "heads.rotation.fc.weight"
    renamed = dict(saved, model={("heads.rotation.fc.w" if k == key else k): v
                                 for k, v in saved["model"].items()})
    foreign = dict(saved, model={**saved["model"], "heads.old_task.fc.weight": torch.zeros(2, 2)})
    fresh = parts(2)
    for state, words in ((renamed, ["Missing key", key, "Unexpected key"]),
                         (foreign, ["Unexpected key", "heads.old_task"])):
        with pytest.raises(ConfigError, match="do not fit the model") as err:
            restore_state(state, **fresh, cfg=cfg, allow_config_change=True)
        assert all(w in str(err.value) for w in words)
    restore_state(saved, **fresh, cfg=cfg, allow_config_change=False)  # the untampered one loads
    assert all(torch.equal(v, saved["model"][k]) for k, v in fresh["model"].state_dict().items())
