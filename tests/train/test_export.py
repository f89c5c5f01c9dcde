"""`damt export` on a briefly trained tiny model (real subjects): the encoder loads into a fresh
MONAI SwinUNETR of the tiny sizes both ways (strict load_state_dict and the legacy load_from) with
no missing or unexpected key and every tensor equal to the checkpoint's; the SSL state dict and
the sidecar; a run directory means its latest complete checkpoint."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from monai.networks.nets import SwinUNETR

from damt.cli import main
from damt.config import load_config
from damt.export import from_load_from_layout, swinunetr_kwargs, verify_swinunetr
from damt.labels import load_label_table
from damt.model import MaskedSwinEncoder
from damt.tasks import MultiTaskObjective
from train.checkpoint import latest_checkpoint, load_checkpoint

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run  # the session's briefly trained tiny run (tests/train/conftest.py)


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export")
    assert main(["export", str(run.run_dir), str(out), "--cache", str(run.cache)]) == 0
    return out


@pytest.fixture(scope="module")
def state(run):
    return load_checkpoint(latest_checkpoint(run.run_dir / "checkpoints"))


def _swinunetr(cfg) -> SwinUNETR:
    """A fresh SwinUNETR of the tiny sizes, built from configs/tiny.yaml as a user would."""
    m = cfg.model
    return SwinUNETR(in_channels=1, out_channels=4, feature_size=m.embed_dim, depths=m.depths,
                     num_heads=m.num_heads, window_size=m.window_size_vox,
                     patch_size=m.patch_size_vox, mlp_ratio=m.mlp_ratio)


def _checkpoint_encoder(state) -> dict[str, torch.Tensor]:
    prefix = "encoder.swinViT."
    return {k[len(prefix):]: v for k, v in state["model"].items() if k.startswith(prefix)}


class _Recording(dict):
    def __init__(self, *args):
        super().__init__(*args)
        self.read = set()

    def __getitem__(self, key):
        self.read.add(key)
        return super().__getitem__(key)


def test_export_writes_its_files(exported):
    assert sorted(p.name for p in exported.iterdir()) == [
        "config.yaml", "damt_export.json", "damt_ssl_model.pt", "swinvit.pt", "swinvit_load_from.pt"]


def test_strict_load_state_dict_into_swinunetr(exported, repo, state):
    model = _swinunetr(load_config(repo / "configs" / "tiny.yaml"))
    weights = torch.load(exported / "swinvit.pt", weights_only=True)
    result = model.swinViT.load_state_dict(weights, strict=True)
    assert result.missing_keys == [] and result.unexpected_keys == []
    want, got = _checkpoint_encoder(state), model.swinViT.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)


def test_load_from_into_swinunetr(exported, repo, state):
    model = _swinunetr(load_config(repo / "configs" / "tiny.yaml"))
    before = {k: v.clone() for k, v in model.swinViT.state_dict().items()}
    weights = torch.load(exported / "swinvit_load_from.pt", weights_only=True)
    assert set(weights) == {"state_dict"}
    assert all(k.startswith("module.") for k in weights["state_dict"])
    recording = _Recording(weights["state_dict"])
    model.load_from({"state_dict": recording})
    assert recording.read == set(recording)  # no unexpected key: load_from read every one
    want, got = _checkpoint_encoder(state), model.swinViT.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)  # no missing key: every tensor copied
    assert any(not torch.equal(before[k], want[k]) for k in want)  # a real change, not the init
    # and the legacy layout converts back to the strict one exactly
    back = from_load_from_layout(weights)
    assert set(back) == set(want) and all(torch.equal(back[k], want[k]) for k in want)


def test_verify_reports_a_missing_key(repo, state):
    swin = _checkpoint_encoder(state)
    kwargs = swinunetr_kwargs(load_config(repo / "configs" / "tiny.yaml").model)
    assert verify_swinunetr(swin, kwargs)["ok"]
    dropped = "layers2.0.blocks.0.mlp.linear1.weight"
    report = verify_swinunetr({k: v for k, v in swin.items() if k != dropped}, kwargs)
    assert not report["ok"] and report["strict"]["missing"] == [dropped]
    assert report["load_from"]["missing"] == [dropped]




def test_swinunetr_encoder_computes_what_the_damt_encoder_computes(exported, repo, state):
    cfg = load_config(repo / "configs" / "tiny.yaml")
    model = _swinunetr(cfg).eval()
    model.swinViT.load_state_dict(torch.load(exported / "swinvit.pt", weights_only=True), strict=True)
    encoder = MaskedSwinEncoder(cfg.model).eval()
    encoder.load_state_dict({k[len("encoder."):]: v for k, v in state["model"].items()
                             if k.startswith("encoder.")}, strict=True)
    x = torch.rand(1, 1, *(cfg.views.global_crop_vox,) * 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for a, b in zip(model.swinViT(x, normalize=True), encoder(x)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_ssl_state_dict_rebuilds_the_damt_model(exported, state):
    side = json.loads((exported / "damt_export.json").read_text())
    sd = torch.load(exported / "damt_ssl_model.pt", weights_only=True)
    assert set(sd) == set(state["model"]) and all(torch.equal(sd[k], state["model"][k]) for k in sd)
    cfg = load_config(exported / "config.yaml")
    heads = side["ssl_heads"]
    model = MultiTaskObjective(cfg, heads["n_morphometry"], heads["n_radiomics"],
                               side["labels"]["n_classes"])
    model.load_state_dict(sd, strict=True)


def test_sidecar_has_what_a_downstream_user_needs(exported, run, state):
    side = json.loads((exported / "damt_export.json").read_text())
    cfg, p = run.cfg, run.cfg.preprocess
    assert side["format"] == "damt-export-v1"
    assert side["checkpoint"]["step"] == run.steps == state["step"]
    assert side["checkpoint"]["path"] == str(latest_checkpoint(run.run_dir / "checkpoints").resolve())
    header = (run.run_dir / "config.yaml").read_text().splitlines()[0]
    assert header.endswith(f"hash {side['config_hash']}")
    pre = side["preprocessing"]
    assert pre["spacing_mm"] == [1.25] * 3 and pre["orientation"] == p.orientation == "RAS"
    assert (pre["intensity"]["percentile_low"], pre["intensity"]["percentile_high"]) == (0.05, 99.95)
    assert pre["intensity"]["maps_to"] == [0.0, 1.0]
    assert pre["crop_foreground"] == {"threshold": p.foreground_threshold, "margin_vox": p.crop_margin_vox}
    assert pre["pad"]["min_shape_vox"] == 128
    table = load_label_table("damt-v1")
    assert side["labels"] == {"table": "damt-v1", "version": "damt-v1", "sha256": table.sha256,
                              "n_classes": 101}
    sw = side["swinunetr"]
    assert sw["kwargs"]["feature_size"] == 12 and sw["kwargs"]["depths"] == [1, 1, 1, 1]
    assert sw["embedding_dim"] == 12 * 16 and sw["hidden_channels"] == [12, 24, 48, 96, 192]
    assert side["views"]["global_crop_vox"] == cfg.views.global_crop_vox
    targets = json.loads((run.cache / "targets.json").read_text())
    tc = side["training_cache"]
    assert tc["preprocess_config_hash"] == targets["config_hash"]
    assert tc["target_names"]["morphometry"] == targets["morphometry"]["names"]
    assert side["ssl_heads"]["n_morphometry"] == len(targets["morphometry"]["names"])
    assert side["verified"]["load_from"] == side["verified"]["strict_load_state_dict"] == "ok"
    # the sidecar's kwargs build a SwinUNETR the strict layout loads into
    model = SwinUNETR(out_channels=2, **sw["kwargs"])
    model.swinViT.load_state_dict(torch.load(exported / "swinvit.pt", weights_only=True), strict=True)
    # the exported config.yaml is the run's resolved config
    assert load_config(exported / "config.yaml") == cfg


def test_run_dir_means_latest_complete_checkpoint(run, tmp_path, capsys):
    ckpts = run.run_dir / "checkpoints"
    partial = ckpts / "step_000000999"  # a write killed before its marker
    partial.mkdir()
    try:
        (partial / "state.pt").write_bytes(b"\x80\x02truncated")
        assert main(["export", str(run.run_dir), str(tmp_path / "a")]) == 0
        side = json.loads((tmp_path / "a" / "damt_export.json").read_text())
        assert side["checkpoint"]["step"] == run.steps
        # the config's data.cache_dir is found without --cache
        assert side["training_cache"]["path"] == str(run.cache.resolve())
        capsys.readouterr()
        assert main(["export", str(partial), str(tmp_path / "b")]) == 2
        assert "incomplete checkpoint" in capsys.readouterr().err
        assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "c")]) == 2
    finally:
        shutil.rmtree(partial)
