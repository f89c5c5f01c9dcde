"""Task heads and decoders on the encoder's hidden states (METHOD.md 'Model').

Regression heads end in a Linear layer with no activation: their targets are normalised and take
negative values (the original ended them in ReLU, which can never output the lower half).
"""

from __future__ import annotations

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
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


class AtlasDecoder(nn.Module):
    """SwinUNETR's convolutional decoder with skips from x4..x0 and the input, -> per-voxel logits.

    Built from MONAI's UnetrBasicBlock / UnetrUpBlock / UnetOutBlock with SwinUNETR's own module
    names and widths (feature_size = the encoder's embed_dim), so together with the encoder it
    has the key layout of a MONAI SwinUNETR.
    """

    def __init__(self, feature_size: int, n_classes: int, in_channels: int = 1,
                 norm_name: str = "instance", channels_last: bool = False):
        super().__init__()
        f = feature_size
        self.memory_format = torch.channels_last_3d if channels_last else torch.contiguous_format

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
        self.to(memory_format=self.memory_format)  # conv weights in the layout of the inputs

    def forward(self, x_in: Tensor, hidden: list[Tensor]) -> Tensor:
        """x_in: the encoder input [B, 1, D³]; hidden: x0..x4. Returns logits [B, n_classes, D³]."""
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
