"""Hostile inputs (issue 12): nothing in a subject folder can hang, stop or block a cohort.

One cohort holds every hostile case of tests/preprocess/hostile.py, the bad cases of damt.synth,
two good subjects and a symlink loop at the cohort root. Every subject ends with its typed reason
(no internal_error), the good ones are ok, and a second run reads nothing and rewrites nothing.
A SIGALRM guard turns a hang (a FIFO opened for reading) into a failure instead of a stuck test.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from hostile import HOSTILE, SHAPE, hostile_id, make_hostile_cohort
from test_bad_inputs import EXPECTED as BAD_EXPECTED
from test_bad_inputs import OK_CASES as BAD_OK

from damt.cache import open_subject, read_manifest
from damt.config import load_config
from damt.errors import REASONS
from damt.synth import BAD_CASES, bad_subject_id, make_bad_case, make_subject
from preprocess.run import run_preprocess

GOOD = ("good-1", "good-2", "float-twin")  # float-twin: hostile-float-parc with its int32 parcellation


class Hung(BaseException):
    """Not an Exception: no error boundary of the code under test may turn it into a failed row."""


@contextlib.contextmanager
def deadline(seconds: int):
    """Fail instead of hanging forever (a blocking open of a FIFO, an endless /dev/zero read)."""
    def hung(signum, frame):
        raise Hung(f"preprocess did not finish within {seconds} s: something hangs")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def expected_reasons() -> dict[str, str]:
    """subject id -> "ok" or its failure reason, with preprocess.unknown_labels: fail."""
    out = {hostile_id(k): r for k, r in HOSTILE.items()}
    out |= {bad_subject_id(k): BAD_EXPECTED[k][0] for k in BAD_EXPECTED}
    out |= {bad_subject_id(k): "ok" for k in BAD_OK if k not in BAD_EXPECTED}
    return out | {sid: "ok" for sid in GOOD}


@pytest.fixture(scope="module")
def hostile_cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile") / "cohort"
    make_hostile_cohort(root)
    for kind in BAD_CASES:
        make_bad_case(root, kind)
    for i, sid in enumerate(GOOD[:2]):
        make_subject(root, sid, seed=10 + i, shape=(64, 64, 64))
    make_subject(root, "float-twin", seed=0, shape=SHAPE)
    os.symlink("loop", root / "loop")  # a symlink loop at the cohort root: discovery must go on
    return root


def _cfg(root):
    return load_config(None, [f"data.inputs=['{root}']", "preprocess.unknown_labels=fail"])


@pytest.fixture(scope="module")
def in_process(hostile_cohort, tmp_path_factory):
    cache = tmp_path_factory.mktemp("hostile_cache") / "cache"
    with deadline(120):
        summary = run_preprocess(_cfg(hostile_cohort), cache, workers=0, progress=False)
    return summary, cache, read_manifest(cache).set_index("subject_id")


@pytest.mark.parametrize("sid", sorted(expected_reasons()))
def test_every_subject_ends_with_its_typed_reason(in_process, sid):
    _, _, man = in_process
    want = expected_reasons()[sid]
    row = man.loc[sid]
    if want == "ok":
        assert row["status"] == "ok", row["message"]
    else:
        assert (row["status"], row["reason"]) == ("failed", want), row["message"]
        assert row["reason"] in REASONS and row["store"] == ""


def test_no_internal_error_and_nothing_but_the_subjects(in_process):
    summary, _, man = in_process
    assert "internal_error" not in summary.by_reason
    assert set(man.index) == set(expected_reasons())  # the loop at the root is no subject


@pytest.mark.parametrize("kind, words", [
    ("bomb", "1000x1000x1000"), ("huge-header", "preprocess.max_voxels = 134,217,728"),
    ("fifo-image", "FIFO"), ("zero-image", "character device"), ("fifo-stats", "aseg.stats is a FIFO"),
    ("dangling-stats", "dangling symbolic link"), ("loop-stats", "symbolic link loop"),
    ("nifti-as-mgz", "rename it .nii.gz"), ("rgb", "not a real scalar"), ("complex", "complex-valued"),
    ("binary-parc", "1-bit"), ("huge-ids", "beyond int32"), ("constant-brain", "every brain voxel"),
])
def test_messages_say_what_is_wrong(in_process, kind, words):
    _, _, man = in_process
    assert words in man.loc[hostile_id(kind), "message"]


def test_a_float_parcellation_gives_what_its_int_twin_gives(in_process):
    _, cache, man = in_process
    a, b = (open_subject(cache / man.loc[sid, "store"]) for sid in (hostile_id("float-parc"), "float-twin"))
    for name in ("atlas", "image", "morphometry", "morphometry_present"):
        assert np.array_equal(a[name][...], b[name][...]), name


def test_a_second_run_reads_nothing_and_rewrites_nothing(in_process, hostile_cohort):
    _, cache, _ = in_process
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    with deadline(120):
        summary = run_preprocess(_cfg(hostile_cohort), cache, workers=0, progress=False)
    assert summary.processed == 0 and not summary.manifest_written
    after = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    assert after == before


@pytest.mark.slow
def test_hostile_cohort_on_one_dask_worker(hostile_cohort, tmp_path, repo):
    """The issue's acceptance run: ``damt preprocess --workers 1`` ends by itself, every good subject
    ok, every bad one a typed failed row; the second run neither crashes nor rewrites anything."""
    cache = tmp_path / "cache"
    cmd = [sys.executable, "-m", "damt.cli", "preprocess", "--input", str(hostile_cohort), "--cache", str(cache),
           "--workers", "1", "--quiet", "--set", "preprocess.unknown_labels=fail"]
    env = os.environ | {"PYTHONPATH": str(repo)}
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    man = read_manifest(cache).set_index("subject_id")
    for sid, want in expected_reasons().items():
        got = "ok" if man.loc[sid, "status"] == "ok" else man.loc[sid, "reason"]
        assert got == want, (sid, man.loc[sid, "message"])
    assert "internal_error" not in set(man["reason"])
    before = {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()}
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "processed this run                 0" in second.stdout
    assert {p: p.stat().st_mtime_ns for p in cache.rglob("*") if p.is_file()} == before
