"""Session fixtures: the expensive tiny runs on real subjects that several test modules read.

A tiny step costs seconds on a 2-core CPU (the atlas decoder works at full resolution) and
preprocessing a real subject about as much, so each of these is made once per session, on first
use, and shared:

* ``short_cache``: bert, sub-01 and sub-02 preprocessed with configs/tiny.yaml (three subjects at
  batch 2 make epochs of two steps, a full batch and a batch of one, so runs cross epoch ends and
  the smaller last batch). The golden run trains on it.
* ``short_runs``: on that cache, the chain of test_resume.py and test_train_loop.py:

  - run A: ``damt train`` through the CLI, stopped by a SIGTERM after step 1 (a checkpoint is
    written); resumed to step 4 (mid-epoch start); a checkpoint folder without its completion
    marker is then planted at a later step, and A is resumed again to the end of its 15 epochs;
  - run B: the same config straight to step 4, to compare with A's resumed step 4 bit for bit.

* ``tiny_run``: bert + eight fs_training_data subjects preprocessed, then trained 2 steps (a
  checkpoint is written at the stop); test_export.py and test_probe.py read it.
"""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from damt.config import DamtConfig, load_config


def _cohort(base: Path, data_dir: Path, subjects: tuple[str, ...]) -> Path:
    """A SUBJECTS_DIR copy of bert and ``subjects`` (fs_training_data) under ``base``."""
    root = base / "cohort"
    shutil.copytree(data_dir / "fs_bert" / "bert", root / "bert")
    for sid in subjects:
        shutil.copytree(data_dir / "fs_training_data" / sid, root / sid)
    return root


def _preprocess(cfg: DamtConfig, cache: Path, n_subjects: int) -> None:
    from preprocess.run import run_preprocess  # noqa: PLC0415 - a stage, imported where it runs

    summary = run_preprocess(cfg, cache, workers=0, progress=False)
    assert summary.ok == n_subjects, summary.table()


SHORT_SUBJECTS = ("sub-01", "sub-02")  # with bert: three subjects
SHORT_EPOCHS = 15


@pytest.fixture(scope="session")
def short_cache(tmp_path_factory, data_dir, repo) -> Path:
    """The three-subject tiny cache (bert, sub-01, sub-02)."""
    base = tmp_path_factory.mktemp("short_cache")
    root = _cohort(base, data_dir, SHORT_SUBJECTS)
    cache = base / "cache"
    _preprocess(load_config(repo / "configs" / "tiny.yaml", [f"data.inputs=['{root}']"]), cache,
                1 + len(SHORT_SUBJECTS))
    return cache


@dataclass(frozen=True)
class ShortRuns:
    cache: Path
    overrides: list[str]         # the --set overrides of every segment (on configs/tiny.yaml)
    run_a: Path
    run_b: Path
    sigterm_rc: int
    a_at_4: dict                 # A's checkpoint at step 4 (resumed from step 1)
    b_at_4: dict                 # B's checkpoint at step 4 (straight)
    third_resume_step: int       # where A's second resume started (the planted folder ignored)
    final: object                # RunResult of A's last segment
    steps: int = 2 * SHORT_EPOCHS  # A's length: two steps per epoch


@pytest.fixture(scope="session")
def short_runs(short_cache, tmp_path_factory, repo) -> ShortRuns:
    """Runs A and B on ``short_cache`` (see the module docstring)."""
    import train.loop as loop  # noqa: PLC0415
    from damt.cli import main  # noqa: PLC0415
    from train.checkpoint import latest_checkpoint, load_checkpoint  # noqa: PLC0415

    base = tmp_path_factory.mktemp("short_runs")
    tiny, cache = repo / "configs" / "tiny.yaml", short_cache
    # drop path makes the weights depend on the torch RNG stream: a resume that restored it
    # wrongly could not give the straight run's weights
    overrides = [f"train.epochs={SHORT_EPOCHS}", "model.drop_path_rate=0.1"]
    sets = [arg for o in overrides for arg in ("--set", o)]
    cfg = load_config(tiny, overrides)
    run_a, run_b = base / "run_a", base / "run_b"

    # A, segment 1: preempted by SIGTERM once the first step is done
    real_step = loop.train_step

    def step_then_sigterm(*args, **kwargs):
        result = real_step(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGTERM)
        return result

    loop.train_step = step_then_sigterm
    try:
        rc = main(["train", str(tiny), "--cache", str(cache), "--out", str(run_a), "--quiet", *sets])
    finally:
        loop.train_step = real_step
    # A, segment 2: resume to step 4; B: straight to step 4
    loop.train(cfg, cache=cache, out=run_a, resume=True, max_steps=4, progress=False)
    a_at_4 = load_checkpoint(latest_checkpoint(run_a / "checkpoints"))
    loop.train(cfg, cache=cache, out=run_b, max_steps=4, progress=False)
    b_at_4 = load_checkpoint(latest_checkpoint(run_b / "checkpoints"))
    # A, segment 3: a later checkpoint without its marker must be ignored by the resume
    planted = run_a / "checkpoints" / "step_000000099"
    planted.mkdir()
    torch.save({"step": 99}, planted / "state.pt")
    trainer = loop.Trainer(cfg, cache, run_a, resume=True, progress=False)
    start = trainer.step
    final = trainer.run()
    return ShortRuns(cache, overrides, run_a, run_b, rc, a_at_4, b_at_4, start, final)


TINY_SUBJECTS = ("sub-01", "sub-02", "sub-03", "sub-04", "sub-06", "sub-07", "sub-08", "sub-09")


@dataclass(frozen=True)
class TinyRun:
    root: Path          # the cohort copy (SUBJECTS_DIR layout, bert + TINY_SUBJECTS)
    cache: Path
    run_dir: Path
    cfg: DamtConfig
    steps: int = 2      # trained steps (the checkpoint's step)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, data_dir, repo) -> TinyRun:
    """bert + eight fs_training_data subjects preprocessed with configs/tiny.yaml, trained 2 steps."""
    from train.loop import train  # noqa: PLC0415

    base = tmp_path_factory.mktemp("tiny_run")
    root = _cohort(base, data_dir, TINY_SUBJECTS)
    cache, run_dir = base / "cache", base / "run"
    # data.cache_dir as `damt train --cache` sets it, so the run's saved config names its cache
    cfg = load_config(repo / "configs" / "tiny.yaml",
                      [f"data.inputs=['{root}']", f"data.cache_dir='{cache}'"])
    _preprocess(cfg, cache, 1 + len(TINY_SUBJECTS))
    run = TinyRun(root, cache, run_dir, cfg)
    result = train(cfg, cache=cache, out=run_dir, max_steps=run.steps, progress=False)
    assert result.step == run.steps and result.checkpoint is not None, result
    return run
