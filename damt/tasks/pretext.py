"""The seven DAMT pretext tasks (METHOD.md 'Views', 'Model', 'Losses').

Views (see damt/views.py): ``global1`` (rotated) and ``global2`` (independently rotated, encoded
with its MIM mask) make the contrastive pair and the global MIM; ``local`` (rotated) gives
rotation, location and atlas; ``local`` encoded with its mask gives the local MIM. Where a task has
a global and a local part (rotation, atlas, MIM) its loss is the mean of the two, so each task
loss stays on the scale of one term and the weights of METHOD.md keep their meaning.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from damt.config import ConfigError
from damt.losses import cross_entropy, gather_with_grad, masked_l1, nt_xent, present_l1
from damt.model.heads import AtlasDecoder, LinearHead, MIMDecoder, RegressionHead
from damt.tasks import Encoded, ModelDims, Task, register_task

N_ROTATIONS = 10  # identity + 3 rot90 in each of the 3 planes (METHOD.md 'Rotation')


@register_task("rotation")
class Rotation(Task):
    """10-class rotation of both global views and the local view; one Linear head for all."""

    encodings = ("global", "global_masked", "local")

    def build_head(self, dims: ModelDims) -> nn.Module:
        return LinearHead(dims.token_dim, N_ROTATIONS)

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Any) -> Tensor:
        glob = 0.5 * (cross_entropy(head(enc["global"].pooled), views.rot_global1)
                      + cross_entropy(head(enc["global_masked"].pooled), views.rot_global2))
        return 0.5 * (glob + cross_entropy(head(enc["local"].pooled), views.rot_local))


@register_task("location")
class Location(Task):
    """Which cell of the location grid (3x3 over axes 0 and 1) holds the local crop's centre."""

    encodings = ("local",)

    def build_head(self, dims: ModelDims) -> nn.Module:
        return LinearHead(dims.token_dim, self.cfg.views.location_grid ** 2)

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Any) -> Tensor:
        return cross_entropy(head(enc["local"].pooled), views.location)


@register_task("contrastive")
class Contrastive(Task):
    """NT-Xent between the projections of global view 1 and (masked) global view 2.

    With ``tasks.contrastive_gather`` under DDP the negatives are the whole global batch's.
    """

    encodings = ("global", "global_masked")

    def build_head(self, dims: ModelDims) -> nn.Module:
        return LinearHead(dims.token_dim, self.cfg.model.contrastive_dim)

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Any) -> Tensor:
        z1, z2 = head(enc["global"].pooled), head(enc["global_masked"].pooled)
        rows = None
        if self.cfg.tasks.contrastive_gather:
            b = z1.shape[0]
            (z1, start), (z2, _) = gather_with_grad(z1), gather_with_grad(z2)
            rows = slice(start, start + b)
        return nt_xent(z1, z2, self.cfg.tasks.contrastive_temperature, rows=rows)


@register_task("atlas")
class Atlas(Task):
    """Per-voxel segmentation into the label table's classes, global view 1 and local view."""

    encodings = ("global", "local")

    def build_head(self, dims: ModelDims) -> nn.Module:
        v, patch = self.cfg.views, self.cfg.model.patch_size_vox
        if patch != 2:  # SwinUNETR's last up-block doubles x0's grid back to the input grid
            raise ConfigError("model.patch_size_vox", "the atlas decoder (SwinUNETR's) needs 2")
        for name in ("global_crop_vox", "local_size_vox"):
            if getattr(v, name) < 2 * dims.stride:  # its instance norms need x4 >= 2 voxels
                raise ConfigError(f"views.{name}", f"the atlas decoder needs at least "
                                  f"{2 * dims.stride} voxels (x4 of 2³ or more)")
        return AtlasDecoder(dims.embed_dim, dims.n_classes, channels_last=self.cfg.model.channels_last)

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Any) -> Tensor:
        g, loc = enc["global"], enc["local"]
        return 0.5 * (cross_entropy(head(g.x_in, g.hidden), views.global1_atlas)
                      + cross_entropy(head(loc.x_in, loc.hidden), views.local_atlas))


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

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Any) -> Tensor:
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
    """Reconstruct the masked voxels of global view 2 and of the local view (L1 on masked only)."""

    encodings = ("global_masked", "local_masked")

    def build_head(self, dims: ModelDims) -> nn.Module:
        return MIMDecoder(dims.token_dim, dims.stride)

    def loss(self, head: nn.Module, enc: dict[str, Encoded], views: Any) -> Tensor:
        g = masked_l1(head(enc["global_masked"].hidden[-1]), views.global2, views.global2_voxel_mask)
        loc = masked_l1(head(enc["local_masked"].hidden[-1]), views.local, views.local_voxel_mask)
        return 0.5 * (g + loc)
