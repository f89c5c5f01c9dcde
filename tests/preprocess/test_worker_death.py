"""A subject that kills its worker (issue 12, item 1): with one worker, the others still complete.

The killer is a real decompression bomb (a ~1 MB .mgz declaring 1000³ voxels) let through the
header check by a raised ``preprocess.max_voxels``, on a worker with a 0.5 GiB memory limit: the
nanny kills the worker while nibabel decompresses it. ``allowed-failures: 0`` makes the scheduler
give up on the first death, so the test sees both paths in ~2 deaths: the subjects queued beside
the bomb end as KilledWorker bystanders and complete when run alone; the bomb dies alone too and
becomes a ``worker_died`` row naming the limit. A second run keeps that row without reading.
"""

from __future__ import annotations

import dask
import distributed  # noqa: F401 - loads its config defaults before dask.config.set below
import pytest
from hostile import write_bomb

from damt.cache import read_manifest
from damt.config import load_config
from damt.synth import make_subject
from preprocess.run import limits_changed, run_preprocess

pytestmark = pytest.mark.slow


def test_a_worker_killing_subject_costs_one_row(tmp_path):
    root = tmp_path / "cohort"
    for i, sid in enumerate(("good-1", "good-2")):
        make_subject(root, sid, seed=i, shape=(48, 48, 48))
    make_subject(root, "a-bomb", seed=5, shape=(48, 48, 48))  # first in order: the others queue behind it
    write_bomb(root / "a-bomb" / "mri" / "brainmask.mgz")
    cfg = load_config(None, [f"data.inputs=['{root}']", "preprocess.max_voxels=2000000000",
                             "dask.memory_limit_gb=0.5"])
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        summary = run_preprocess(cfg, tmp_path / "cache", workers=1, progress=False)
    man = read_manifest(tmp_path / "cache").set_index("subject_id")
    assert man.loc["good-1", "status"] == "ok" and man.loc["good-2", "status"] == "ok", man["message"].tolist()
    bomb = man.loc["a-bomb"]
    assert bomb["reason"] == "worker_died", bomb["message"]
    assert "worker memory limit 0.5 GiB" in bomb["message"] and "preprocess.max_voxels" in bomb["message"]
    assert summary.ok == 2 and "internal_error" not in summary.by_reason
    # the row is kept while nothing changes: the bomb is not fed to a worker again
    again = run_preprocess(cfg, tmp_path / "cache", workers=1, progress=False)
    assert again.processed == 0 and not again.manifest_written


def test_limit_rows_are_retried_when_their_limit_changes():
    cfg = load_config(None, ["dask.memory_limit_gb=0.5"])
    died = {"reason": "worker_died", "message": "x: ... (worker memory limit 0.5 GiB (dask.memory_limit_gb)) ..."}
    large = {"reason": "too_large", "message": "more than preprocess.max_voxels = 134,217,728; refused"}
    stale = limits_changed(cfg, None)
    assert not stale(died) and not stale(large) and not stale({"reason": "not_a_file", "message": ""})
    assert limits_changed(load_config(None, ["dask.memory_limit_gb=1"]), None)(died)
    assert limits_changed(load_config(None, ["preprocess.max_voxels=1000000000"]), None)(large)
    assert limits_changed(cfg, "tcp://elsewhere:8786")(died)  # an external cluster's memory is unknown
