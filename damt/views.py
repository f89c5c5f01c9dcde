"""The training views of METHOD.md ("Views and targets made at training time"): draw, then apply.

Draw (MONAI's ``randomize``): :func:`draw_sample` makes every random choice of one sample (the crop
corners, the three rotation classes, the MIM block masks, and from the local corner the location
label) from the sample's own generator (:func:`sample_rng`), as a :class:`Draws`. It is pure and
cheap, and runs on the CPU in the data loader, which then reads the two crops the draws name.

Apply: :func:`make_views` applies the draws to whole batches at once, so the expensive voxel work
(rotating 128³ volumes, resizing the local crop, expanding masks) happens on the GPU when there is
one and never in a per-sample Python loop.

Spatial conventions: a volume tensor is ``[B, C, D, H, W]`` (or ``[B, D, H, W]``); spatial axis 0
is D, 1 is H, 2 is W, the store's RAS voxel axes in order. Voxel ``i`` spans ``[i, i + 1)``, so a
crop starting at ``s`` with edge ``L`` has its centre at ``s + L / 2``.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: rotation class -> (number of quarter turns k, plane as a pair of spatial axes); METHOD.md:
#: 0 identity, 1-3 rot90 x1/x2/x3 in the plane of axes (1, 2), 4-6 in (0, 2), 7-9 in (0, 1).
ROTATIONS: tuple[tuple[int, tuple[int, int]], ...] = (
    (0, (1, 2)),
    (1, (1, 2)), (2, (1, 2)), (3, (1, 2)),
    (1, (0, 2)), (2, (0, 2)), (3, (0, 2)),
    (1, (0, 1)), (2, (0, 1)), (3, (0, 1)),
)
N_ROTATIONS = len(ROTATIONS)


def _apply_rotations(x: torch.Tensor, rot: torch.Tensor, inverse: bool) -> torch.Tensor:
    if x.ndim < 4:
        raise ValueError(f"expected a batch of volumes [B, (C,) D, H, W], got shape {tuple(x.shape)}")
    if rot.shape != (x.shape[0],):
        raise ValueError(f"rot must be [B] = [{x.shape[0]}], got {tuple(rot.shape)}")
    d, h, w = x.shape[-3:]
    if not d == h == w:
        raise ValueError(f"rotations need cubic volumes (they swap axes), got {(d, h, w)}")
    spatial0 = x.ndim - 3
    # One device->host copy of B small ints groups the batch by class; the voxel work is then at
    # most one rot90 per class present (<= 10 calls), each over all samples of that class.
    classes = rot.tolist()
    out = torch.empty_like(x)
    for c in sorted(set(classes)):
        if not 0 <= c < N_ROTATIONS:
            raise ValueError(f"rotation class {c} outside 0..{N_ROTATIONS - 1}")
        idx = torch.tensor([i for i, v in enumerate(classes) if v == c], device=x.device)
        k, (a, b) = ROTATIONS[c]
        k = (-k) % 4 if inverse else k
        out[idx] = torch.rot90(x[idx], k, (spatial0 + a, spatial0 + b))
    return out


def sample_rng(seed: int, epoch: int, key: int) -> np.random.Generator:
    """The generator of one sample: a pure function of (seed, epoch, sample key), so a sample is
    bit-identical in any worker, process or rank and after a resume."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), int(epoch), int(key)])))


def block_mask(rng: np.random.Generator, n: int, ratio: float) -> np.ndarray:
    """bool [n, n, n]: exactly ``round(ratio * n³)`` blocks masked, chosen uniformly."""
    total = n ** 3
    mask = np.zeros(total, bool)
    mask[rng.permutation(total)[: int(round(ratio * total))]] = True
    return mask.reshape(n, n, n)


@dataclass(frozen=True)
class Draws:
    """The random choices of one sample, drawn in this field order from its generator (the order
    is part of the data: another order gives other crops for the same seed). Corners are voxel
    indices of the whole volume; ``rotation`` is (global view 1, global view 2, local view) in
    0..9; ``mim_global`` bool [G/b]³ and ``mim_local`` bool [S/b]³ (b = views.mim_block_vox);
    ``location`` is not drawn but follows from ``local_start`` (:func:`location_label`)."""

    global_start: tuple[int, int, int]
    local_start: tuple[int, int, int]
    rotation: tuple[int, int, int]
    mim_global: np.ndarray
    mim_local: np.ndarray
    location: int


