"""Task heads and decoders on the encoder's hidden states (METHOD.md 'Model').

Regression heads end in a Linear layer with no activation: their targets are normalised and take
negative values (the original ended them in ReLU, which can never output the lower half).

Two atlas decoders (``model.atlas_decoder``): :class:`ConvDecoder`, the original's light decoder
and the default, and :class:`SwinUNETRDecoder`, MONAI SwinUNETR's full decoder (an option). Both
take ``(hidden, x_in)`` and return per-voxel logits of the input's size.
"""

from __future__ import annotations

from typing import Sequence

import torch
from monai.networks.blocks import Convolution, UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from monai.networks.utils import pixelshuffle
from torch import Tensor, nn


class LinearHead(nn.Module):
    """Linear layer on the pooled deepest token: rotation (10), location (9), contrastive (512)."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.fc = nn.Linear(in_dim, out_dim)

    def forward(self, pooled: Tensor) -> Tensor:
        return self.fc(pooled)


class RegressionHead(nn.Module):
    """Conv3d + FC on the deepest hidden state x4 -> an unbounded vector (morphometry, texture).

    The 1x1x1 convolution narrows the channels; the FC layer then sees every position of the
    x4 grid (not a pooled token), because regional volumes and textures depend on where things are.
    ``grid`` is the x4 edge (global crop / 32).
    """

    def __init__(self, in_channels: int, grid: int, channels: int, out_dim: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, channels, kernel_size=1)
        self.act = nn.GELU()
        self.fc = nn.Linear(channels * grid ** 3, out_dim)

    def forward(self, x4: Tensor) -> Tensor:
        return self.fc(self.act(self.conv(x4)).flatten(1))


class MIMDecoder(nn.Module):
    """Conv3d to stride³ channels, then a 3D pixel shuffle back to the input size.

    x4 of a D³ input is (D/stride)³ with stride = patch * 2^4 = 32, so the shuffle by ``stride``
    returns exactly D³ (global 128³ from 4³, local 64³ from 2³).
    """

    def __init__(self, in_channels: int, stride: int, out_channels: int = 1):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv3d(in_channels, out_channels * stride ** 3, kernel_size=1)

    def forward(self, x4: Tensor) -> Tensor:
        return pixelshuffle(self.conv(x4), spatial_dims=3, scale_factor=self.stride)


def _layout(channels_last: bool) -> torch.memory_format:
    return torch.channels_last_3d if channels_last else torch.contiguous_format


class ConvDecoder(nn.Module):
    """The original's light atlas decoder (METHOD.md 'Model'), from MONAI's Convolution blocks.

    ``hidden`` x0..x4 with channels c0..c4 (48, 96, 192, 384, 768 at the seed sizes):

    * ``bottleneck``: conv 3³ + InstanceNorm + LeakyReLU on x4, c4 -> c4;
    * ``levels[i]`` (i = 0..3, skips x3, x2, x1, x0): conv 3³ + InstanceNorm + LeakyReLU to the
      skip's width, trilinear x2, then concatenated with the skip (twice the skip's width);
    * ``last``: conv 3³ + InstanceNorm + LeakyReLU 2·c0 -> c0, trilinear x patch back to the input
      grid; ``out``: a 1³ convolution (MONAI UnetOutBlock) to ``n_classes``.

    No skip from the input image and no residual blocks: the atlas must come from the encoder's
    features. The convolutions carry no bias (a bias before an affine-free InstanceNorm cancels).
    With ``channels_last`` the activations (never the parameters, which DDP's gradient buckets
    mirror) run in NDHWC, the layout of oneDNN's and cuDNN's fast 3D convolution kernels, and the
    logits come out NDHWC, so a per-voxel softmax reads each voxel's classes contiguously.
    """

    def __init__(self, hidden_channels: Sequence[int], n_classes: int, patch_size: int = 2,
                 channels_last: bool = False):
        super().__init__()
        c = list(hidden_channels)
        if len(c) != 5:
            raise ValueError(f"expected the widths of x0..x4, got {c}")
        self.memory_format = _layout(channels_last)
        self.patch_size = patch_size

        def block(cin: int, cout: int) -> Convolution:
            return Convolution(spatial_dims=3, in_channels=cin, out_channels=cout, kernel_size=3,
                               act=("leakyrelu", {"negative_slope": 0.01, "inplace": True}),
                               norm="instance", bias=False)

        self.bottleneck = block(c[4], c[4])
        levels, cin = [], c[4]
        for skip in reversed(c[:4]):  # x3, x2, x1, x0
            levels.append(block(cin, skip))
            cin = 2 * skip  # upsampled features concatenated with the skip
        self.levels = nn.ModuleList(levels)
        self.last = block(cin, c[0])
        self.out = UnetOutBlock(spatial_dims=3, in_channels=c[0], out_channels=n_classes)

    @staticmethod
    def _up(x: Tensor, factor: int) -> Tensor:
        return nn.functional.interpolate(x, scale_factor=factor, mode="trilinear", align_corners=False)

    def forward(self, hidden: list[Tensor], x_in: Tensor | None = None) -> Tensor:
        """hidden: x0..x4 of an input [B, 1, D³] (``x_in`` is not used). Returns logits
        [B, n_classes, D³] (NDHWC memory with ``channels_last``)."""
        fmt = self.memory_format
        x0, x1, x2, x3, x4 = (h.contiguous(memory_format=fmt) for h in hidden)
        x = self.bottleneck(x4)
        for level, skip in zip(self.levels, (x3, x2, x1, x0)):
            x = torch.cat([self._up(level(x), 2), skip], dim=1)
        return self.out(self._up(self.last(x), self.patch_size))


class SwinUNETRDecoder(nn.Module):
    """SwinUNETR's convolutional decoder with skips from x4..x0 and the input, -> per-voxel logits
    (``model.atlas_decoder: swinunetr``; not the method's decoder, see :class:`ConvDecoder`).

    Built from MONAI's UnetrBasicBlock / UnetrUpBlock / UnetOutBlock with SwinUNETR's own module
    names and widths (feature_size = the encoder's embed_dim), so together with the encoder it
    has the key layout of a MONAI SwinUNETR. Its full-resolution residual blocks on the input
    image cost ~12x the ConvDecoder's FLOPs and let it draw the atlas from raw intensities.
    """

    def __init__(self, feature_size: int, n_classes: int, in_channels: int = 1,
                 norm_name: str = "instance", channels_last: bool = False):
        super().__init__()
        f = feature_size
        self.memory_format = _layout(channels_last)

        def basic(cin: int, cout: int) -> UnetrBasicBlock:
            return UnetrBasicBlock(spatial_dims=3, in_channels=cin, out_channels=cout, kernel_size=3,
                                   stride=1, norm_name=norm_name, res_block=True)

        def up(cin: int, cout: int) -> UnetrUpBlock:
            return UnetrUpBlock(spatial_dims=3, in_channels=cin, out_channels=cout, kernel_size=3,
                                upsample_kernel_size=2, norm_name=norm_name, res_block=True)

        self.encoder1 = basic(in_channels, f)
        self.encoder2 = basic(f, f)
        self.encoder3 = basic(2 * f, 2 * f)
        self.encoder4 = basic(4 * f, 4 * f)
        self.encoder10 = basic(16 * f, 16 * f)
        self.decoder5 = up(16 * f, 8 * f)
        self.decoder4 = up(8 * f, 4 * f)
        self.decoder3 = up(4 * f, 2 * f)
        self.decoder2 = up(2 * f, f)
        self.decoder1 = up(f, f)
        self.out = UnetOutBlock(spatial_dims=3, in_channels=f, out_channels=n_classes)

    def forward(self, hidden: list[Tensor], x_in: Tensor | None = None) -> Tensor:
        """hidden: x0..x4; x_in: the encoder input [B, 1, D³] (required: the first skip).
        Returns logits [B, n_classes, D³]."""
        if x_in is None:
            raise ValueError("SwinUNETR's decoder needs the encoder input (its first skip)")
        x_in = x_in.contiguous(memory_format=self.memory_format)
        x0, x1, x2, x3, x4 = (h.contiguous(memory_format=self.memory_format) for h in hidden)
        enc0 = self.encoder1(x_in)
        enc1 = self.encoder2(x0)
        enc2 = self.encoder3(x1)
        enc3 = self.encoder4(x2)
        dec4 = self.encoder10(x4)
        dec3 = self.decoder5(dec4, x3)
        dec2 = self.decoder4(dec3, enc3)
        dec1 = self.decoder3(dec2, enc2)
        dec0 = self.decoder2(dec1, enc1)
        return self.out(self.decoder1(dec0, enc0))
