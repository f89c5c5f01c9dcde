"""Stopping ``damt preprocess`` keeps finished work: Ctrl-C (SIGINT to the whole process group, as
a terminal sends it) and SIGTERM write the finished rows and print one line; after ``kill -9`` or a
lost manifest the complete stores are adopted (inputs re-hashed, nothing rebuilt); a store names its
cohort, and another cohort's subject of the same id never overwrites it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from damt.cache import read_manifest
from damt.config import load_config
from damt.synth import make_subject
from preprocess.run import run_preprocess

N_SUBJECTS = 8
SHAPE = (80, 80, 80)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("interrupt") / "c8"
    for i in range(N_SUBJECTS):
        make_subject(root, f"s{i:02d}", seed=100 + i, shape=SHAPE)
    return root


@pytest.fixture(scope="module")
def small(tmp_path_factory) -> Path:
    """Four quick subjects, for the in-process runs."""
    root = tmp_path_factory.mktemp("interrupt") / "c4"
    for i in range(4):
        make_subject(root, f"s{i:02d}", seed=200 + i, shape=(64, 64, 64))
    return root


def _complete(cache: Path) -> dict[str, int]:
    """Store name -> inode of every complete store (zarr.json with status complete)."""
    out = {}
    for meta in (cache / "subjects").glob("*.zarr/zarr.json"):
        try:
            if json.loads(meta.read_text())["attributes"].get("status") == "complete":
                out[meta.parent.name] = meta.parent.stat().st_ino
        except (OSError, ValueError, KeyError):
            pass  # being written
    return out


def _start(cohort: Path, cache: Path, repo: Path, *args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "damt.cli", "preprocess", str(repo / "configs" / "tiny.yaml"),
           "--input", str(cohort), "--cache", str(cache), "--quiet", *args]
    # a session of its own: the signal goes to the driver and its dask workers, like a terminal's
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=repo, env=os.environ | {"PYTHONPATH": str(repo)})


def _signal_after(proc: subprocess.Popen, cache: Path, n: int, sig: int) -> tuple[dict, str]:
    """Send ``sig`` to the run's process group once ``n`` stores are complete; (stores, stderr)."""
    deadline = time.monotonic() + 300
    try:
        while len(_complete(cache)) < n:
            assert proc.poll() is None, f"the run ended first: {proc.communicate()}"
            assert time.monotonic() < deadline, "no store completed in time"
            time.sleep(0.05)
        os.killpg(proc.pid, sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return _complete(cache), err


def _cfg(*inputs):
    return load_config(None, [f"data.inputs={[str(i) for i in inputs]}"])


@pytest.mark.slow
def test_ctrl_c_saves_finished_rows_in_one_line_and_rerun_rebuilds_none(cohort, tmp_path, repo):
    cache = tmp_path / "cache"
    proc = _start(cohort, cache, repo, "--workers", "1", "--set", "dask.manifest_every_s=600")
    stores, err = _signal_after(proc, cache, 2, signal.SIGINT)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("damt preprocess: interrupted (SIGINT)") and "run the same command again" in lines[0]
    # the rows finished before the signal were written by the interrupt (manifest_every_s is 600)
    man = read_manifest(cache)
    assert 1 <= len(man) < N_SUBJECTS and (man["status"] == "ok").all()
    assert set(man["store"].str.split("/").str[-1]) <= set(stores)
    summary = run_preprocess(_cfg(cohort), cache, workers=0, progress=False)
    assert summary.ok == N_SUBJECTS
    after = _complete(cache)
    assert {k: after[k] for k in stores} == stores        # not one finished store was rebuilt
    assert summary.processed == N_SUBJECTS - len(man)     # the saved rows were skipped outright


def test_sigterm_saves_finished_rows(small, tmp_path, repo):
    cache = tmp_path / "cache"
    proc = _start(small, cache, repo, "--workers", "0", "--set", "dask.manifest_every_s=600")
    _, err = _signal_after(proc, cache, 1, signal.SIGTERM)
    assert proc.returncode == 143 and err.strip().startswith("damt preprocess: interrupted (SIGTERM)"), err
    assert len(err.strip().splitlines()) == 1
    assert (read_manifest(cache)["status"] == "ok").sum() >= 1


def test_kill_9_then_rerun_adopts_complete_stores_after_rehashing(small, tmp_path, repo):
    cache = tmp_path / "cache"
    proc = _start(small, cache, repo, "--workers", "0", "--set", "dask.manifest_every_s=600")
    stores, _ = _signal_after(proc, cache, 2, signal.SIGKILL)
    assert not (cache / "manifest.parquet").exists() and len(stores) >= 2
    summary = run_preprocess(_cfg(small), cache, workers=0, progress=False)
    assert summary.ok == 4 and f"{len(stores)} store(s) the manifest lacked were kept" in summary.table()
    after = _complete(cache)
    assert {k: after[k] for k in stores} == stores
    man = read_manifest(cache).set_index("subject_id")
    assert (man["status"] == "ok").all() and (man["input_stat"] != "").all()


def test_adoption_requires_the_same_inputs_and_config(tmp_path):
    """A lost manifest: stores whose inputs still hash to their attrs are kept; a subject whose
    bytes changed, and every subject under another preprocess config, is rebuilt."""
    root = tmp_path / "cohort"
    make_subject(root, "s00", seed=76, shape=(64, 64, 64))
    make_subject(root, "s01", seed=77, shape=(64, 64, 64))
    cache = tmp_path / "cache"
    run_preprocess(_cfg(root), cache, workers=0, progress=False)
    before = _complete(cache)
    (cache / "manifest.parquet").unlink()
    make_subject(root, "s01", seed=78, shape=(64, 64, 64))          # other bytes for s01
    s = run_preprocess(_cfg(root), cache, workers=0, progress=False)
    after = _complete(cache)
    assert s.ok == 2 and after["s00.zarr"] == before["s00.zarr"] and after["s01.zarr"] != before["s01.zarr"]
    (cache / "manifest.parquet").unlink()
    cfg = load_config(None, [f"data.inputs=['{root}']", "preprocess.percentile_high=99.5"])
    s = run_preprocess(cfg, cache, workers=0, progress=False)
    assert s.ok == 2 and not set(_complete(cache).items()) & set(after.items())


def test_lost_manifest_store_of_another_cohort_is_never_overwritten(tmp_path):
    """Cohort B built subject X; the manifest is lost. Cohort A's X is a duplicate (named B's),
    B's store keeps its inode and attrs, and B's X is adopted when B is given again."""
    a, b = tmp_path / "A", tmp_path / "B"
    make_subject(b, "X", seed=1, shape=(64, 64, 64))
    make_subject(a, "X", seed=2, shape=(64, 64, 64))
    make_subject(a, "Y", seed=3, shape=(64, 64, 64))
    cache = tmp_path / "cache"
    run_preprocess(_cfg(f"B={b}"), cache, workers=0, progress=False)
    store = cache / "subjects" / "X.zarr"
    ino, attrs = store.stat().st_ino, (store / "zarr.json").read_text()
    (cache / "manifest.parquet").unlink()

    s = run_preprocess(_cfg(f"A={a}"), cache, workers=0, progress=False)
    man = read_manifest(cache).set_index(["cohort", "subject_id"])
    assert man.loc[("A", "X"), "reason"] == "duplicate_subject_id" and "'B'" in man.loc[("A", "X"), "message"]
    assert man.loc[("A", "Y"), "status"] == "ok" and s.failed == 1
    assert store.stat().st_ino == ino and (store / "zarr.json").read_text() == attrs

    (cache / "manifest.parquet").unlink()                # A listed first: B's store still owns X
    s = run_preprocess(_cfg(f"A={a}", f"B={b}"), cache, workers=0, progress=False)
    man = read_manifest(cache).set_index(["cohort", "subject_id"])
    assert man.loc[("B", "X"), "status"] == "ok" and man.loc[("A", "X"), "reason"] == "duplicate_subject_id"
    assert store.stat().st_ino == ino and (store / "zarr.json").read_text() == attrs
