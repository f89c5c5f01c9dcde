"""The seven DAMT pretext tasks (METHOD.md 'Views', 'Model', 'Losses').

Views (see damt/views.py): ``global1`` (rotated) and ``global2`` (independently rotated, encoded
with its MIM mask) make the contrastive pair and the global MIM; ``local`` (rotated) gives
rotation, location and atlas; ``local_plain`` (the same crop unrotated) encoded with its mask gives
the local MIM. The loss definitions are the seed's (METHOD.md 'Losses', the original main.py):
rotation is one cross-entropy over global view 1 and the local view together; atlas and MIM are
the *sum* of their global and local terms (atlas carries the weight 0.5, which makes the seed's
``0.5 x (global + local)``). Each task's loss is what it contributes to the total divided by its
weight, so the logged ``loss_<task>`` is exactly the term the weight multiplies.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from damt.config import ConfigError
from damt.losses import cross_entropy, dice_ce, gather_with_grad, masked_l1, nt_xent, present_l1
from damt.model.heads import ConvDecoder, LinearHead, MIMDecoder, RegressionHead, SwinUNETRDecoder
from damt.tasks.base import Encoded, ModelDims, Task, register_task
from damt.views import N_ROTATIONS, Views


@register_task("rotation")
class Rotation(Task):
    """10-class rotation: one cross-entropy over the 2B samples of global view 1 and the local
    view together (one Linear head). The masked global view 2's label is discarded, as in the
    seed; ``tasks.rotation.masked_view`` adds its B samples to the same cross-entropy."""

    encodings = ("global", "global_masked", "local")  # every pass it may read

    def __init__(self, cfg):
        super().__init__(cfg)
        self.masked_view = bool(cfg.tasks.rotation.masked_view)
        self.encodings = (("global", "global_masked", "local") if self.masked_view
                          else ("global", "local"))

    def build_head(self, dims: ModelDims) -> nn.Module:
        return LinearHead(dims.token_dim, N_ROTATIONS)

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Views) -> Tensor:
        pairs = [("global", views.rot_global1), ("local", views.rot_local)]
        if self.masked_view:
            pairs.insert(1, ("global_masked", views.rot_global2))
        logits = torch.cat([head(enc[name].pooled) for name, _ in pairs])
        return cross_entropy(logits, torch.cat([labels for _, labels in pairs]))


@register_task("location")
class Location(Task):
    """Which cell of the location grid (3x3 over views.location_axes, RAS 0 and 2 by default:
    left-right x inferior-superior) holds the local crop's centre."""

    encodings = ("local",)

    def build_head(self, dims: ModelDims) -> nn.Module:
        return LinearHead(dims.token_dim, self.cfg.views.location_grid ** 2)

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Views) -> Tensor:
        return cross_entropy(head(enc["local"].pooled), views.location)


@register_task("contrastive")
class Contrastive(Task):
    """NT-Xent between the projections of global view 1 and (masked) global view 2.

    With ``tasks.contrastive_gather`` under DDP the negatives are the whole global batch's.
    """

    encodings = ("global", "global_masked")

    def build_head(self, dims: ModelDims) -> nn.Module:
        return LinearHead(dims.token_dim, self.cfg.model.contrastive_dim)

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Views) -> Tensor:
        z1, z2 = head(enc["global"].pooled), head(enc["global_masked"].pooled)
        rows = None
        if self.cfg.tasks.contrastive_gather:
            b = z1.shape[0]
            (z1, start), (z2, _) = gather_with_grad(z1), gather_with_grad(z2)
            rows = slice(start, start + b)
        return nt_xent(z1, z2, self.cfg.tasks.contrastive_temperature, rows=rows)


@register_task("atlas")
class Atlas(Task):
    """Per-voxel segmentation into the label table's classes: the sum of the loss on global view 1
    and on the local view (weight 0.5 on the sum = the seed's ``0.5 x (global + local)``).

    The decoder is ``model.atlas_decoder`` (the original's ConvDecoder by default); the per-view
    loss is ``tasks.atlas.loss``: cross-entropy, or MONAI's DiceCELoss as in the original code.
    """

    encodings = ("global", "local")

    def build_head(self, dims: ModelDims) -> nn.Module:
        m, v = self.cfg.model, self.cfg.views
        for name in ("global_crop_vox", "local_size_vox"):
            if getattr(v, name) < 2 * dims.stride:  # its instance norms need x4 >= 2 voxels
                raise ConfigError(f"views.{name}", f"the atlas decoder needs at least "
                                  f"{2 * dims.stride} voxels (x4 of 2³ or more)")
        if m.atlas_decoder == "swinunetr":
            if m.patch_size_vox != 2:  # SwinUNETR's last up-block doubles x0's grid
                raise ConfigError("model.patch_size_vox", "the swinunetr atlas decoder needs 2")
            return SwinUNETRDecoder(dims.embed_dim, dims.n_classes, channels_last=m.channels_last)
        return ConvDecoder(dims.hidden_channels, dims.n_classes, patch_size=m.patch_size_vox,
                           channels_last=m.channels_last)

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Views) -> Tensor:
        per_view = dice_ce if self.cfg.tasks.atlas.loss == "dice_ce" else cross_entropy
        g, loc = enc["global"], enc["local"]
        return (per_view(head(g.hidden, g.x_in), views.global1_atlas)
                + per_view(head(loc.hidden, loc.x_in), views.local_atlas))


class _Regression(Task):
    """L1 on the normalised targets that are present (absent ones are left out, never zeroed)."""

    encodings = ("global",)
    kind = ""  # the cache's target kind (targets.json)

    def size(self, dims: ModelDims) -> int:
        return dims.n_morphometry if self.kind == "morphometry" else dims.n_radiomics

    def build_head(self, dims: ModelDims) -> nn.Module:
        n = self.size(dims)
        if n == 0:
            raise ConfigError(f"tasks.{self.name}.enabled", f"the cache has no {self.kind} "
                              f"columns (targets.json): disable the task or rebuild the cache")
        return RegressionHead(dims.token_dim, dims.global_grid, self.cfg.model.regression_channels, n)

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Views) -> Tensor:
        return present_l1(head(enc["global"].hidden[-1]), getattr(views, self.kind),
                          getattr(views, f"{self.kind}_present"))


@register_task("morphometry")
class Morphometry(_Regression):
    """FreeSurfer morphometry (volumes, thickness, area, curvature) from global view 1."""

    kind = "morphometry"


@register_task("texture")
class Texture(_Regression):
    """Radiomics GLCM texture per tissue from global view 1."""

    kind = "radiomics"


@register_task("mim")
class MaskedImageModelling(Task):
    """Reconstruct the masked voxels of global view 2 and of the unrotated local view: the sum of
    the two masked-voxel L1 means (the seed's ``global + local``, not their mean)."""

    encodings = ("global_masked", "local_masked")

    def build_head(self, dims: ModelDims) -> nn.Module:
        return MIMDecoder(dims.token_dim, dims.stride)

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Views) -> Tensor:
        g = masked_l1(head(enc["global_masked"].hidden[-1]), views.global2, views.global2_voxel_mask)
        loc = masked_l1(head(enc["local_masked"].hidden[-1]), views.local_plain,
                        views.local_voxel_mask)
        return g + loc
