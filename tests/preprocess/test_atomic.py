"""Atomicity: a process killed while it writes a store leaves nothing visible, and a rerun
completes with stores identical to an uninterrupted build. Also the dask LocalCluster path."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from damt.cache import open_subject, read_manifest, read_store_attrs
from damt.config import load_config
from preprocess.run import run_preprocess

KILLED_RUN = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import damt.cache.store as store

    def stalled_commit(staging, final):
        # every array and attribute of the store is written; stop just before the rename
        Path(sys.argv[3] + ".tmp").write_text(str(staging))
        Path(sys.argv[3] + ".tmp").rename(sys.argv[3])
        time.sleep(600)

    store._commit = stalled_commit
    from damt.config import load_config
    from preprocess.run import run_preprocess
    cfg = load_config(None, [f"data.inputs=['{sys.argv[1]}']"])
    run_preprocess(cfg, Path(sys.argv[2]), workers=0, progress=False)
""")


@pytest.fixture()
def one_subject(data_dir, tmp_path):
    root = tmp_path / "cohort"
    shutil.copytree(data_dir / "fs_bert" / "bert", root / "bert")
    return root


def _arrays_and_attrs(path):
    g = open_subject(path)
    return {k: g[k][...] for k in ("image", "atlas")}, read_store_attrs(path)


def test_killed_mid_write_leaves_nothing_and_rerun_is_identical(one_subject, tmp_path):
    cache = tmp_path / "cache"
    signal_file = tmp_path / "staged"
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, str(one_subject), str(cache), str(signal_file)])
    try:
        deadline = time.monotonic() + 120
        while not signal_file.exists():
            assert proc.poll() is None, "the run ended before it reached the commit"
            assert time.monotonic() < deadline, "the run never reached the commit"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    staged = signal_file.read_text()
    assert os.path.isdir(staged)                                       # the debris is there ...
    assert not (cache / "subjects" / "bert.zarr").exists()             # ... but nothing is visible
    assert not (cache / "manifest.parquet").exists()

    cfg = load_config(None, [f"data.inputs=['{one_subject}']"])
    summary = run_preprocess(cfg, cache, workers=0, progress=False)
    assert summary.ok == 1 and not os.path.exists(staged)              # debris removed at start
    assert list((cache / ".staging").iterdir()) == []

    clean = tmp_path / "clean"
    run_preprocess(cfg, clean, workers=0, progress=False)
    (a1, attrs1), (a2, attrs2) = (_arrays_and_attrs(c / "subjects" / "bert.zarr") for c in (cache, clean))
    for k in a1:
        np.testing.assert_array_equal(a1[k], a2[k])
    assert attrs1 == attrs2


@pytest.mark.slow
def test_local_dask_cluster_matches_in_process(one_subject, data_dir, tmp_path):
    shutil.copytree(data_dir / "fs_training_data" / "sub-05", one_subject / "sub-05")
    cfg = load_config(None, [f"data.inputs=['{one_subject}']"])
    s = run_preprocess(cfg, tmp_path / "dask", workers=2, progress=True)
    run_preprocess(cfg, tmp_path / "local", workers=0, progress=False)
    assert s.ok == 1 and s.failed == 1 and s.by_reason == {"missing_parcellation": 1}
    m1, m2 = (read_manifest(tmp_path / c).drop(columns=["seconds", "finished_at"]) for c in ("dask", "local"))
    assert m1.equals(m2)
    (a1, attrs1), (a2, attrs2) = (_arrays_and_attrs(tmp_path / c / "subjects" / "bert.zarr")
                                  for c in ("dask", "local"))
    np.testing.assert_array_equal(a1["image"], a2["image"])
    assert attrs1 == attrs2
