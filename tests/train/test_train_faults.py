"""Faults a training run must survive (issue 12, items 7, 8, 14): parameters that go non-finite are
never saved and never cost the last good checkpoint; a checkpoint write on a full disk leaves the
run resumable; a cache whose batches hold one sample says once that contrastive has no negatives.

A two-subject synthetic cache at configs/tiny.yaml: one step per epoch at batch 2. The atlas and MIM
tasks are switched off: their full-resolution decoders cost ~95 % of a tiny CPU step and play no part
in what is tested here.
"""

from __future__ import annotations

import errno
import json
import math

import pytest
import torch

import train.checkpoint as ckpt
import train.loop as loop
from damt.cache import read_manifest, write_manifest
from damt.cli import main
from damt.config import load_config
from damt.synth import make_subject
from preprocess.run import run_preprocess
from train.checkpoint import MARKER_FILE, complete_checkpoints, latest_checkpoint, load_checkpoint

STEPS = ["--set", "train.epochs=3", "--set", "tasks.atlas.enabled=false", "--set", "tasks.mim.enabled=false"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory, repo):
    root = tmp_path_factory.mktemp("faults") / "cohort"
    for i in range(2):
        make_subject(root, f"sub-{i}", seed=20 + i, shape=(48, 48, 48))
    out = tmp_path_factory.mktemp("faults_cache") / "cache"
    summary = run_preprocess(load_config(repo / "configs" / "tiny.yaml", [f"data.inputs=['{root}']"]), out,
                             workers=0, progress=False)
    assert summary.ok == 2
    return out


def _train(repo, cache, out, *extra):
    return main(["train", str(repo / "configs" / "tiny.yaml"), "--cache", str(cache), "--out", str(out),
                 "--quiet", *STEPS, *extra])


def test_non_finite_parameters_are_never_saved_and_never_cost_the_last_good_checkpoint(
        repo, cache, tmp_path, monkeypatch, capsys):
    real = loop.train_step
    calls = []

    def goes_bad(model, *args, **kwargs):  # the second step leaves NaN weights, as a NaN lr did
        res = real(model, *args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            with torch.no_grad():
                for p in model.parameters():
                    p.fill_(math.nan)
        return res

    monkeypatch.setattr(loop, "train_step", goes_bad)
    rc = _train(repo, cache, tmp_path / "run")
    err = capsys.readouterr().err
    assert rc == 3 and "non-finite" in err and "Traceback" not in err
    steps = [s for s, _, _ in complete_checkpoints(tmp_path / "run" / "checkpoints")]
    assert steps == [1]  # the good one is kept; no NaN checkpoint exists
    state = load_checkpoint(latest_checkpoint(tmp_path / "run" / "checkpoints"))
    assert ckpt.nonfinite_values(state["model"])[0] == 0


def test_prune_keeps_the_newest_finite_checkpoint(tmp_path):
    good = ckpt.save_checkpoint(tmp_path, {"w": torch.ones(3)}, step=1, epoch=1, keep=False)
    # a later checkpoint known to be non-finite (as older versions wrote them)
    bad = tmp_path / "step_000000002"
    bad.mkdir()
    torch.save({"w": torch.full((3,), math.nan)}, bad / ckpt.STATE_FILE)
    marker = json.loads((good / MARKER_FILE).read_text()) | {"step": 2, "finite": False,
                                                             "sha256": ckpt.sha256_file(bad / ckpt.STATE_FILE)}
    (bad / MARKER_FILE).write_text(json.dumps(marker))
    ckpt.prune(tmp_path)
    assert [s for s, _, _ in complete_checkpoints(tmp_path)] == [1, 2]


def test_a_non_finite_state_is_refused_by_the_writer(tmp_path):
    with pytest.raises(ckpt.NonFiniteStateError, match="1 of 3 values"):
        ckpt.save_checkpoint(tmp_path, {"model": {"w": torch.tensor([1.0, math.inf, 2.0])}}, 1, 0, False)
    assert not list(tmp_path.iterdir())


def test_checkpoint_on_a_full_disk_leaves_the_run_resumable(repo, cache, tmp_path, monkeypatch, capsys):
    real = torch.save
    saves = []

    def full_on_second(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 2:
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04 partial")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path, *args, **kwargs)

    monkeypatch.setattr(ckpt.torch, "save", full_on_second)
    rc = _train(repo, cache, tmp_path / "run")
    err = capsys.readouterr().err
    assert rc == 2 and "disk full" in err and "--resume" in err and len(err.strip().splitlines()) == 1
    root = tmp_path / "run" / "checkpoints"
    assert sorted(p.name for p in root.iterdir()) == ["step_000000001"]  # no .step_*.tmp left
    (root / ".step_000000002.deadbeef.tmp").mkdir()  # and one left by a killed process
    monkeypatch.setattr(ckpt.torch, "save", real)  # space freed
    assert _train(repo, cache, tmp_path / "run", "--resume") == 0
    assert sorted(p.name for p in root.iterdir()) == ["step_000000003"]


def test_one_sample_per_batch_is_said_once(repo, cache, tmp_path, capsys):
    one = tmp_path / "one"
    one.mkdir()
    for name in ("targets.json", "subjects"):
        (one / name).symlink_to(cache / name)
    write_manifest(one, read_manifest(cache).iloc[:1])
    assert _train(repo, one, tmp_path / "run", "--max-steps", "1") == 0
    out = capsys.readouterr().out
    assert out.count("contrastive task has no negatives") == 1 and "1 ok subject(s)" in out
    events = [json.loads(x) for x in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    assert any("no negatives" in e.get("message", "") for e in events)


def test_contrastive_note_rules(repo):
    cfg = load_config(repo / "configs" / "tiny.yaml")
    assert loop.contrastive_note(cfg, 2, 2, 1) is None
    assert "1 ok subject" in loop.contrastive_note(cfg, 1, 1, 1)
    assert "batch_per_device is 1" in loop.contrastive_note(load_config(repo / "configs" / "tiny.yaml",
                                                                        ["train.batch_per_device=1"]), 5, 5, 1)
    gather = load_config(repo / "configs" / "tiny.yaml", ["tasks.contrastive_gather=true"])
    assert loop.contrastive_note(gather, 2, 1, 2) is None  # one per rank, two ranks gathered
    off = load_config(repo / "configs" / "tiny.yaml", ["tasks.contrastive.enabled=false"])
    assert loop.contrastive_note(off, 1, 1, 1) is None
