"""scripts/gpu-check.sh on its CPU path (the tiny config): every part runs and the report holds
what docs/benchmarks.md says it holds. The GPU path is the same code with pipeline.yaml."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


@pytest.mark.slow
def test_gpu_check_script_cpu_path_writes_the_report(repo, tmp_path):
    env = dict(os.environ, DAMT_GPU_CHECK_CPU="1", PYTHON=sys.executable,
               PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run(["bash", str(repo / "scripts" / "gpu-check.sh"), str(tmp_path / "out")],
                         capture_output=True, text=True, env=env, timeout=1800)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    summary = json.loads(res.stdout.strip().splitlines()[-1])
    report = json.loads((tmp_path / "out" / "gpu_check.json").read_text())
    assert summary["ok"] and report["ok"] and report["mode"] == "cpu"
    assert report["device"]["name"] == "cpu" and report["config"] == "tiny.yaml"
    step = report["bench_step"]["results"]
    assert step[0]["setting"] == "default" and step[0]["s_per_step"] > 0
    assert "skipped" in report["bench_step_compile"]
    predicted = {r["setting"]: r for r in report["memory_prediction"]["results"]}
    assert list(predicted) == ["none", "layers3", "all"]
    measured = {r["setting"]: r for r in report["memory_measured"]["results"]}
    assert list(measured) == ["none"]
    for r in measured.values():
        assert r["measured_gib"] > 0 and r["predicted_gib"] > 0 and r["error_pct"] is not None
    train = report["train"]
    assert train["preprocess"]["rc"] == 0 and train["train"]["rc"] == 0
    assert train["steps"] == 2 and train["checkpointing"]["setting"] == "none"