def draw_sample(rng: np.random.Generator, shape: Sequence[int], cfg) -> Draws:
    """Every random choice of one sample for a volume of ``shape`` (3 ints, voxels), from ``rng``.

    ``cfg`` is the DamtConfig (its ``views`` section). The local crop is drawn anywhere in the
    volume, independently of the global crop: METHOD.md defines its location label on the whole
    volume's grid, and the local view is paired with no global view in any loss, so tying it to the
    global crop would only skew the location classes towards the global crop's region.
    Raises ValueError when the global crop does not fit the volume.
    """
    v = cfg.views
    g, lc = v.global_crop_vox, v.local_crop_vox
    if min(shape) < g:
        raise ValueError(f"volume shape {tuple(shape)} is smaller than the global crop {g}")
    gs = tuple(int(x) for x in rng.integers(0, np.asarray(shape) - g + 1))
    ls = tuple(int(x) for x in rng.integers(0, np.asarray(shape) - lc + 1))
    rot = tuple(int(x) for x in rng.integers(0, N_ROTATIONS, size=3))
    mim_g = block_mask(rng, g // v.mim_block_vox, v.mim_mask_ratio)
    mim_l = block_mask(rng, v.local_size_vox // v.mim_block_vox, v.mim_mask_ratio)
    centre = [s + lc / 2 for s in ls]
    location = location_label(centre, shape, v.location_grid, v.location_axes)
    return Draws(gs, ls, rot, mim_g, mim_l, location)  # type: ignore[arg-type]


def rotate(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """Rotate each sample of ``x`` by its rotation class.

    x: [B, C, D, H, W] (or [B, D, H, W]) any dtype, cubic spatial dims; rot: int64 [B] in 0..9.
    Returns a new tensor of x's shape, dtype and device. Apply it with the same ``rot`` to an image
    and its parcellation to rotate them together.
    """
    return _apply_rotations(x, rot, inverse=False)


def unrotate(x: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
    """The inverse of :func:`rotate`: ``unrotate(rotate(x, r), r) == x`` exactly."""
    return _apply_rotations(x, rot, inverse=True)


def location_label(centre_vox: Sequence[float], volume_shape: Sequence[int], grid: int,
                   axes: Sequence[int] = (0, 2)) -> int:
    """Location class of a crop centre: a ``grid`` x ``grid`` split of the volume over the two
    spatial ``axes`` (views.location_axes), label = ``bin(axes[0]) * grid + bin(axes[1])`` in
    ``0 .. grid² - 1``.

    centre_vox: the crop centre in voxel coordinates (``start + edge / 2``; floats allowed);
    volume_shape: the whole volume's shape. A centre on a bin edge goes to the upper bin.
    The cache is RAS, so the default axes (0, 2) bin left -> right and inferior -> superior: the
    coronal grid of the original, which binned FreeSurfer's LIA axes 0 and 1 (its label is
    ``grid² - 1 -`` this one, both of its axes running the other way; the cells are the same).
    """
    if len(centre_vox) != len(volume_shape):
        raise ValueError(f"crop centre {tuple(centre_vox)} and volume shape {tuple(volume_shape)} "
                         f"differ in length")
    for c, n in zip(centre_vox, volume_shape):
        if not 0 <= c <= n:
            raise ValueError(f"crop centre {tuple(centre_vox)} outside the volume {tuple(volume_shape)}")
    a, b = axes
    bins = [min(int(centre_vox[ax] * grid // volume_shape[ax]), grid - 1) for ax in (a, b)]
    return bins[0] * grid + bins[1]


def resize_local(img: torch.Tensor, atlas: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize local crops to ``size``³: the image trilinearly, the parcellation by nearest neighbour.

    img: float [B, 1, L, L, L]; atlas: integer [B, 1, L, L, L] (uint8 or int64).
    Returns (img float [B, 1, S, S, S], atlas of atlas's dtype [B, 1, S, S, S]). ``nearest-exact``
    samples at voxel centres, the same geometry as trilinear with ``align_corners=False``, so the
    labels stay aligned with the image (plain ``nearest`` shifts them by up to half a voxel).
    """
    shape = (size,) * 3
    out = F.interpolate(img, size=shape, mode="trilinear", align_corners=False)
    # class ids <= 255 are exact in float32; integer interpolation is not supported on every device
    lab = F.interpolate(atlas.to(torch.float32), size=shape, mode="nearest-exact").to(atlas.dtype)
    return out, lab


def expand_block_mask(block: torch.Tensor, factor: int) -> torch.Tensor:
    """Upsample a block mask: bool [B, n, n, n] -> bool [B, n*factor, n*factor, n*factor], each
    block becoming a ``factor``³ cube of the same value."""
    b, n0, n1, n2 = block.shape
    f = int(factor)
    out = block[:, :, None, :, None, :, None].expand(b, n0, f, n1, f, n2, f)
    return out.reshape(b, n0 * f, n1 * f, n2 * f)


@dataclass
class Views:
    """One step's inputs and labels, all on the training device. G = views.global_crop_vox,
    S = views.local_size_vox, p = model.patch_size_vox, n_m / n_r = target sizes.

    global1 float32 [B,1,G,G,G]: the global crop rotated by rot_global1;
    global1_atlas int64 [B,G,G,G]: its parcellation, rotated the same;
    global2 float32 [B,1,G,G,G]: the same crop rotated by rot_global2, unmasked (the model replaces
    masked patches by its mask token); global2_patch_mask bool [B,G/p,G/p,G/p] and
    global2_voxel_mask bool [B,1,G,G,G] (True = masked);
    local float32 [B,1,S,S,S]: the local crop resized to S and rotated by rot_local;
    local_atlas int64 [B,S,S,S]; local_plain float32 [B,1,S,S,S]: the same resized local crop
    unrotated, the local MIM's input and target (METHOD.md: "the unrotated local view, masked");
    local_patch_mask bool [B,S/p,S/p,S/p] and local_voxel_mask bool [B,1,S,S,S], its MIM mask;
    rot_global1 / rot_global2 / rot_local / location / index int64 [B];
    morphometry float32 [B,n_m], morphometry_present bool [B,n_m], radiomics float32 [B,n_r],
    radiomics_present bool [B,n_r].

    The global MIM mask is not rotated: it is drawn on the block grid of the already-rotated view.
    Blocks are i.i.d. under rotation (a uniformly random set of blocks), so this is the same
    distribution, and the mask stays aligned with the tensor the model sees.
    """

    global1: torch.Tensor
    global1_atlas: torch.Tensor
    global2: torch.Tensor
    global2_patch_mask: torch.Tensor
    global2_voxel_mask: torch.Tensor
    local: torch.Tensor
    local_atlas: torch.Tensor
    local_plain: torch.Tensor
    local_patch_mask: torch.Tensor
    local_voxel_mask: torch.Tensor
    rot_global1: torch.Tensor
    rot_global2: torch.Tensor
    rot_local: torch.Tensor
    location: torch.Tensor
    morphometry: torch.Tensor
    morphometry_present: torch.Tensor
    radiomics: torch.Tensor
    radiomics_present: torch.Tensor
    index: torch.Tensor

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Field name -> tensor."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def make_views(batch: dict[str, torch.Tensor], cfg) -> Views:
    """Build one step's views from a collated batch of ``train.data.CacheDataset`` samples that is
    already on the training device.

    batch keys (B samples): global_image float16/32 [B,1,G,G,G], global_atlas uint8 [B,1,G,G,G],
    local_image float16/32 [B,1,Lc,Lc,Lc], local_atlas uint8 [B,1,Lc,Lc,Lc], rotation int64 [B,3]
    (global view 1, global view 2, local), mim_global bool [B,G/b,G/b,G/b], mim_local bool
    [B,S/b,S/b,S/b] (b = views.mim_block_vox), location, index int64 [B], the targets and their
    presence masks. ``cfg`` is the DamtConfig. Returns :class:`Views`.
    """
    v, p = cfg.views, cfg.model.patch_size_vox
    g, s, b = v.global_crop_vox, v.local_size_vox, v.mim_block_vox
    if b % p:
        raise ValueError(f"views.mim_block_vox ({b}) must be a multiple of model.patch_size_vox ({p}) "
                         f"so that MIM blocks cover whole patches")
    rot = batch["rotation"].long()
    gimg = batch["global_image"].float()
    gatl = batch["global_atlas"]
    _expect(gimg, (g, g, g), "global_image")
    _expect(batch["mim_global"], (g // b,) * 3, "mim_global", channel=False)
    _expect(batch["mim_local"], (s // b,) * 3, "mim_local", channel=False)
    limg, latl = resize_local(batch["local_image"].float(), batch["local_atlas"], s)
    mim_g, mim_l = batch["mim_global"].bool(), batch["mim_local"].bool()
    return Views(
        global1=rotate(gimg, rot[:, 0]),
        global1_atlas=rotate(gatl, rot[:, 0])[:, 0].long(),
        global2=rotate(gimg, rot[:, 1]),
        global2_patch_mask=expand_block_mask(mim_g, b // p),
        global2_voxel_mask=expand_block_mask(mim_g, b)[:, None],
        local=rotate(limg, rot[:, 2]),
        local_atlas=rotate(latl, rot[:, 2])[:, 0].long(),
        local_plain=limg,
        local_patch_mask=expand_block_mask(mim_l, b // p),
        local_voxel_mask=expand_block_mask(mim_l, b)[:, None],
        rot_global1=rot[:, 0].contiguous(), rot_global2=rot[:, 1].contiguous(),
        rot_local=rot[:, 2].contiguous(),
        location=batch["location"].long(),
        morphometry=batch["morphometry"].float(),
        morphometry_present=batch["morphometry_present"].bool(),
        radiomics=batch["radiomics"].float(),
        radiomics_present=batch["radiomics_present"].bool(),
        index=batch["index"].long(),
    )


def _expect(t: torch.Tensor, spatial: tuple[int, ...], name: str, channel: bool = True) -> None:
    want = ((1,) if channel else ()) + spatial
    if tuple(t.shape[1:]) != want:
        raise ValueError(f"batch[{name!r}] has shape {tuple(t.shape)}, expected [B, "
                         f"{', '.join(map(str, want))}] for this config's views")
