"""A tiny run on real subjects: the losses fall, the run directory and metrics are as DESIGN.md
says, and the regression losses start on the scale of the others."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from damt.config import load_config
from damt.labels import load_label_table
from damt.tasks import MultiTaskObjective
from damt.views import make_views
from train.checkpoint import complete_checkpoints
from train.data import CacheDataset, ShardedSampler, build_loader

TASKS = ("rotation", "location", "contrastive", "atlas", "morphometry", "texture", "mim")


@pytest.fixture(scope="module")
def runs(short_runs):
    return short_runs  # the session's runs A and B (tests/train/conftest.py)


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_losses_fall_over_the_run(runs):
    assert runs.final.stopped_by == "completed" and runs.final.step == runs.steps
    lines = _metrics(runs.run_a)
    assert [r["step"] for r in lines] == list(range(1, runs.steps + 1))
    first, last = lines[:6], lines[-6:]  # three epochs each: every subject three times

    def mean(rows, key):
        return float(np.mean([r[key] for r in rows]))

    assert mean(last, "loss") < 0.95 * mean(first, "loss")
    assert mean(last, "loss_mim") < 0.7 * mean(first, "loss_mim")
    assert mean(last, "loss_atlas") < 0.95 * mean(first, "loss_atlas")
    # no task diverges. (Over 30 steps the regression losses stay near each subject's mean |z|:
    # fitting three subjects' vectors from random rotated crops takes longer than this run.)
    for task in TASKS:
        assert mean(last, f"loss_{task}") < 1.1 * mean(first, f"loss_{task}") + 1e-6, task


@pytest.mark.slow
def test_run_directory_and_metrics_keys(runs):
    run = runs.run_a
    assert (run / "config.yaml").is_file() and list(run.glob("events.out.tfevents.*"))
    saved = load_config(run / "config.yaml")  # the resolved config the run was given
    assert saved.train.epochs == 15 and saved.model.drop_path_rate == 0.1
    steps = [s for s, _, _ in complete_checkpoints(run / "checkpoints")]
    assert steps == [runs.steps]  # only the latest (keep_every_epochs 20 > 15 epochs)
    for record in _metrics(run):
        assert {"step", "epoch", "loss", "lr", "wd", "grad_norm", "skipped_steps", "samples_per_s",
                "data_wait_frac"} <= record.keys()
        assert {f"loss_{t}" for t in TASKS} <= record.keys()
        assert record["skipped_steps"] == 0 and 0 <= record["data_wait_frac"] <= 1
    # no skipped step: the only events are the checkpointing choices, one per segment of the run
    # (auto on a CPU without train.memory_budget_gib: none, nothing predicted)
    events = [json.loads(line) for line in (run / "events.jsonl").read_text().splitlines()]
    assert events and {e["event"] for e in events} == {"grad_checkpointing"}
    for e in events:
        assert {k: v for k, v in e.items() if k != "step"} == {
            "event": "grad_checkpointing", "setting": "none", "requested": "auto",
            "budget_gib": None, "fits": True, "predicted_gib": {}, "batch": 2}


@pytest.mark.slow
def test_regression_losses_start_on_the_scale_of_one(runs, repo):
    """Step 0, random weights: morphometry and texture L1 of order 1 on every batch of the cohort
    (the original's untreated radiomics started near 252)."""
    cfg = load_config(repo / "configs" / "tiny.yaml",
                      [f"tasks.{t}.enabled=false" for t in TASKS if t not in ("morphometry", "texture")])
    ds = CacheDataset(runs.cache, cfg)
    loader = build_loader(ds, ShardedSampler(len(ds), 0, 1, seed=0), cfg, 2)
    torch.manual_seed(cfg.train.seed)
    model = MultiTaskObjective(cfg, ds.targets.size("morphometry"), ds.targets.size("radiomics"),
                      load_label_table(cfg.labels.table).n_classes)
    seen = []
    with torch.no_grad():
        for epoch in range(2):
            ds.set_epoch(epoch)
            for batch in loader:
                seen.append(model(make_views(batch, cfg))[1])
    for task in ("morphometry", "texture"):
        values = [float(s[task]) for s in seen]
        assert all(0.1 < v < 5 for v in values), (task, values)
    first = _metrics(runs.run_b)[0]
    assert 0.1 < first["loss_morphometry"] < 5 and 0.1 < first["loss_texture"] < 5


def test_python_m_train_is_the_same_command(repo):
    out = subprocess.run([sys.executable, "-m", "train", "--help"], cwd=repo, capture_output=True,
                         text=True, check=True).stdout
    for flag in ("--cache", "--out", "--resume", "--max-steps", "--set", "--allow-config-change"):
        assert flag in out


def test_train_without_a_cache_is_a_config_error(repo, tmp_path, capsys):
    from damt.cli import main

    rc = main(["train", str(repo / "configs" / "tiny.yaml"), "--cache", str(tmp_path / "none"),
               "--out", str(tmp_path / "run"), "--quiet"])
    assert rc == 2 and "data.cache_dir" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_consecutive_skips_stop_the_run_with_a_report(runs, repo, tmp_path, monkeypatch):
    """Non-finite steps are counted and reported with the subject ids; K in a row stop the run.
    (The step itself is replaced by one that reports a non-finite loss: the skip mechanics of a
    real step are tested in test_step.py.)"""
    import math

    import train.loop as loop
    from train.step import StepResult

    def nonfinite(model, views, *args, **kwargs):
        return StepResult(applied=False, loss=math.nan, losses={"mim": math.inf}, grad_norm=math.nan)

    monkeypatch.setattr(loop, "train_step", nonfinite)
    cfg = load_config(repo / "configs" / "tiny.yaml", ["train.max_consecutive_skips=3"])
    with pytest.raises(loop.TooManySkips, match="3 non-finite steps in a row"):
        loop.train(cfg, cache=runs.cache, out=tmp_path / "run", progress=False)
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert events[0]["event"] == "grad_checkpointing"  # logged at the start of every run
    events = [e for e in events if e["event"] == "skipped_step"]
    assert [e["step"] for e in events] == [1, 2, 3] and events[-1]["consecutive"] == 3
    assert events[0]["losses"] == {"mim": "inf"} and events[0]["loss"] == "nan"
    subjects = {"bert", "sub-01", "sub-02"}
    assert all(e["subjects"] and set(e["subjects"]) <= subjects for e in events)
    metrics = _metrics(tmp_path / "run")
    assert [m["skipped_steps"] for m in metrics] == [1, 2]  # the third raised before its line
    assert metrics[0]["loss"] is None  # no applied step in the interval: null, not NaN
