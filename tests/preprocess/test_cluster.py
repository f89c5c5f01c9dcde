"""Preprocessing on a dask.distributed cluster given by address: a transient I/O error is retried,
a deterministic input error is not, and a lost worker is tolerated. The manifest is still written
by the driver alone."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from distributed import WorkerPlugin

from damt.cache import read_manifest
from damt.config import load_config
from preprocess.run import run_preprocess

pytestmark = pytest.mark.slow


def _inject(log: str, flaky_subject: str, mode: str) -> None:
    """Runs inside every worker process: wrap the pipeline's file reader so that the first read of
    ``flaky_subject`` fails (a transient EIO, or the worker process dying), and log every read."""
    import os

    import preprocess.subject as ps
    from damt.errors import TransientIOError

    original = ps.load_inputs

    def flaky(inp, cfg):
        logfile = Path(log)
        first = not any(line == inp.subject_id for line in
                        (logfile.read_text().splitlines() if logfile.exists() else []))
        with open(logfile, "a") as f:
            f.write(inp.subject_id + "\n")
        if inp.subject_id == flaky_subject and first:
            if mode == "kill":
                os._exit(1)  # the worker process dies mid-task
            raise TransientIOError(f"{inp.image}: simulated EIO on a network file system")
        return original(inp, cfg)

    ps.load_inputs = flaky


class _Inject(WorkerPlugin):
    """Run :func:`_inject` in every worker, restarted ones too."""

    def __init__(self, log: str, flaky_subject: str, mode: str):
        self.args = (log, flaky_subject, mode)

    def setup(self, worker) -> None:
        _inject(*self.args)


@pytest.fixture()
def cohort(data_dir, tmp_path):
    root = tmp_path / "cohort"
    for sid in ("sub-02", "sub-05"):
        shutil.copytree(data_dir / "fs_training_data" / sid, root / sid)
    shutil.copytree(data_dir / "fs_bert" / "bert", root / "bert")
    return root


@pytest.mark.parametrize("mode", ["transient", "kill"])
def test_cluster_retries_transient_errors_only(cohort, tmp_path, mode):
    from dask.distributed import Client, LocalCluster

    log = tmp_path / "reads.log"
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        # a worker plugin, so a worker restarted after a crash gets the same reader
        client.register_plugin(_Inject(str(log), "bert", mode))
        cfg = load_config(None, [f"data.inputs=['{cohort}']"])
        summary = run_preprocess(cfg, tmp_path / "cache", scheduler=cluster.scheduler_address, progress=False)
    man = read_manifest(tmp_path / "cache").set_index("subject_id")
    reads = log.read_text().splitlines()
    assert man.loc["bert", "status"] == "ok"
    assert man.loc["sub-05", "reason"] == "missing_parcellation"
    assert summary.ok == 2 and summary.failed == 1
    # transient: failed once, retried once, then ok; kill: the worker died inside bert's task, the
    # nanny restarted it and the scheduler ran the task again
    assert reads.count("bert") == 2
    assert reads.count("sub-05") == 1                     # a deterministic error is never retried


def test_transient_error_that_persists_becomes_a_failed_row(cohort, tmp_path):
    from dask.distributed import Client, LocalCluster

    def always_eio():
        import preprocess.subject as ps
        from damt.errors import TransientIOError

        def broken(inp, cfg):
            raise TransientIOError(f"{inp.image}: simulated EIO")
        ps.load_inputs = broken

    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client:
        client.run(always_eio)
        cfg = load_config(None, [f"data.inputs=['{cohort}']", "dask.retries=1"])
        run_preprocess(cfg, tmp_path / "cache", scheduler=cluster.scheduler_address, progress=False)
    man = read_manifest(tmp_path / "cache").set_index("subject_id")
    assert (man.loc[["bert", "sub-02"], "reason"] == "transient_io").all()
    assert "simulated EIO" in man.loc["bert", "message"]
