"""damt.views: the rotation table of METHOD.md, batched rotation and its inverse, location labels,
local resizing, MIM block masks and make_views."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from damt.config import ConfigError, load_config
from damt.views import (
    N_ROTATIONS,
    ROTATIONS,
    block_mask,
    draw_sample,
    expand_block_mask,
    location_label,
    make_views,
    resize_local,
    rotate,
    sample_rng,
    unrotate,
)


def _vol(b: int, c: int, n: int, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 250, (b, c, n, n, n), generator=g).to(dtype)


def test_rotation_table_is_methods():
    # METHOD.md: 0 identity, 1-3 rot90 x1/x2/x3 in axes (1,2), 4-6 in (0,2), 7-9 in (0,1)
    assert N_ROTATIONS == 10
    assert ROTATIONS[0][0] == 0
    expected = [(k, plane) for plane in ((1, 2), (0, 2), (0, 1)) for k in (1, 2, 3)]
    assert list(ROTATIONS[1:]) == expected


def test_each_class_is_that_rot90_of_the_spatial_axes():
    x = _vol(1, 2, 5)
    for c, (k, (a, b)) in enumerate(ROTATIONS):
        got = rotate(x, torch.tensor([c]))
        assert torch.equal(got, torch.rot90(x, k, (2 + a, 2 + b))), c
    # and the ten results are pairwise different on an asymmetric volume: ten distinct classes
    outs = [rotate(x, torch.tensor([c])).flatten() for c in range(N_ROTATIONS)]
    assert len({tuple(o.tolist()) for o in outs}) == N_ROTATIONS


def test_batched_rotation_equals_per_sample_and_uses_at_most_ten_calls(monkeypatch):
    x = _vol(32, 1, 6, seed=1)
    rot = torch.randint(0, N_ROTATIONS, (32,), generator=torch.Generator().manual_seed(2))
    ref = torch.stack([rotate(x[i:i + 1], rot[i:i + 1])[0] for i in range(32)])
    calls = []
    real = torch.rot90
    monkeypatch.setattr(torch, "rot90", lambda *a, **k: calls.append(1) or real(*a, **k))
    got = rotate(x, rot)
    assert torch.equal(got, ref)
    assert len(calls) == len(set(rot.tolist())) <= N_ROTATIONS


def test_image_and_parcellation_rotate_together():
    img = _vol(4, 1, 8, seed=3)
    atlas = img.to(torch.uint8)[:, 0]  # a parcellation that is a function of the image voxels
    rot = torch.tensor([0, 4, 8, 9])
    assert torch.equal(rotate(img, rot)[:, 0].to(torch.uint8), rotate(atlas, rot))


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 6), c=st.integers(1, 2), n=st.integers(1, 7), seed=st.integers(0, 2 ** 16),
       dtype=st.sampled_from([torch.float32, torch.uint8, torch.int64]), channel=st.booleans())
def test_rotation_inverts(b, c, n, seed, dtype, channel):
    x = _vol(b, c, n, seed, dtype)
    if not channel:
        x = x[:, 0]
    rot = torch.randint(0, N_ROTATIONS, (b,), generator=torch.Generator().manual_seed(seed))
    y = rotate(x, rot)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(unrotate(y, rot), x)
    assert torch.equal(rotate(unrotate(x, rot), rot), x)


def test_rotate_rejects_bad_input():
    with pytest.raises(ValueError, match="cubic"):
        rotate(torch.zeros(1, 1, 4, 4, 5), torch.tensor([1]))
    with pytest.raises(ValueError, match="outside"):
        rotate(torch.zeros(1, 1, 4, 4, 4), torch.tensor([10]))
    with pytest.raises(ValueError, match=r"\[B\]"):
        rotate(torch.zeros(2, 1, 4, 4, 4), torch.tensor([1]))


def test_location_label_bins():
    shape = (128, 150, 140)
    # default axes (0, 2): label = bin(axis 0) * 3 + bin(axis 2); axis 1 plays no part
    assert location_label((0.0, 75.0, 0.0), shape, 3) == 0
    assert location_label((127.9, 0.0, 139.9), shape, 3) == 8
    assert location_label((64.0, 149.0, 20.0), shape, 3) == 3    # bin 1 on axis 0, bin 0 on axis 2
    assert location_label((10.0, 3.0, 75.0), shape, 3) == 1
    assert location_label((128 / 3, 0.0, 0.0), shape, 3) == 3    # a bin edge goes up
    assert location_label((128.0, 0.0, 140.0), shape, 3) == 8    # the far face stays in the last bin
    assert location_label((0.0, 0.0, 139.0), shape, 4) == 3      # other grids: bin0 * grid + bin1
    # other axes, in the order given
    assert location_label((64.0, 20.0, 5.0), shape, 3, axes=(0, 1)) == 3
    assert location_label((64.0, 20.0, 5.0), shape, 3, axes=(1, 0)) == 1
    # every label is reachable with crop centres of a 56-voxel crop inside the volume
    labels = {location_label((s0 + 28, 64, s2 + 28), shape, 3) for s0 in range(0, 73)
              for s2 in range(0, 85)}
    assert labels == set(range(9))
    with pytest.raises(ValueError):
        location_label((-1.0, 3.0, 3.0), shape, 3)
    with pytest.raises(ValueError):
        location_label((3.0, 3.0, 141.0), shape, 3)  # outside on an axis the grid ignores too


def test_resize_local_shapes_and_nearest_labels():
    img = torch.rand(2, 1, 28, 28, 28)
    atlas = torch.zeros(2, 1, 28, 28, 28, dtype=torch.uint8)
    atlas[:, :, :14] = 7          # two slabs split at the middle of axis 0
    atlas[:, :, 14:] = 42
    out, lab = resize_local(img, atlas, 32)
    assert out.shape == (2, 1, 32, 32, 32) and out.dtype == torch.float32
    assert lab.shape == (2, 1, 32, 32, 32) and lab.dtype == torch.uint8
    assert set(lab.unique().tolist()) == {7, 42}
    assert (lab[:, :, :16] == 7).all() and (lab[:, :, 16:] == 42).all()   # the boundary stays put
    const, _ = resize_local(torch.full((1, 1, 28, 28, 28), 0.3), atlas[:1].long(), 32)
    assert torch.allclose(const, torch.full_like(const, 0.3))


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 8), factor=st.integers(1, 4), ratio=st.floats(0.0, 1.0), seed=st.integers(0, 2 ** 31))
def test_mim_mask_ratio_and_blocks(n, factor, ratio, seed):
    blocks = block_mask(np.random.default_rng(seed), n, ratio)
    assert blocks.shape == (n, n, n) and blocks.dtype == bool
    assert blocks.sum() == int(round(ratio * n ** 3))                       # exact ratio of blocks
    vox = expand_block_mask(torch.from_numpy(blocks)[None], factor)[0]
    assert vox.shape == (n * factor,) * 3
    assert vox.float().mean().item() == pytest.approx(blocks.mean())
    cubes = vox.reshape(n, factor, n, factor, n, factor)
    assert torch.equal(cubes.amin(dim=(1, 3, 5)), cubes.amax(dim=(1, 3, 5)))  # each cube uniform
    assert torch.equal(cubes[:, 0, :, 0, :, 0], torch.from_numpy(blocks))


def test_mim_defaults_mask_75_percent_of_16_cubed_blocks():
    cfg = load_config(None, [])
    rng = np.random.default_rng(0)
    g = block_mask(rng, cfg.views.global_crop_vox // cfg.views.mim_block_vox, cfg.views.mim_mask_ratio)
    loc = block_mask(rng, cfg.views.local_size_vox // cfg.views.mim_block_vox, cfg.views.mim_mask_ratio)
    assert g.shape == (8, 8, 8) and g.sum() == 384
    assert loc.shape == (4, 4, 4) and loc.sum() == 48


def _batch(cfg, b: int = 3, seed: int = 0) -> dict[str, torch.Tensor]:
    v = cfg.views
    g, lc, s, k = v.global_crop_vox, v.local_crop_vox, v.local_size_vox, v.mim_block_vox
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    return {
        "global_image": torch.rand(b, 1, g, g, g, generator=gen),
        "global_atlas": torch.randint(0, 101, (b, 1, g, g, g), generator=gen, dtype=torch.uint8),
        "local_image": torch.rand(b, 1, lc, lc, lc, generator=gen),
        "local_atlas": torch.randint(0, 101, (b, 1, lc, lc, lc), generator=gen, dtype=torch.uint8),
        "location": torch.tensor(rng.integers(0, 9, b)),
        "rotation": torch.tensor(rng.integers(0, 10, (b, 3))),
        "mim_global": torch.from_numpy(np.stack([block_mask(rng, g // k, 0.75) for _ in range(b)])),
        "mim_local": torch.from_numpy(np.stack([block_mask(rng, s // k, 0.75) for _ in range(b)])),
        "morphometry": torch.randn(b, 5, generator=gen), "morphometry_present": torch.rand(b, 5) > 0.3,
        "radiomics": torch.randn(b, 4, generator=gen), "radiomics_present": torch.rand(b, 4) > 0.3,
        "index": torch.arange(b),
    }


def test_make_views(repo):
    cfg = load_config(repo / "configs" / "tiny.yaml", [])
    v, p = cfg.views, cfg.model.patch_size_vox
    g, s, k = v.global_crop_vox, v.local_size_vox, v.mim_block_vox
    batch = _batch(cfg)
    out = make_views(batch, cfg)
    rot = batch["rotation"]
    assert out.global1.shape == (3, 1, g, g, g) and out.global1.dtype == torch.float32
    assert torch.equal(out.global1, rotate(batch["global_image"], rot[:, 0]))
    assert torch.equal(out.global2, rotate(batch["global_image"], rot[:, 1]))
    assert out.global1_atlas.shape == (3, g, g, g) and out.global1_atlas.dtype == torch.int64
    assert torch.equal(out.global1_atlas, rotate(batch["global_atlas"], rot[:, 0])[:, 0].long())
    img, atl = resize_local(batch["local_image"], batch["local_atlas"], s)
    assert out.local.shape == (3, 1, s, s, s)
    assert torch.equal(out.local, rotate(img, rot[:, 2]))
    assert torch.equal(out.local_atlas, rotate(atl, rot[:, 2])[:, 0].long())
    assert torch.equal(out.local_plain, img)  # the local MIM's input: the same crop, unrotated
    # masks: drawn on the rotated view's block grid, i.e. the batch's blocks expanded, not rotated
    assert out.global2_patch_mask.shape == (3, g // p, g // p, g // p)
    assert torch.equal(out.global2_patch_mask, expand_block_mask(batch["mim_global"], k // p))
    assert out.global2_voxel_mask.shape == (3, 1, g, g, g) and out.global2_voxel_mask.dtype == torch.bool
    assert torch.equal(out.global2_voxel_mask[:, 0, ::k, ::k, ::k], batch["mim_global"])
    assert torch.equal(out.local_patch_mask, expand_block_mask(batch["mim_local"], k // p))
    assert out.local_voxel_mask.shape == (3, 1, s, s, s)
    assert out.local_voxel_mask.float().mean().item() == pytest.approx(0.75)
    for name, col in (("rot_global1", 0), ("rot_global2", 1), ("rot_local", 2)):
        assert torch.equal(getattr(out, name), rot[:, col])
    for name in ("location", "morphometry", "morphometry_present", "radiomics", "radiomics_present", "index"):
        assert torch.equal(getattr(out, name), batch[name]), name
    assert set(out.as_dict()) >= {"global1", "local_voxel_mask", "index"}


def test_make_views_rejects_a_batch_of_other_sizes(repo):
    cfg = load_config(repo / "configs" / "tiny.yaml", [])
    with pytest.raises(ValueError, match="global_image"):
        make_views(_batch(load_config(None, ["views.global_crop_vox=96"]), b=1), cfg)
    # blocks of 2 cannot cover patches of 4: the config refuses it at start, naming the key
    with pytest.raises(ConfigError, match="views.mim_block_vox"):
        load_config(None, ["model.patch_size_vox=4", "views.mim_block_vox=2"])



def test_location_axes_config_is_checked():
    assert load_config(None, []).views.location_axes == [0, 2]
    for bad, words in (("[0, 0]", "two different axes"), ("[0]", "two different axes"),
                       ("[0, 3]", "must be <= 2")):
        with pytest.raises(ConfigError, match="views.location_axes") as err:
            load_config(None, [f"views.location_axes={bad}"])
        assert words in str(err.value)


def test_draw_sample_is_pure_and_in_range():
    """Draw, then apply: every random choice of a sample comes from its own generator, so equal
    (seed, epoch, key) give equal draws and the location follows from the local corner."""
    cfg = load_config(None, [])
    v, shape = cfg.views, (140, 150, 136)
    a = draw_sample(sample_rng(0, 1, 7), shape, cfg)
    b = draw_sample(sample_rng(0, 1, 7), shape, cfg)
    assert a.global_start == b.global_start and a.local_start == b.local_start
    assert a.rotation == b.rotation and np.array_equal(a.mim_global, b.mim_global)
    c = draw_sample(sample_rng(0, 2, 7), shape, cfg)  # another epoch: other draws
    assert (c.global_start, c.local_start, c.rotation) != (a.global_start, a.local_start, a.rotation)
    for key in range(20):
        d = draw_sample(sample_rng(0, 0, key), shape, cfg)
        assert all(0 <= s <= n - v.global_crop_vox for s, n in zip(d.global_start, shape))
        assert all(0 <= s <= n - v.local_crop_vox for s, n in zip(d.local_start, shape))
        assert all(0 <= r < N_ROTATIONS for r in d.rotation)
        assert d.mim_global.shape == (v.global_crop_vox // v.mim_block_vox,) * 3
        assert d.mim_local.shape == (v.local_size_vox // v.mim_block_vox,) * 3
        centre = [s + v.local_crop_vox / 2 for s in d.local_start]
        assert d.location == location_label(centre, shape, v.location_grid, v.location_axes)
    with pytest.raises(ValueError, match="smaller than the global crop"):
        draw_sample(sample_rng(0, 0, 0), (100, 150, 150), cfg)
