"""A briefly trained tiny DAMT run on the real subjects, shared by test_export.py and test_probe.py.

Preprocessing nine real subjects and training costs most of those tests' time, so it is done once
per session: the result is memoised here by pytest's session temp folder (a fixture defined in a
test module is private to it, and a module-level cache needs no conftest.py).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from damt.config import DamtConfig, load_config

SUBJECTS = ("sub-01", "sub-02", "sub-03", "sub-04", "sub-06", "sub-07", "sub-08", "sub-09")
STEPS = 2


@dataclass(frozen=True)
class TinyRun:
    root: Path          # the cohort copy (SUBJECTS_DIR layout, bert + SUBJECTS)
    cache: Path
    run_dir: Path
    cfg: DamtConfig


_RUNS: dict[str, TinyRun] = {}


def tiny_run(tmp_path_factory, data_dir: Path, repo: Path) -> TinyRun:
    """Preprocess bert + eight fs_training_data subjects with configs/tiny.yaml and train STEPS
    steps (a checkpoint is written at the stop)."""
    key = str(tmp_path_factory.getbasetemp())
    if key in _RUNS:
        return _RUNS[key]
    from preprocess.run import run_preprocess  # noqa: PLC0415
    from train.loop import train  # noqa: PLC0415

    base = tmp_path_factory.mktemp("tiny_run")
    root, cache, run_dir = base / "cohort", base / "cache", base / "run"
    shutil.copytree(data_dir / "fs_bert" / "bert", root / "bert")
    for sid in SUBJECTS:
        shutil.copytree(data_dir / "fs_training_data" / sid, root / sid)
    # data.cache_dir as `damt train --cache` sets it, so the run's saved config names its cache
    cfg = load_config(repo / "configs" / "tiny.yaml",
                      [f"data.inputs=['{root}']", f"data.cache_dir='{cache}'"])
    summary = run_preprocess(cfg, cache, workers=0, progress=False)
    assert summary.ok == 1 + len(SUBJECTS), summary.table()
    result = train(cfg, cache=cache, out=run_dir, max_steps=STEPS, progress=False)
    assert result.step == STEPS and result.checkpoint is not None, result
    _RUNS[key] = TinyRun(root, cache, run_dir, cfg)
    return _RUNS[key]
