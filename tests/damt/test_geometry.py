"""Geometry invariants (property tests): extent kept by resampling, reorientation inverts,
crop/pad round-trips, affines track world positions, scaling respects the percentiles."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from damt import geometry as geo

shapes = st.tuples(*[st.integers(4, 40)] * 3)
spacings = st.tuples(*[st.floats(0.5, 2.0)] * 3)


def _affine(spacing, codes="LIA"):
    """Affine whose voxel axis i runs along world axis/direction codes[i] with edge spacing[i]."""
    aff = np.eye(4)
    aff[:3, 3] = [3.0, -7.0, 11.0]
    for i, (axis, flip) in enumerate(nib.orientations.axcodes2ornt(tuple(codes))):
        aff[:3, i] = 0.0
        aff[int(axis), i] = flip * spacing[i]
    return aff


def _world(affine, ijk):
    return affine[:3, :3] @ np.asarray(ijk, dtype=float) + affine[:3, 3]


@settings(max_examples=40, deadline=None)
@given(shape=shapes, spacing=spacings, target=st.floats(0.6, 2.5))
def test_resampling_keeps_physical_extent_and_centre(shape, spacing, target):
    aff = _affine(spacing)
    data = np.random.default_rng(0).random(shape).astype(np.float32)
    out, new_aff = geo.resample(data, aff, target, order=1)
    extent_in = np.asarray(shape) * geo.voxel_sizes(aff)
    extent_out = np.asarray(out.shape) * target
    assert np.all(np.abs(extent_out - extent_in) <= target / 2 + 1e-9)   # within half a voxel
    np.testing.assert_allclose(geo.voxel_sizes(new_aff), target, rtol=1e-9)
    centre_in = _world(aff, (np.asarray(shape) - 1) / 2)
    centre_out = _world(new_aff, (np.asarray(out.shape) - 1) / 2)
    np.testing.assert_allclose(centre_in, centre_out, atol=1e-6)        # same physical centre


def test_resampling_identity_and_nearest_labels():
    data = np.arange(5 * 6 * 7, dtype=np.float32).reshape(5, 6, 7)
    out, aff = geo.resample(data, np.eye(4), 1.0, order=1)
    np.testing.assert_allclose(out, data, atol=1e-4)
    labels = np.random.default_rng(1).integers(0, 5, (20, 20, 20)).astype(np.uint8)
    out, _ = geo.resample(labels, np.eye(4), 1.25, order=0, out_dtype=np.uint8)
    assert out.dtype == np.uint8 and set(np.unique(out)) <= set(range(5))


@settings(max_examples=30, deadline=None)
@given(shape=shapes, codes=st.sampled_from(["LIA", "RAS", "LPS", "PIR", "SAR", "ILP"]))
def test_reorientation_inverts_and_keeps_world_positions(shape, codes):
    aff = _affine((1.0, 1.2, 0.9), codes)
    assert geo.axcodes(aff) == codes
    data = np.random.default_rng(2).random(shape)
    ras, ras_aff = geo.reorient(data, aff, "RAS")
    assert geo.axcodes(ras_aff) == "RAS"
    back, back_aff = geo.reorient(ras, ras_aff, codes)
    np.testing.assert_array_equal(back, data)
    np.testing.assert_allclose(back_aff, aff, atol=1e-9)
    # the voxel holding the maximum sits at the same world position in both frames
    i = np.unravel_index(np.argmax(data), shape)
    j = np.unravel_index(np.argmax(ras), ras.shape)
    np.testing.assert_allclose(_world(aff, i), _world(ras_aff, j), atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(shape=shapes, min_shape=st.integers(1, 48))
def test_pad_then_crop_round_trips(shape, min_shape):
    data = np.random.default_rng(3).random(shape)
    aff = _affine((1.0, 1.0, 1.0))
    padded, p_aff, pads = geo.pad_to_min(data, aff, min_shape)
    assert all(n >= min(min_shape, n) and n >= min_shape or n == s for n, s in zip(padded.shape, shape))
    box = tuple(slice(b, b + n) for (b, _), n in zip(pads, shape))
    cropped, c_aff = geo.crop(padded, p_aff, box)
    np.testing.assert_array_equal(cropped, data)
    np.testing.assert_allclose(c_aff, aff, atol=1e-9)


def test_foreground_box_with_margin():
    mask = np.zeros((10, 12, 14), bool)
    mask[3:5, 4:9, 0:2] = True
    box = geo.foreground_box(mask, margin=2)
    assert box == (slice(1, 7), slice(2, 11), slice(0, 4))
    assert geo.foreground_box(np.zeros((3, 3, 3), bool), 1) is None


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), low=st.floats(0.0, 5.0), high=st.floats(95.0, 100.0))
def test_scaling_respects_percentiles(seed, low, high):
    data = np.random.default_rng(seed).gamma(2.0, 30.0, (20, 20, 20)).astype(np.float32)
    mask = np.zeros(data.shape, bool)
    mask[2:18, 2:18, 2:18] = True
    lo, hi = geo.percentile_range(data, mask, low, high)
    out = geo.scale_intensity(data, mask, lo, hi)
    assert out.dtype == np.float32 and out.min() >= 0.0 and out.max() <= 1.0
    assert np.all(out[~mask] == 0.0)
    inside = out[mask]
    n = inside.size
    assert (inside <= 0.0).sum() <= np.ceil(n * low / 100) + 1     # at most the low tail clips to 0
    assert (inside >= 1.0).sum() <= np.ceil(n * (100 - high) / 100) + 1
