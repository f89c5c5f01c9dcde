"""A full disk or a read-only cache during preprocess (issue 12, item 9): typed rows (``disk_full``,
``read_only``), no debris (staging stores, ``.manifest.parquet.*.tmp``), a non-zero exit, and a
rerun that finishes the job once the disk is fine. The faults are injected in-process (tests run
as root, so chmod cannot make a folder read-only): the write raises the OSError the kernel would.
"""

from __future__ import annotations

import errno

import pandas as pd
import pytest

import damt.cache.store as store
from damt.cache import read_manifest
from damt.cli import main
from damt.config import load_config
from damt.errors import CacheWriteError
from damt.synth import make_subject
from preprocess.run import run_preprocess


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk") / "cohort"
    for i in range(2):
        make_subject(root, f"sub-{i}", seed=i, shape=(48, 48, 48))
    return root


def _fail_store_writes(monkeypatch, code):
    """Every store write fails after its first array is on disk (a partial staging store)."""
    real = store.array_sha256

    def full(arr):
        raise OSError(code, f"simulated {errno.errorcode[code]}")

    monkeypatch.setattr(store, "array_sha256", full)
    return real


def _debris(cache):
    return [p for p in cache.rglob("*") if p.name.endswith(".tmp") or ".staging" in p.parts[-2:-1]]


@pytest.mark.parametrize("code, reason", [(errno.ENOSPC, "disk_full"), (errno.EROFS, "read_only")])
def test_store_write_fault_is_typed_and_leaves_no_debris(cohort, tmp_path, monkeypatch, code, reason):
    cfg = load_config(None, [f"data.inputs=['{cohort}']"])
    _fail_store_writes(monkeypatch, code)
    summary = run_preprocess(cfg, tmp_path / "cache", workers=0, progress=False)
    man = read_manifest(tmp_path / "cache")
    assert set(man["reason"]) == {reason} and summary.unwritten == 2
    assert "rerun" in man["message"][0]
    assert not list((tmp_path / "cache" / ".staging").iterdir())
    assert not _debris(tmp_path / "cache")
    monkeypatch.undo()  # space freed: the rows are retried and complete
    again = run_preprocess(cfg, tmp_path / "cache", workers=0, progress=False)
    assert again.processed == 2 and again.ok == 2


def test_cli_exits_non_zero_when_stores_cannot_be_written(cohort, tmp_path, monkeypatch, capsys):
    _fail_store_writes(monkeypatch, errno.ENOSPC)
    rc = main(["preprocess", "--input", str(cohort), "--cache", str(tmp_path / "cache"), "--workers", "0",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1 and "could not be written" in err and "Traceback" not in err


def test_manifest_write_on_a_full_disk_leaves_no_tmp(cohort, tmp_path, monkeypatch, capsys):
    cfg = load_config(None, [f"data.inputs=['{cohort}']"])
    run_preprocess(cfg, tmp_path / "cache", workers=0, progress=False)
    before = (tmp_path / "cache" / "manifest.parquet").read_bytes()
    (cohort / "sub-0" / "stats" / "aseg.stats").touch()  # a change: the manifest is rewritten
    real = pd.DataFrame.to_parquet

    def half_then_full(self, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"PAR1 partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", half_then_full)
    with pytest.raises(CacheWriteError, match="disk full"):
        run_preprocess(cfg, tmp_path / "cache", workers=0, progress=False)
    assert not _debris(tmp_path / "cache")
    assert (tmp_path / "cache" / "manifest.parquet").read_bytes() == before  # the old one, whole
    rc = main(["preprocess", "--input", str(cohort), "--cache", str(tmp_path / "cache"), "--workers", "0",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "disk full" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    monkeypatch.setattr(pd.DataFrame, "to_parquet", real)


def test_read_only_cache_folder_is_one_error(cohort, tmp_path, monkeypatch, capsys):
    import os

    real_open = os.open

    def read_only(path, flags, *args, **kwargs):
        if str(path).endswith(".lock"):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", read_only)
    rc = main(["preprocess", "--input", str(cohort), "--cache", str(tmp_path / "cache"), "--workers", "0",
               "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "cannot be written" in err and "Traceback" not in err
