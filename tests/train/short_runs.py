"""Short tiny training runs on three real subjects, shared by test_resume.py and test_train_loop.py.

A tiny step costs seconds on a 2-core CPU (the atlas decoder works at full resolution), so the runs
are made once per session and several tests read them. Three subjects at batch 2 make epochs of
two steps, a full batch and a batch of one, so the runs cross epoch ends and the smaller last
batch. The chain:

* run A: ``damt train`` through the CLI, stopped by a SIGTERM after step 1 (a checkpoint is written);
  resumed to step 4 (mid-epoch start); a checkpoint folder without its completion marker is then
  planted at a later step, and A is resumed again to the end of its 15 epochs (STEPS steps);
* run B: the same config straight to step 4, to compare with A's resumed step 4 bit for bit.
"""

from __future__ import annotations

import os
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

import torch

SUBJECTS = ("sub-01", "sub-02")  # with bert: three subjects
EPOCHS = 15
STEPS = 2 * EPOCHS


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


_RUNS: dict[str, ShortRuns] = {}


def short_runs(tmp_path_factory, data_dir: Path, repo: Path) -> ShortRuns:
    key = str(tmp_path_factory.getbasetemp())
    if key in _RUNS:
        return _RUNS[key]
    import train.loop as loop  # noqa: PLC0415
    from damt.cli import main  # noqa: PLC0415
    from damt.config import load_config  # noqa: PLC0415
    from preprocess.run import run_preprocess  # noqa: PLC0415
    from train.checkpoint import latest_checkpoint, load_checkpoint  # noqa: PLC0415

    base = tmp_path_factory.mktemp("short_runs")
    root, cache = base / "cohort", base / "cache"
    shutil.copytree(data_dir / "fs_bert" / "bert", root / "bert")
    for sid in SUBJECTS:
        shutil.copytree(data_dir / "fs_training_data" / sid, root / sid)
    tiny = repo / "configs" / "tiny.yaml"
    summary = run_preprocess(load_config(tiny, [f"data.inputs=['{root}']"]), cache, workers=0,
                             progress=False)
    assert summary.ok == 1 + len(SUBJECTS), summary.table()
    # drop path makes the weights depend on the torch RNG stream: a resume that restored it
    # wrongly could not give the straight run's weights
    overrides = [f"train.epochs={EPOCHS}", "model.drop_path_rate=0.1"]
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
    _RUNS[key] = ShortRuns(cache, overrides, run_a, run_b, rc, a_at_4, b_at_4, start, final)
    return _RUNS[key]
