"""`damt bench flops`: forward FLOPs per component on the meta device, checked against the layer
arithmetic of METHOD.md's decoders; the full model's compute stays at the method's."""

from __future__ import annotations

import json

import pytest

from damt.cli import main
from damt.config import DamtConfig, load_config
from train.bench_flops import component_name, forward_flops


def _conv_decoder_flops(widths: list[int], edge: int, patch: int, batch: int, classes: int) -> int:
    """The original's ConvDecoder written out: 2 * Cin * Cout * k³ FLOPs per output voxel of each
    convolution (multiply and add), on the grids x4 .. x0 and the input grid."""
    c0, c1, c2, c3, c4 = widths
    grid = [edge // patch // 2 ** i for i in range(5)]        # x0 .. x4 edges
    convs = [(c4, c4, 27, grid[4]),                           # bottleneck on x4
             (c4, c3, 27, grid[4]), (2 * c3, c2, 27, grid[3]),  # levels: conv then x2 + skip
             (2 * c2, c1, 27, grid[2]), (2 * c1, c0, 27, grid[1]),
             (2 * c0, c0, 27, grid[0]),                       # last conv on x0's grid
             (c0, classes, 1, edge)]                          # 1³ output block on the input grid
    return sum(2 * cin * cout * k * n ** 3 * batch for cin, cout, k, n in convs)


def test_default_full_model_forward_is_the_methods_compute():
    cfg = DamtConfig()  # pipeline.yaml's defaults: the full seed model
    got = forward_flops(cfg, batch=2)
    comp = got["components"]
    assert sum(comp.values()) == pytest.approx(got["total"])
    widths = [48, 96, 192, 384, 768]
    want = (_conv_decoder_flops(widths, 128, 2, 2, 101)        # global view 1
            + _conv_decoder_flops(widths, 64, 2, 2, 101))      # local view
    assert comp["atlas_decoder"] == want
    assert comp["atlas_decoder"] / 1e12 <= 0.35                # issue 11: ~0.24 global + 0.03 local
    assert got["total"] / 1e12 <= 1.7                           # was 4.40 with SwinUNETR's decoder
    assert 1.1 <= comp["encoder"] / 1e12 <= 1.3                 # four Swin passes
    assert set(comp) == {"encoder", "atlas_decoder", "mim_decoder", "rotation_head", "location_head",
                         "contrastive_head", "morphometry_head", "texture_head", "losses"}


def test_component_names():
    assert component_name("MultiTaskObjective.encoder") == "encoder"
    assert component_name("MultiTaskObjective.heads.atlas") == "atlas_decoder"
    assert component_name("MultiTaskObjective.heads.rotation") == "rotation_head"
    assert component_name("MultiTaskObjective") is None
    assert component_name("MultiTaskObjective.encoder.swinViT") is None


def test_cli_prints_one_line_per_setting(repo, capsys):
    assert main(["bench", "flops", "--tiny", "--settings", "default,original,swinunetr_decoder"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["setting"] for x in lines] == ["default", "original", "swinunetr_decoder"]
    by = {x["setting"]: x for x in lines}
    assert by["default"]["atlas_decoder"] == "convdecoder" == by["original"]["atlas_decoder"]
    # same model: the seed's setting changes how a step runs, not what it computes
    assert by["original"]["model_tflop_forward"] == pytest.approx(by["default"]["model_tflop_forward"])
    tiny = load_config(repo / "configs" / "tiny.yaml", [])
    want = 2 * _conv_decoder_flops(_widths(tiny), 64, 2, 2, 101)  # global and local views, 64³
    assert by["default"]["components"]["atlas_decoder"] * 1e12 == pytest.approx(want)
    atlas = [k for k in by["swinunetr_decoder"]["components"] if "atlas" in k]
    assert atlas == ["atlas_decoder"]
    assert by["swinunetr_decoder"]["components"]["atlas_decoder"] > 5 * want / 1e12
    assert main(["bench", "flops", "--tiny", "--settings", "fastest"]) == 2


def _widths(cfg) -> list[int]:
    e = cfg.model.embed_dim
    return [e, 2 * e, 4 * e, 8 * e, 16 * e]


def test_bench_settings_original_is_the_methods_model_in_the_seeds_setting():
    from train.bench_step import settings  # noqa: PLC0415

    cfg = DamtConfig()
    got = settings(cfg, names=("default", "original", "swinunetr_decoder"))
    assert list(got) == ["default", "original", "swinunetr_decoder"]
    orig = got["original"]
    assert orig.model.atlas_decoder == "convdecoder" and orig.tasks == cfg.tasks  # model and objective
    assert (orig.train.precision, orig.train.grad_checkpointing) == ("fp16", "all")
    assert not orig.model.sdpa_attention and not orig.model.channels_last
    assert got["default"] == cfg
    assert got["swinunetr_decoder"].model.atlas_decoder == "swinunetr"
    with pytest.raises(ValueError, match="unknown bench setting"):
        settings(cfg, names=("default", "fastest"))
