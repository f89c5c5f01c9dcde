"""DDP with 2 CPU processes over gloo, on a real two-subject cache (docs/scale-out.md).

Two subjects make an epoch of one step both for 2 ranks x 1 sample and for 1 process x 2 samples,
with the same global batch every step, so the two runs must give the same parameters. The runs
(a few tiny steps each, every process single-threaded) are made once for the module:

* S: one process, batch 2, 2 steps (the reference);
* D: two ranks, batch 1, 3 steps, a constant inf added to rank 1's loss at step 3;
* R: two ranks, stopped by a SIGTERM to rank 1 alone after step 1, then resumed to step 2.
"""

from __future__ import annotations

import shutil
import socket
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from ddp_worker import run_rank

SUBJECTS = ("sub-01", "sub-02")
# the negatives gathered across ranks: without them NT-Xent differs from one process's; no
# stochastic depth: its per-sample draws come from each process's own generator, so one process
# of batch 2 and two ranks of batch 1 would drop different blocks
OVERRIDES = ["train.epochs=4", "tasks.contrastive_gather=true", "model.drop_path_rate=0.0"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launch(base: Path, name: str, world: int, cache: Path, repo: Path, batch: int,
            max_steps: int | None, out: Path | None = None, resume: bool = False,
            **inject) -> list[dict]:
    results = base / f"results_{name}"
    results.mkdir()
    job = {"repo": str(repo), "cache": str(cache), "out": str(out or base / name),
           "results": str(results), "resume": resume, "max_steps": max_steps,
           "overrides": [*OVERRIDES, f"train.batch_per_device={batch}"], **inject}
    mp.spawn(run_rank, args=(world, _free_port(), job), nprocs=world, join=True)
    return [torch.load(results / f"rank{r}.pt", weights_only=False) for r in range(world)]


@dataclass(frozen=True)
class Runs:
    single: list[dict]
    ddp: list[dict]
    stopped: list[dict]
    resumed: list[dict]
    ddp_dir: Path
    resume_dir: Path
    stopped_checkpoints: list[str]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, data_dir, repo) -> Runs:
    from damt.config import load_config  # noqa: PLC0415
    from preprocess.run import run_preprocess  # noqa: PLC0415

    base = tmp_path_factory.mktemp("ddp")
    root, cache = base / "cohort", base / "cache"
    for sid in SUBJECTS:
        shutil.copytree(data_dir / "fs_training_data" / sid, root / sid)
    cfg = load_config(repo / "configs" / "tiny.yaml", [f"data.inputs=['{root}']"])
    summary = run_preprocess(cfg, cache, workers=0, progress=False)
    assert summary.ok == len(SUBJECTS), summary.table()
    single = _launch(base, "single", 1, cache, repo, batch=2, max_steps=2)
    ddp = _launch(base, "ddp", 2, cache, repo, batch=1, max_steps=3, inf_rank=1, inf_step=3)
    stopped = _launch(base, "resume", 2, cache, repo, batch=1, max_steps=None,
                      sigterm_rank=1, sigterm_step=1)
    stopped_checkpoints = sorted(p.name for p in (base / "resume" / "checkpoints").iterdir())
    resumed = _launch(base, "resumed", 2, cache, repo, batch=1, max_steps=2,
                      out=base / "resume", resume=True)
    return Runs(single, ddp, stopped, resumed, base / "ddp", base / "resume", stopped_checkpoints)


def _differences(a: dict, b: dict, rtol: float = 0.0, atol: float = 0.0) -> list[str]:
    assert a.keys() == b.keys()
    return [k for k in a if not torch.allclose(a[k].double(), b[k].double(), rtol=rtol, atol=atol)]


@pytest.mark.slow
def test_parameters_stay_identical_across_ranks(runs):
    r0, r1 = runs.ddp
    assert r0["world_size"] == r1["world_size"] == 2
    assert _differences(r0["initial"], r1["initial"]) == []
    for s0, s1 in zip(r0["steps"], r1["steps"]):
        assert _differences(s0["params"], s1["params"]) == []  # bitwise


