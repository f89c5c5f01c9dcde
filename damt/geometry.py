"""Pure geometric and intensity operations of METHOD.md preprocessing steps 2-5.

Every function takes arrays and returns new arrays plus the updated voxel-to-world affine, so the
physical placement of the data is tracked exactly through the chain. Axis order is the array's.
"""

from __future__ import annotations

import numpy as np
from nibabel import orientations as nio
from scipy import ndimage


def voxel_sizes(affine: np.ndarray) -> np.ndarray:
    """Voxel edge lengths (float64 [3], mm) from a 4x4 affine: the column norms of its 3x3 part."""
    return np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))


def axcodes(affine: np.ndarray) -> str:
    """Orientation codes like 'LIA' of an affine (nibabel's aff2axcodes, joined)."""
    return "".join(nio.aff2axcodes(affine))


def reorient(data: np.ndarray, affine: np.ndarray, target: str) -> tuple[np.ndarray, np.ndarray]:
    """Permute/flip axes so the volume has orientation ``target`` (e.g. 'RAS'); no interpolation.

    data: [X, Y, Z] any dtype. Returns (data view-free copy [X', Y', Z'], new affine float64 [4, 4]).
    The world position of every voxel is unchanged.
    """
    current = nio.io_orientation(affine)
    wanted = nio.axcodes2ornt(tuple(target.upper()))
    transform = nio.ornt_transform(current, wanted)
    out = np.ascontiguousarray(nio.apply_orientation(data, transform))
    new_affine = affine @ nio.inv_ornt_aff(transform, data.shape)
    return out, new_affine


def foreground_box(mask: np.ndarray, margin: int) -> tuple[slice, slice, slice] | None:
    """Bounding box (3 slices) of the True voxels of ``mask`` [X, Y, Z] grown by ``margin`` voxels
    and clipped to the array; None if ``mask`` has no True voxel."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        if hits.size == 0:
            return None
        box.append(slice(max(int(hits[0]) - margin, 0), min(int(hits[-1]) + 1 + margin, mask.shape[axis])))
    return tuple(box)  # type: ignore[return-value]


def crop(data: np.ndarray, affine: np.ndarray, box: tuple[slice, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Crop ``data`` [X, Y, Z] to ``box``; the affine's origin moves to the box's first voxel."""
    start = np.array([s.start for s in box], dtype=np.float64)
    new_affine = affine.copy()
    new_affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return np.ascontiguousarray(data[box]), new_affine


def resampled_shape(shape: tuple[int, ...], in_spacing: np.ndarray, spacing: float) -> tuple[int, int, int]:
    """Output shape that keeps each axis' physical extent within half an output voxel."""
    extent = np.asarray(shape, dtype=np.float64) * in_spacing
    return tuple(int(max(1, round(e / spacing))) for e in extent)  # type: ignore[return-value]


def resample(data: np.ndarray, affine: np.ndarray, spacing: float, order: int,
             out_dtype: np.dtype | type = np.float32) -> tuple[np.ndarray, np.ndarray]:
    """Resample ``data`` [X, Y, Z] to isotropic ``spacing`` mm along its own voxel axes.

    order: spline order (0 nearest for labels, 1 trilinear, 3 cubic). The output grid covers the
    same physical extent as the input (``n * s`` per axis), centred on it, to within half an output
    voxel: output voxel j's centre sits at input voxel coordinate ``((j + 0.5) * t - off) / s - 0.5``
    with ``off = (m * t - n * s) / 2``. Returns (data [X', Y', Z'] of ``out_dtype``, new affine).
    """
    in_spacing = voxel_sizes(affine)
    out_shape = resampled_shape(data.shape, in_spacing, spacing)
    scale = spacing / in_spacing                                   # input voxels per output voxel
    off = (np.asarray(out_shape) * spacing - np.asarray(data.shape) * in_spacing) / 2.0
    # input voxel coordinate of output voxel 0's centre
    start = (0.5 * spacing - off) / in_spacing - 0.5
    src = data if order == 0 else data.astype(np.float32, copy=False)
    out = ndimage.affine_transform(src, scale, offset=start, output_shape=out_shape, order=order,
                                   mode="nearest", prefilter=order > 1, output=np.dtype(out_dtype))
    new_affine = affine.copy()
    new_affine[:3, :3] = affine[:3, :3] * scale[None, :]
    new_affine[:3, 3] = affine[:3, :3] @ start + affine[:3, 3]
    return out, new_affine


def pad_to_min(data: np.ndarray, affine: np.ndarray, min_shape: int) -> tuple[np.ndarray, np.ndarray,
                                                                            tuple[tuple[int, int], ...]]:
    """Zero-pad each axis of ``data`` [X, Y, Z] to at least ``min_shape``, centred (the extra odd
    voxel goes after). Returns (padded, new affine, ((before, after), ...) per axis)."""
    pads = []
    for n in data.shape:
        extra = max(min_shape - n, 0)
        pads.append((extra // 2, extra - extra // 2))
    out = np.pad(data, pads, mode="constant", constant_values=0)
    new_affine = affine.copy()
    before = np.array([p[0] for p in pads], dtype=np.float64)
    new_affine[:3, 3] = affine[:3, 3] - affine[:3, :3] @ before
    return out, new_affine, tuple(pads)


def percentile_range(data: np.ndarray, mask: np.ndarray, low: float, high: float) -> tuple[float, float]:
    """The ``low``/``high`` percentiles (in percent) of ``data`` over the True voxels of ``mask``."""
    values = data[mask]
    lo, hi = np.percentile(values, [low, high])
    return float(lo), float(hi)


def scale_intensity(data: np.ndarray, mask: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly to [0, 1], clip, and zero every voxel outside ``mask``.

    data: [X, Y, Z] float; mask: bool, same shape. Returns float32. Requires hi > lo.
    """
    out = (data.astype(np.float32) - np.float32(lo)) * np.float32(1.0 / (hi - lo))
    np.clip(out, 0.0, 1.0, out=out)
    out[~mask] = 0.0
    return out
