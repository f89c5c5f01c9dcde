"""``damt demo``: the pipeline end to end on the embedded synthetic cohort (or the user's own).

Until the trainer exists the demo preprocesses and prints the cache summary and one store's facts.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from damt.cache import read_store_attrs
from damt.config import DamtConfig
from preprocess.manifest import ok_subjects
from preprocess.run import run_preprocess

DEMO_SUBJECTS = 6


def run_demo(cfg: DamtConfig, out: Path, inputs: list[str] | None = None, workers: int | None = None) -> int:
    """Make (or take) a cohort, preprocess it into ``out/cache`` and print what was built."""
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
    ok = ok_subjects(cache)
    if len(ok):
        attrs = read_store_attrs(cache / ok["store"].iloc[0])
        facts = {k: attrs[k] for k in ("subject_id", "spacing_mm", "original_axcodes", "axcodes",
                                         "resampled_shape", "percentile_values", "image_source")}
        print(f"first store: {cache / ok['store'].iloc[0]}\n{json.dumps(facts, indent=1)}")
    return 0 if summary.ok > 0 else 1
