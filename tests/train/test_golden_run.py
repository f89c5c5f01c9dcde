"""The golden run: the first 10 steps of the tiny config on the real subjects, loss by loss.

Written before the issue-14 refactor (cache contract, objective apart from the model, draw-then-
apply views) so that a refactor which changes what is trained cannot pass silently. The reference
losses in ``golden_run.json`` were recorded on the CPU in fp32. On the same torch build and CPU
capability the run is deterministic, so the losses must match bit for bit; elsewhere (another
torch, another SIMD path) float summation order may differ, and they must match to 5e-4 relative.

Regenerate only when the training itself is meant to change (a method change, never a refactor):
``DAMT_WRITE_GOLDEN=1 python -m pytest tests/train/test_golden_run.py``.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

import pytest
import torch

GOLDEN = Path(__file__).with_name("golden_run.json")
STEPS = 10
THREADS = 2
OVERRIDES = ["train.epochs=5", "train.log_every_steps=1"]  # 3 subjects at batch 2: 2 steps/epoch


def _platform() -> dict[str, str]:
    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": platform.machine()}


def _losses(run_dir: Path) -> list[dict[str, float]]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k == "step" or k == "loss" or k.startswith("loss_")}
            for row in rows]


@pytest.mark.slow
def test_first_ten_tiny_steps_match_the_golden_losses(short_cache, repo, tmp_path):
    from damt.config import load_config
    from train.loop import train

    cache = short_cache  # bert, sub-01, sub-02 preprocessed with configs/tiny.yaml (conftest.py)
    cfg = load_config(repo / "configs" / "tiny.yaml", OVERRIDES)
    # the recorded run used 2 threads (the 2-core CI machine): the thread count sets torch's
    # reduction order, so it is pinned for the bitwise comparison on any machine
    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        result = train(cfg, cache=cache, out=tmp_path / "run", max_steps=STEPS, progress=False,
                       device=torch.device("cpu"))
    finally:
        torch.set_num_threads(threads)
    assert result.step == STEPS
    got = _losses(tmp_path / "run")
    assert [row["step"] for row in got] == list(range(1, STEPS + 1))
    if os.environ.get("DAMT_WRITE_GOLDEN"):
        GOLDEN.write_text(json.dumps({"platform": _platform(), "steps": got}, indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert [sorted(row) for row in got] == [sorted(row) for row in golden["steps"]], \
        "the logged tasks changed"
    if golden["platform"] == _platform():
        assert got == golden["steps"], "same torch and CPU path: the losses must match bit for bit"
    else:
        for mine, ref in zip(got, golden["steps"], strict=True):
            for key, value in ref.items():
                assert mine[key] == pytest.approx(value, rel=5e-4), (mine["step"], key)
