"""Defect 1 of the original (METHOD.md): it resampled the T1 with nearest neighbour. The image must
be resampled (tri)linearly; the parcellation stays nearest."""

from __future__ import annotations

import numpy as np
import pytest

from damt.config import load_config
from damt.io import Volume
from damt.labels import load_label_table
from damt.synth import conformed_affine
from preprocess.subject import preprocess_volumes

GRADIENT = np.array([0.9, -0.6, 0.45])  # intensity per voxel along the input's LIA axes


@pytest.fixture(scope="module")
def ramp():
    """A 1 mm LIA head whose T1 is a linear function of the voxel position: trilinear resampling
    reproduces a linear function exactly, nearest neighbour is off by up to half a voxel's step."""
    n = 40
    affine = conformed_affine((n, n, n))
    ijk = np.indices((n, n, n), dtype=np.float64)
    image = (120.0 + np.tensordot(GRADIENT, ijk - n / 2, axes=1)).astype(np.float32)
    parc = np.full((n, n, n), 2, dtype=np.int32)  # white matter everywhere: no crop, no mask edge
    cfg = load_config(None, [])
    out = preprocess_volumes(Volume(image, affine, "t1"), Volume(parc, affine, "parc"),
                             cfg.preprocess, load_label_table("damt-v1").lookup())
    return out, affine, n


def test_image_is_resampled_linearly_not_nearest(ramp):
    out, affine, n = ramp
    assert out.info["resampled_shape"] == [32, 32, 32]  # 40 mm at 1.25 mm
    # every output voxel's centre in input voxel coordinates, through the two affines
    to_input = np.linalg.inv(affine) @ np.asarray(out.info["affine"])
    ijk = np.indices(out.image.shape).reshape(3, -1)
    src = to_input[:3, :3] @ ijk + to_input[:3, 3:4]
    inside = np.all((src >= 0) & (src <= n - 1), axis=0)  # interpolation without edge clamping
    raw = 120.0 + GRADIENT @ (src[:, inside] - n / 2)      # the T1's exact value there
    lo, hi = out.info["percentile_values"]
    want = np.clip((raw - lo) / (hi - lo), 0, 1)
    got = out.image.reshape(-1)[inside].astype(np.float64)
    assert inside.sum() > 20000
    # float16 storage rounds by at most 2^-11 relative; nearest neighbour errs by up to
    # 0.5 * (0.9 + 0.6 + 0.45) / (hi - lo) ~ 1.4e-2 here
    assert np.abs(got - want).max() < 1.5e-3


def test_parcellation_stays_nearest(ramp):
    out, _, _ = ramp
    assert out.atlas.dtype == np.uint8
    assert set(np.unique(out.atlas)) <= {0, int(load_label_table("damt-v1").lookup()[2])}