@pytest.mark.slow
def test_two_ranks_equal_one_process_at_the_same_global_batch(runs):
    single, (r0, r1) = runs.single[0], runs.ddp
    assert single["world_size"] == 1
    for i in range(2):
        one, a, b = single["steps"][i], r0["steps"][i], r1["steps"][i]
        # gradients are averaged over ranks: the norm is the global batch's on both ranks
        assert a["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
        assert b["grad_norm"] == pytest.approx(one["grad_norm"], rel=1e-4)
        # each rank's loss is the mean over its half of the global batch (NT-Xent included,
        # its negatives gathered), so the two ranks' mean is the one-process loss
        for task, value in one["losses"].items():
            mean = (a["losses"][task] + b["losses"][task]) / 2
            assert mean == pytest.approx(value, rel=1e-4), task
        # the gradients applied are the global batch's, up to float32 summation order (largest
        # in the atlas decoder's convolutions, whose gradients are ~1e-5 of the whole: ~3e-3 of
        # their own size there, ~1.5e-5 over all parameters)
        ga, g1 = r0["grads"][i], single["grads"][i]
        assert ga.keys() == g1.keys()
        errs = {n: float((ga[n] - g1[n]).double().norm()) for n in g1}
        whole = sum(float(g.double().norm()) ** 2 for g in g1.values()) ** 0.5
        assert sum(e ** 2 for e in errs.values()) ** 0.5 <= 1e-4 * whole, i
        for name, err in errs.items():
            assert err <= 1e-2 * float(g1[name].double().norm()) + 1e-9, (i, name, err)
    # after one AdamW step the parameters agree elementwise; after the second, AdamW's division
    # by sqrt(v) magnifies float32 noise in near-zero gradient entries, so they are compared
    # relative to the size of the update, per tensor
    init, one = single["initial"], single["steps"]
    assert _differences(one[0]["params"], r0["steps"][0]["params"], rtol=1e-5, atol=1e-6) == []
    for name, p in one[1]["params"].items():
        moved = float((p - init[name]).double().norm())
        err = float((p - r0["steps"][1]["params"][name]).double().norm())
        assert err <= 1e-2 * moved + 1e-7, (name, err, moved)


@pytest.mark.slow
def test_gradients_match_ddp_bucket_layout(runs):
    """Every gradient is laid out like its DDP bucket view: no "Grad strides do not match bucket
    view strides" (a reducer copy of that gradient on every step). The atlas decoder once held
    channels-last weights; parameters are now contiguous whatever layout the activations use."""
    for r in (*runs.single, *runs.ddp):
        assert r["warnings"] is not None
        assert not [w for w in r["warnings"] if "bucket view strides" in w], r["warnings"]


@pytest.mark.slow
def test_inf_on_one_rank_is_skipped_by_both(runs):
    for r in runs.ddp:
        assert [s["applied"] for s in r["steps"]] == [True, True, False]
        assert _differences(r["steps"][1]["params"], r["steps"][2]["params"]) == []
    assert runs.ddp[0]["steps"][2]["loss"] != float("inf")  # rank 0's own loss was finite
    events = (runs.ddp_dir / "events.jsonl").read_text()
    assert '"skipped_step"' in events and '"step": 3' in events


@pytest.mark.slow
def test_sigterm_on_one_rank_stops_both_and_rank0_saves(runs):
    for r in runs.stopped:
        assert r["step"] == 1 and r["stopped_by"] == "SIGTERM"
        assert len(r["steps"]) == 1
    assert runs.stopped_checkpoints == ["step_000000001"]  # before the resume went on
    # rank 0 alone wrote the run directory: one metrics line per step, no second writer
    lines = (runs.resume_dir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2 and '"step": 1' in lines[0] and '"step": 2' in lines[1]


@pytest.mark.slow
def test_resume_with_two_ranks_equals_a_straight_run(runs):
    (s0, s1), (d0, d1) = runs.resumed, runs.ddp
    assert s0["step"] == s1["step"] == 2 and len(s0["steps"]) == 1
    assert s0["sampler"] == s1["sampler"] and s0["sampler"]["world_size"] == 2
    for resumed, straight in ((s0, d0), (s1, d1)):
        assert _differences(resumed["steps"][0]["params"], straight["steps"][1]["params"]) == []
        assert resumed["steps"][0]["loss"] == straight["steps"][1]["loss"]


def test_unused_parameter_search_only_when_a_task_leaves_one_out(repo):
    """MultiTaskObjective.unreached_parameters (which sets DDP's find_unused_parameters) names exactly the
    parameters that get no gradient from a backward (the atlas decoder off: a cheap CPU step)."""
    from damt.config import load_config  # noqa: PLC0415
    from damt.tasks import MultiTaskObjective  # noqa: PLC0415
    from damt.testing import synthetic_views  # noqa: PLC0415

    others = ["rotation", "contrastive", "morphometry", "texture", "mim"]
    for sets in (["tasks.weighting=uncertainty"], [f"tasks.{n}.enabled=false" for n in others]):
        cfg = load_config(repo / "configs" / "tiny.yaml", ["tasks.atlas.enabled=false", *sets])
        model = MultiTaskObjective(cfg, 20, 8, 101)
        total, _ = model(synthetic_views(cfg, 2, 20, 8, 101))
        total.backward()
        assert [n for n, p in model.named_parameters() if p.grad is None] == \
               model.unreached_parameters(), sets
    assert model.unreached_parameters() == ["encoder.mask_token"]  # location alone: no masked pass
