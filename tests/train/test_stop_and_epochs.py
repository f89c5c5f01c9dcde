"""What a user sees while training: the first Ctrl-C says at once what happens next, and the epoch
number is one convention (counted from 1, the epoch of the last step) in metrics.jsonl, the
progress bar, the resume line and the final message."""

from __future__ import annotations

import json
import os
import re
import signal

import pytest

import train.loop as loop
from damt.cli import main
from damt.config import load_config
from preprocess.run import run_preprocess
from train.step import StepResult

TASKS = ("rotation", "location", "contrastive", "atlas", "morphometry", "texture", "mim")


def test_first_ctrl_c_says_at_once_what_happens(capfd):
    with loop.StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGINT)          # the handler runs before the next line
        assert stop.received == "SIGINT"
        assert capfd.readouterr().err.strip() == (
            "damt train: stopping after this step and saving a checkpoint; "
            "press Ctrl-C again to stop without saving")
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)      # the second one stops without saving


def test_sigterm_says_so_and_other_ranks_stay_quiet(capfd):
    with loop.StopSignals() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == "SIGTERM" and "SIGTERM received" in capfd.readouterr().err
    with loop.StopSignals(announce=False) as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.received == "SIGTERM" and capfd.readouterr().err == ""


@pytest.fixture(scope="module")
def cache(synth_cohort, tmp_path_factory):
    """Three synthetic subjects: at batch 2 an epoch is two steps."""
    path = tmp_path_factory.mktemp("epochs") / "cache"
    summary = run_preprocess(load_config(None, [f"data.inputs=['{synth_cohort}']"]), path, workers=0,
                             progress=False)
    assert summary.ok == 3
    return path


def _fake_step(*args, **kwargs):
    """The loop's bookkeeping without the model's seconds-long step."""
    return StepResult(applied=True, loss=1.0, losses={t: 1.0 for t in TASKS}, grad_norm=1.0)


def test_one_epoch_convention_everywhere(cache, tmp_path, repo, capsys, monkeypatch):
    monkeypatch.setattr(loop, "train_step", _fake_step)
    out = tmp_path / "run"
    args = ["train", str(repo / "configs" / "tiny.yaml"), "--cache", str(cache), "--out", str(out)]
    assert main([*args, "--max-steps", "3"]) == 0    # 2 epochs of 2 steps: stop in the second
    captured = capsys.readouterr()
    bar = re.findall(r"epoch=(\d+)/(\d+)", captured.err)
    assert bar and bar[-1] == ("2", "2")
    assert "max_steps at step 3 (epoch 2 of 2)" in captured.out
    assert main([*args, "--resume", "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "at step 3 (epoch 2 of 2)" in captured.out.splitlines()[0]      # the resume line
    assert "completed at step 4 (epoch 2 of 2)" in captured.out
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [(r["step"], r["epoch"]) for r in records] == [(1, 1), (2, 1), (3, 2), (4, 2)]
