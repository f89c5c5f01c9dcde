"""The masked Swin encoder, the SDPA attention path, the heads and the export-friendly names."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from monai.networks.nets import SwinUNETR

from damt.config import load_config
from damt.model.encoder import MaskedSwinEncoder, SdpaWindowAttention
from damt.model.heads import ConvDecoder, MIMDecoder, RegressionHead, SwinUNETRDecoder
from damt.tasks import MultiTaskObjective
from damt.testing import synthetic_views


@pytest.fixture(scope="module")
def tiny(repo):
    return load_config(repo / "configs" / "tiny.yaml", [])


def _encoder(cfg, sdpa: bool, seed: int = 0, **model) -> MaskedSwinEncoder:
    torch.manual_seed(seed)
    return MaskedSwinEncoder(replace(cfg.model, sdpa_attention=sdpa, **model)).eval()


def test_unmasked_path_is_monais_forward_exactly(tiny):
    enc = _encoder(tiny, sdpa=False)
    x = torch.rand(1, 1, 64, 64, 64)
    with torch.no_grad():
        ours, theirs = enc(x), enc.swinViT(x, normalize=True)
    assert [h.shape[1] for h in ours] == enc.out_channels == [12, 24, 48, 96, 192]
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))


def test_masked_patches_see_only_the_mask_token(tiny):
    enc = _encoder(tiny, sdpa=False)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 64, 64, 64, generator=g)
    mask = torch.rand(2, 32, 32, 32, generator=g) < 0.75
    voxel = mask.repeat_interleave(2, 1).repeat_interleave(2, 2).repeat_interleave(2, 3)[:, None]
    other = torch.where(voxel, torch.rand(x.shape, generator=g), x)  # differs only where masked
    with torch.no_grad():
        a, b = enc(x, mask), enc(other, mask)
        none_masked = enc(x, torch.zeros_like(mask))
        plain = enc(x)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert all(torch.equal(u, v) for u, v in zip(none_masked, plain))
    # masked positions of x0 hold the normalised token, the same vector everywhere
    token = torch.nn.functional.layer_norm(enc.mask_token.flatten(), [12])
    x0 = a[0].permute(0, 2, 3, 4, 1)[mask]
    assert torch.allclose(x0, token.expand_as(x0), atol=1e-6)
    with pytest.raises(ValueError, match="patch grid"):
        enc(x, mask[:, :16])


def test_sdpa_attention_equals_monai_attention_with_gradients(tiny):
    # two blocks per stage, so the shifted-window mask path is exercised too
    kw = {"depths": [2, 2, 2, 2], "drop_path_rate": 0.0}  # no random block drops in train mode
    ref, sdpa = _encoder(tiny, sdpa=False, **kw).train(), _encoder(tiny, sdpa=True, **kw).train()
    sdpa.load_state_dict(ref.state_dict())
    assert any(isinstance(m, SdpaWindowAttention) for m in sdpa.modules())
    assert not any(isinstance(m, SdpaWindowAttention) for m in ref.modules())
    x = torch.rand(2, 1, 64, 64, 64)
    out_ref, out_sdpa = ref(x), sdpa(x)
    for a, b in zip(out_ref, out_sdpa):
        assert torch.allclose(a, b, atol=2e-5)
    sum(h.square().mean() for h in out_ref).backward()
    sum(h.square().mean() for h in out_sdpa).backward()
    grads = dict(ref.named_parameters())
    for name, p in sdpa.named_parameters():
        if name == "mask_token":  # unused without a mask
            assert p.grad is None and grads[name].grad is None
            continue
        assert torch.allclose(p.grad, grads[name].grad, atol=1e-5, rtol=1e-3), name


def test_encoder_and_swinunetr_atlas_decoder_load_into_monai_swinunetr(tiny):
    cfg = replace(tiny, model=replace(tiny.model, atlas_decoder="swinunetr"))
    model = MultiTaskObjective(cfg, 20, 8, 101)
    assert isinstance(model.heads["atlas"], SwinUNETRDecoder)
    state = {f"swinViT.{k[len('encoder.swinViT.'):]}": v for k, v in model.state_dict().items()
             if k.startswith("encoder.swinViT.")}
    state |= {k[len("heads.atlas."):]: v for k, v in model.state_dict().items()
              if k.startswith("heads.atlas.")}
    m = tiny.model
    net = SwinUNETR(in_channels=1, out_channels=101, feature_size=m.embed_dim, depths=m.depths,
                    num_heads=m.num_heads, window_size=m.window_size_vox, patch_size=m.patch_size_vox)
    net.load_state_dict(state, strict=True)  # every key and shape matches SwinUNETR's own


def test_model_forward_gives_seven_finite_losses_and_gradients(tiny):
    torch.manual_seed(0)
    model = MultiTaskObjective(tiny, 20, 8, 101)
    views = synthetic_views(tiny, 2, 20, 8, 101)
    total, losses = model(views)
    assert list(losses) == ["rotation", "location", "contrastive", "atlas", "morphometry",
                            "texture", "mim"]
    assert all(torch.isfinite(v) and v.dtype == torch.float32 for v in losses.values())
    weights = {"rotation": 1, "location": 1, "contrastive": 1, "atlas": 0.5, "morphometry": 5,
               "texture": 5, "mim": 1}
    assert total.item() == pytest.approx(sum(weights[k] * v.item() for k, v in losses.items()), rel=1e-6)
    total.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []  # every head and the mask token take part


def test_shared_batch_passes_equal_separate_passes(tiny):
    torch.manual_seed(0)
    model = MultiTaskObjective(replace(tiny, model=replace(tiny.model, sdpa_attention=False)),
                               20, 8, 101).eval()
    views = synthetic_views(tiny, 2, 20, 8, 101)
    with torch.no_grad():
        enc = model.encode(views)
        alone = model.encoder(views.global2, views.global2_patch_mask)
        plain = model.encoder(views.local)
    assert sorted(enc) == ["global", "global_masked", "local", "local_masked"]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(enc["global_masked"].hidden, alone))
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(enc["local"].hidden, plain))
    assert enc["global"].pooled.shape == (2, 192)


def test_mim_decoder_returns_the_input_size():
    dec = MIMDecoder(in_channels=16, stride=32)
    assert dec(torch.randn(2, 16, 2, 2, 2)).shape == (2, 1, 64, 64, 64)
    assert dec(torch.randn(1, 16, 4, 4, 4)).shape == (1, 1, 128, 128, 128)


def test_regression_head_is_unbounded():
    head = RegressionHead(in_channels=16, grid=2, channels=4, out_dim=5)
    with torch.no_grad():
        head.fc.bias.fill_(-3.0)
    out = head(torch.randn(3, 16, 2, 2, 2))
    assert out.shape == (3, 5) and (out < 0).any()  # no ReLU at the end (a defect of the original)


def test_conv_decoder_is_the_originals_at_the_seed_sizes():
    # METHOD.md 'Model': conv block on x4, four levels of conv 3³ + IN + LeakyReLU + trilinear x2
    # concatenated with x3..x0, a last conv + x2 to 48 channels, a 1³ block to 101 classes
    with torch.device("meta"):
        dec = ConvDecoder([48, 96, 192, 384, 768], 101, patch_size=2)
    convs = [(m.in_channels, m.out_channels, m.kernel_size) for m in dec.modules()
             if isinstance(m, torch.nn.Conv3d)]
    k3, k1 = (3, 3, 3), (1, 1, 1)
    assert convs == [(768, 768, k3), (768, 384, k3), (768, 192, k3), (384, 96, k3), (192, 48, k3),
                     (96, 48, k3), (48, 101, k1)]
    norms = [m for m in dec.modules() if isinstance(m, torch.nn.InstanceNorm3d)]
    acts = [m for m in dec.modules() if isinstance(m, torch.nn.LeakyReLU)]
    assert len(norms) == len(acts) == 6 and all(a.negative_slope == 0.01 for a in acts)
    # no residual blocks, nothing that could read the input image
    assert not any(type(m).__name__.startswith(("Unetr", "UnetResBlock")) for m in dec.modules())


def test_conv_decoder_reads_only_the_hidden_states(tiny):
    torch.manual_seed(0)
    model = MultiTaskObjective(tiny, 20, 8, 101)
    assert isinstance(model.heads["atlas"], ConvDecoder)
    dec = model.heads["atlas"]
    hidden = [torch.randn(2, c, 32 // 2 ** i, 32 // 2 ** i, 32 // 2 ** i)
              for i, c in enumerate(model.encoder.out_channels)]
    out = dec(hidden, torch.rand(2, 1, 64, 64, 64))
    assert out.shape == (2, 101, 64, 64, 64)
    assert torch.equal(out, dec(hidden, torch.rand(2, 1, 64, 64, 64)))  # the image plays no part
    assert torch.equal(out, dec(hidden))
    assert all(p.is_contiguous() for p in dec.parameters())  # DDP buckets mirror param strides
