"""The body of scripts/gpu-check.sh: every GPU check of issue 15 in one run, one JSON report.

    python scripts/gpu_check.py --out DIR [--cpu]

Every part runs the project's own commands in a subprocess with a time limit, so that a part
that fails or runs out of time is recorded in the report and the others still run:

1. ``damt bench step`` (default and original settings) and ``damt bench step --compile``;
2. ``damt bench memory --measure`` at batch 2: measured peak (``torch.cuda.max_memory_allocated``)
   against the prediction for none, layers3 and all, and the prediction table of pipeline.yaml;
3. a synthetic cohort (``damt.synth``), ``damt preprocess``, then a 20-step ``damt train`` started
   by ``torchrun --nproc_per_node 1`` (the trainer logs its checkpointing choice).

``--cpu`` (or no CUDA device): the same parts with configs/tiny.yaml, few steps and no compile, so
CI can check the script without a GPU. The report is DIR/gpu_check.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # damt.synth, when run as a plain script
TINY = REPO / "configs" / "tiny.yaml"
FULL = REPO / "pipeline.yaml"

#: per-part settings: (GPU, CPU). The GPU budget of the whole script is 8 minutes.
PLAN = {
    # on a CPU the original setting's fp16 is emulated (minutes per step): the default alone
    "step_args": (["--steps", "5", "--warmup", "2"],
                  ["--tiny", "--steps", "1", "--warmup", "1", "--settings", "default"]),
    "memory_settings": ("none,layers3,all", "none"),  # a CPU measurement is minutes each
    "subjects": (4, 3),
    "train_steps": (20, 2),
    "timeout_s": ({"step": 120, "compile": 150, "memory": 90, "preprocess": 60, "train": 120},
                  {"step": 600, "compile": 0, "memory": 600, "preprocess": 300, "train": 600}),
}


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``; returns rc, seconds, the JSON lines it printed and the tail of its output."""
    start = time.perf_counter()
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO,
                             env=env)
        rc, out, err = res.returncode, res.stdout, res.stderr
    except subprocess.TimeoutExpired as exc:
        rc = "timeout"
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else (exc.stderr or "")
    lines = []
    for line in out.splitlines():
        if line.startswith("{"):
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                pass
    return {"cmd": " ".join(cmd), "rc": rc, "seconds": round(time.perf_counter() - start, 1),
            "results": lines, "tail": (out + err)[-2000:] if rc != 0 else ""}


def _damt(*args: str) -> list[str]:
    return [sys.executable, "-m", "damt.cli", *args]


def _device() -> dict[str, Any]:
    import torch  # noqa: PLC0415

    info: dict[str, Any] = {"torch": torch.__version__, "python": platform.python_version(),
                            "cuda": torch.cuda.is_available()}
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        info |= {"name": p.name, "total_memory_gib": p.total_memory / 2 ** 30,
                 "capability": f"{p.major}.{p.minor}", "cuda_version": torch.version.cuda}
    else:
        info |= {"name": "cpu", "cores": os.cpu_count()}
    return info


def _train_part(work: Path, cfg: Path, n_subjects: int, steps: int, timeout: dict[str, float],
                cpu: bool) -> dict[str, Any]:
    """A synthetic cohort, its cache, then ``torchrun --nproc_per_node 1 -m train``."""
    from damt.synth import make_cohort  # noqa: PLC0415

    cohort, cache, run = work / "cohort", work / "cache", work / "run"
    for p in (cache, run):
        shutil.rmtree(p, ignore_errors=True)
    if not cohort.is_dir():
        make_cohort(cohort, n_subjects=n_subjects, seed=0)
    part: dict[str, Any] = {"subjects": n_subjects}
    part["preprocess"] = _run(_damt("preprocess", str(cfg), "--input", f"synth={cohort}",
                                    "--cache", str(cache), "--workers", "0", "--quiet"),
                              timeout["preprocess"])
    if part["preprocess"]["rc"] != 0:
        return part
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
                "-m", "train", str(cfg), "--cache", str(cache), "--out", str(run), "--quiet",
                "--max-steps", str(steps), "--set", "train.epochs=1000", "--set",
                "train.checkpoint_every_epochs=1000", "--set", "train.log_every_steps=1"]
    if cpu:
        torchrun += ["--set", "loader.num_workers=0"]
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    part["train"] = _run(torchrun, timeout["train"], env=env)
    metrics = run / "metrics.jsonl"
    events = run / "events.jsonl"
    if metrics.is_file():
        lines = [json.loads(x) for x in metrics.read_text().splitlines()]
        part["steps"] = len(lines)
        part["loss_first"], part["loss_last"] = lines[0]["loss"], lines[-1]["loss"]
        part["samples_per_s_last"] = lines[-1].get("samples_per_s")
    if events.is_file():
        part["checkpointing"] = next((json.loads(x) for x in events.read_text().splitlines()
                                      if '"grad_checkpointing"' in x), None)
    return part


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "gpu_check_out")
    ap.add_argument("--cpu", action="store_true", help="the tiny CPU path (for CI)")
    args = ap.parse_args(argv)
    start = time.perf_counter()
    device = _device()
    cpu = args.cpu or not device["cuda"]
    i = 1 if cpu else 0
    timeout = PLAN["timeout_s"][i]
    cfg = TINY if cpu else FULL
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"mode": "cpu" if cpu else "gpu", "device": device,
                              "config": cfg.name, "batch": 2}
    step_args = PLAN["step_args"][i]
    report["bench_step"] = _run(_damt("bench", "step", str(cfg), *step_args), timeout["step"])
    report["bench_step_compile"] = (
        {"skipped": "CPU mode: torch.compile of the model takes minutes on a CPU"} if cpu else
        _run(_damt("bench", "step", str(cfg), *step_args, "--settings", "default", "--compile"),
             timeout["compile"]))
    report["memory_prediction"] = _run(_damt("bench", "memory", str(cfg),
                                             *(["--target", "cpu"] if cpu else [])), timeout["memory"])
    report["memory_measured"] = _run(_damt("bench", "memory", str(cfg), "--measure", "--settings",
                                           PLAN["memory_settings"][i]), timeout["memory"])
    report["train"] = _train_part(args.out / "work", cfg, PLAN["subjects"][i],
                                  PLAN["train_steps"][i], timeout, cpu)
    report["seconds"] = round(time.perf_counter() - start, 1)
    parts = [report[k] for k in ("bench_step", "bench_step_compile", "memory_prediction",
                                 "memory_measured")] + [report["train"].get("preprocess", {}),
                                                        report["train"].get("train", {})]
    report["ok"] = all(p.get("rc", 0) == 0 for p in parts if "skipped" not in p)
    path = args.out / "gpu_check.json"
    path.write_text(json.dumps(report, indent=1))
    print(json.dumps({"report": str(path), "ok": report["ok"], "seconds": report["seconds"],
                      "mode": report["mode"]}))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
