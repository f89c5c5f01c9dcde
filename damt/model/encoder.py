"""The masked 3D Swin encoder: MONAI's SwinTransformer plus a learnable mask token.

The unmasked and the masked path are one code path: patch embedding, then (masked path only) the
embedded tokens of masked patches are replaced by the mask token, then the same four stages and the
same per-stage normalisation as ``SwinTransformer.forward(x, normalize=True)``. The original
normalised the two paths differently; here a test checks that the path without a mask equals
MONAI's own forward exactly.

The SwinTransformer is held as ``self.swinViT``, the attribute name of MONAI's SwinUNETR, so the
encoder's state-dict keys (``swinViT.patch_embed.proj.weight``, ``swinViT.layers1.0...``) load into
a SwinUNETR unchanged.

Gradient checkpointing is chosen per stage (:data:`CHECKPOINT_STAGES`) and switched with MONAI's
own per-block flag (``SwinTransformerBlock.use_checkpoint``: ``torch.utils.checkpoint`` with
``use_reentrant=False`` around the attention and the MLP half of each block).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.networks.nets.swin_unetr import SwinTransformer, WindowAttention
from torch import Tensor, nn

from damt.config import ModelConfig


class SdpaWindowAttention(WindowAttention):
    """MONAI's WindowAttention computed by ``F.scaled_dot_product_attention``, with autograd too.

    MONAI's ``use_flash_attention`` takes the SDPA path only when autograd is off (inference), so
    training would still materialise every [windows, heads, n, n] score matrix in float32. This
    override keeps MONAI's parameters and maths (same qkv, relative position bias, shift mask,
    scale) and only changes how the product is evaluated. For shifted windows the shift mask
    differs per window, so the window axis is folded into SDPA's head axis
    ([B, nW*heads, n, d] against a [1, nW*heads, n, n] bias): the bias is broadcast over the batch
    instead of being copied once per sample.
    """

    def forward(self, x: Tensor, mask: Tensor | None) -> Tensor:
        b, n, c = x.shape
        h = self.num_heads
        qkv = self.qkv(x).reshape(b, n, 3, h, c // h).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        index = self.relative_position_index[:n, :n].reshape(-1)  # same slicing as MONAI
        bias = self.relative_position_bias_table[index].reshape(n, n, h).permute(2, 0, 1)
        drop = self.attn_drop.p if self.training else 0.0
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.unsqueeze(0).to(q.dtype),
                                                 dropout_p=drop, scale=self.scale)
        else:
            nw = mask.shape[0]
            fold = (b // nw, nw * h, n, c // h)  # windows are batch-major in window_partition
            full = (bias.unsqueeze(0) + mask.unsqueeze(1).to(bias.dtype)).reshape(1, nw * h, n, n)
            out = F.scaled_dot_product_attention(q.reshape(fold), k.reshape(fold), v.reshape(fold),
                                                 attn_mask=full.to(q.dtype), dropout_p=drop,
                                                 scale=self.scale).reshape(b, h, n, c // h)
        out = out.transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


def use_sdpa_attention(module: nn.Module) -> int:
    """Switch every MONAI WindowAttention under ``module`` to :class:`SdpaWindowAttention`.

    Changes the class only (no new parameters, same state-dict keys). Returns how many switched.
    """
    n = 0
    for m in module.modules():
        if type(m) is WindowAttention:
            m.__class__ = SdpaWindowAttention
            n += 1
    return n


#: ``train.grad_checkpointing`` settings -> the Swin stages (1..4) whose blocks recompute their
#: activations in the backward pass. The seed's depths (2, 2, 18, 2) put 18 of 24 blocks in stage 3.
CHECKPOINT_STAGES: dict[str, tuple[int, ...]] = {"none": (), "layers3": (3,), "all": (1, 2, 3, 4)}


class MaskedSwinEncoder(nn.Module):
    """MONAI SwinTransformer (1 input channel) with a learnable mask token for masked encoding.

    ``forward(x, patch_mask)`` returns the five normalised hidden states x0..x4 exactly as
    ``SwinTransformer.forward(x, normalize=True)``; for a 128³ input and the seed sizes they are
    [B, 48, 64³], [B, 96, 32³], [B, 192, 16³], [B, 384, 8³], [B, 768, 4³].
    """

    def __init__(self, cfg: ModelConfig, grad_checkpointing: str = "none"):
        super().__init__()
        self.swinViT = SwinTransformer(
            in_chans=1, embed_dim=cfg.embed_dim, window_size=(cfg.window_size_vox,) * 3,
            patch_size=(cfg.patch_size_vox,) * 3, depths=list(cfg.depths),
            num_heads=list(cfg.num_heads), mlp_ratio=cfg.mlp_ratio, qkv_bias=True,
            drop_path_rate=cfg.drop_path_rate, use_checkpoint=False, spatial_dims=3,
            downsample="merging", use_v2=False)
        if cfg.sdpa_attention:
            use_sdpa_attention(self.swinViT)
        # one token per embedding channel, broadcast over every masked patch; small init like
        # BERT/SimMIM so a masked patch starts near an average embedded patch
        self.mask_token = nn.Parameter(torch.zeros(1, cfg.embed_dim, 1, 1, 1))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.patch_size = cfg.patch_size_vox
        self.out_channels = [cfg.embed_dim * 2 ** i for i in range(4)] + [cfg.embed_dim * 16]
        self.checkpointing = "none"
        self.set_checkpointing(grad_checkpointing)

    def stages(self) -> list[nn.Module]:
        """MONAI's four BasicLayers (layers1..layers4), shallow to deep."""
        s = self.swinViT
        return [s.layers1[0], s.layers2[0], s.layers3[0], s.layers4[0]]

    def set_checkpointing(self, setting: str) -> None:
        """Checkpoint the blocks of the stages of ``setting`` (a key of :data:`CHECKPOINT_STAGES`)
        and no others. Changes no parameter; can be switched between steps."""
        if setting not in CHECKPOINT_STAGES:
            raise ValueError(f"unknown checkpointing setting {setting!r}; known: "
                             f"{', '.join(CHECKPOINT_STAGES)}")
        chosen = CHECKPOINT_STAGES[setting]
        for i, stage in enumerate(self.stages(), start=1):
            for block in stage.blocks:
                block.use_checkpoint = i in chosen
        self.checkpointing = setting

    def forward(self, x: Tensor, patch_mask: Tensor | None = None) -> list[Tensor]:
        """x: [B, 1, D, H, W]; patch_mask: bool [B, D/p, H/p, W/p], True = replaced by the token."""
        s = self.swinViT
        x0 = s.patch_embed(x)
        if patch_mask is not None:
            if patch_mask.shape != (x0.shape[0], *x0.shape[2:]):
                raise ValueError(f"patch mask {tuple(patch_mask.shape)} does not match the patch "
                                 f"grid {(x0.shape[0], *x0.shape[2:])}")
            x0 = torch.where(patch_mask[:, None], self.mask_token.to(x0.dtype), x0)
        x0 = s.pos_drop(x0)
        hidden = [s.proj_out(x0, True)]
        for stage in (s.layers1, s.layers2, s.layers3, s.layers4):
            x0 = stage[0](x0.contiguous())
            hidden.append(s.proj_out(x0, True))
        return hidden
