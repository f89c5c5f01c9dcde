"""``damt demo``: the pipeline end to end on the embedded synthetic cohort (or the user's own).

Preprocess into ``<out>/cache``, train a short run of the tiny model (configs/tiny.yaml, shipped
in the package, unless a config is given) into ``<out>/run`` with a checkpoint at its end, and
print the per-task losses of its first and last steps. A few minutes on a 2-core CPU. App layer:
it joins the two stages, which never import each other.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import replace
from pathlib import Path

from damt.cache import Cache, read_store_attrs
from damt.config import DamtConfig
from preprocess.run import run_preprocess

DEMO_SUBJECTS = 6
DEMO_STEPS = 18  # 6 epochs of the six demo subjects at batch 2: atlas and MIM visibly fall, in under 3 min


def run_demo(cfg: DamtConfig, out: Path, inputs: list[str] | None = None, workers: int | None = None,
             steps: int | None = None) -> int:
    """Make (or take) a cohort, preprocess it into ``out/cache``, print what was built, train
    ``steps`` steps into ``out/run`` and print the per-task loss table."""
    out.mkdir(parents=True, exist_ok=True)
    if not inputs:
        from damt.synth import make_cohort  # noqa: PLC0415

        cohort = out / "demo_cohort"
        if not cohort.is_dir():
            make_cohort(cohort, n_subjects=DEMO_SUBJECTS, seed=0)
        inputs = [f"demo={cohort}"]
        print(f"demo cohort: {DEMO_SUBJECTS} synthetic FreeSurfer-like subjects in {cohort}")
    cfg = replace(cfg, data=replace(cfg.data, inputs=list(inputs)))
    cache = out / "cache"
    summary = run_preprocess(cfg, cache, workers=workers)
    print(summary.table())
    ok = Cache(cache).ok_subjects()
    if len(ok):
        attrs = read_store_attrs(cache / ok["store"].iloc[0])
        facts = {k: attrs[k] for k in ("subject_id", "spacing_mm", "original_axcodes", "axcodes",
                                         "resampled_shape", "percentile_values", "image_source")}
        print(f"first store: {cache / ok['store'].iloc[0]}\n{json.dumps(facts, indent=1)}")
    if summary.ok == 0:
        return 1
    return _train(cfg, cache, out / "run", len(ok), steps or DEMO_STEPS)


def _train(cfg: DamtConfig, cache: Path, run_dir: Path, n_subjects: int, steps: int) -> int:
    """A fresh short run (the demo's own folder is replaced), then the loss table."""
    from train.loop import train  # noqa: PLC0415  (torch and the model load only when needed)

    per_epoch = math.ceil(n_subjects / cfg.train.batch_per_device)
    cfg = replace(cfg, train=replace(cfg.train, epochs=math.ceil(steps / per_epoch),
                                     out_dir=str(run_dir)))
    shutil.rmtree(run_dir, ignore_errors=True)
    print(f"training {steps} steps of the tiny model on {n_subjects} subjects into {run_dir}")
    result = train(cfg, cache=cache, out=run_dir, max_steps=steps)
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    print(loss_table(lines[:per_epoch], lines[-per_epoch:]))
    print(f"checkpoint: {result.checkpoint}\nmetrics: {run_dir / 'metrics.jsonl'}; "
          f"TensorBoard: tensorboard --logdir {run_dir}")
    return 0


def loss_table(first: list[dict], last: list[dict]) -> str:
    """Per-task losses averaged over two groups of metrics.jsonl records (the first and the last
    epoch: every subject once in each, so the two columns compare like with like)."""

    def mean(rows: list[dict], key: str) -> str:
        values = [r[key] for r in rows if r.get(key) is not None]
        return f"{sum(values) / len(values):.4f}" if values else "n/a"

    def span(rows: list[dict]) -> str:
        return f"steps {rows[0]['step']}-{rows[-1]['step']}"

    keys = ["loss"] + sorted(k for k in first[0] if k.startswith("loss_"))
    out = [f"{'task':<14}{span(first):>14}{span(last):>14}"]
    for k in keys:
        name = "total" if k == "loss" else k[len("loss_"):]
        out.append(f"{name:<14}{mean(first, k):>14}{mean(last, k):>14}")
    return "\n".join(out)
