"""Helpers for tests and benchmarks that must not depend on a cache (part of the library, so that
library tests and the benchmarks of both stages import only ``damt``).

:func:`synthetic_views`: random views with the shapes and dtypes of :func:`damt.views.make_views`.
"""

from __future__ import annotations

import torch

from damt.config import DamtConfig
from damt.views import Views, rotate


def synthetic_views(cfg: DamtConfig, batch: int, n_morphometry: int, n_radiomics: int,
                    n_classes: int, device: str | torch.device = "cpu", seed: int = 0) -> Views:
    """One batch of :class:`damt.views.Views` drawn from a fixed generator.

    Images are uniform in [0, 1] (``local`` is ``local_plain`` rotated by ``rot_local``), atlases
    uniform over the classes, masks mask
    ``views.mim_mask_ratio`` of the MIM blocks, targets are standard normal with ~10 % absent.
    """
    g = torch.Generator().manual_seed(seed)
    v, p = cfg.views, cfg.model.patch_size_vox

    def img(n: int) -> torch.Tensor:
        return torch.rand(batch, 1, n, n, n, generator=g)

    def masks(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        blocks = n // v.mim_block_vox
        keep = torch.rand(batch, blocks, blocks, blocks, generator=g) < v.mim_mask_ratio
        voxel = keep.repeat_interleave(v.mim_block_vox, 1).repeat_interleave(v.mim_block_vox, 2) \
            .repeat_interleave(v.mim_block_vox, 3)
        return voxel[:, ::p, ::p, ::p].contiguous(), voxel[:, None]

    gsz, lsz = v.global_crop_vox, v.local_size_vox
    g2_patch, g2_vox = masks(gsz)
    l_patch, l_vox = masks(lsz)
    fields = dict(
        global1=img(gsz), global1_atlas=torch.randint(0, n_classes, (batch, gsz, gsz, gsz), generator=g),
        global2=img(gsz), global2_patch_mask=g2_patch, global2_voxel_mask=g2_vox,
        local_plain=img(lsz),
        local_atlas=torch.randint(0, n_classes, (batch, lsz, lsz, lsz), generator=g),
        local_patch_mask=l_patch, local_voxel_mask=l_vox,
        rot_global1=torch.randint(0, 10, (batch,), generator=g),
        rot_global2=torch.randint(0, 10, (batch,), generator=g),
        rot_local=torch.randint(0, 10, (batch,), generator=g),
        location=torch.randint(0, v.location_grid ** 2, (batch,), generator=g),
        morphometry=torch.randn(batch, n_morphometry, generator=g),
        morphometry_present=torch.rand(batch, n_morphometry, generator=g) > 0.1,
        radiomics=torch.randn(batch, n_radiomics, generator=g),
        radiomics_present=torch.rand(batch, n_radiomics, generator=g) > 0.1,
        index=torch.arange(batch),
    )
    fields["local"] = rotate(fields["local_plain"], fields["rot_local"])  # as make_views does
    return Views(**{k: t.to(device) for k, t in fields.items()})
