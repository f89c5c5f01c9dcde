"""Robust column normalisation: constant columns, outliers, heavy tails, presence."""

from __future__ import annotations

import json

import numpy as np
import pytest

from damt.config.targets import NormaliseConfig
from damt.targets.normalise import apply, fit, fit_kwargs, tail_ratio


def _roundtrip(stats: dict) -> dict:
    return json.loads(json.dumps(stats))          # must be JSON-serialisable as targets.json


def test_constant_and_empty_columns_give_zeros_not_nan():
    values = np.zeros((6, 3), dtype=np.float32)
    values[:, 0] = 5.0                           # constant
    values[:, 1] = [1, 1, 1, 1, 1, 2]            # IQR and MAD zero, std not
    present = np.ones_like(values, dtype=bool)
    present[:, 2] = False                        # never present
    stats = _roundtrip(fit(values, present))
    out = apply(values, present, stats)
    assert out.dtype == np.float32 and np.isfinite(out).all()
    assert (out[:, 0] == 0).all() and (out[:, 2] == 0).all()
    assert stats["scale"][0] == 1.0 and stats["n_present"] == [6, 6, 0]
    assert out[5, 1] > 0 and (out[:5, 1] == out[0, 1]).all()
    assert stats["centre"][2] == 0.0 and stats["scale"][2] == 1.0


def test_outlier_barely_moves_scale():
    rng = np.random.default_rng(0)
    x = rng.normal(100.0, 15.0, size=(200, 1)).astype(np.float32)
    present = np.ones_like(x, dtype=bool)
    clean = fit(x, present, transform="none")
    x_out = x.copy()
    x_out[0, 0] = 1e6
    dirty = fit(x_out, present, transform="none")
    assert dirty["scale"][0] == pytest.approx(clean["scale"][0], rel=0.05)
    assert dirty["centre"][0] == pytest.approx(clean["centre"][0], abs=1.0)
    assert clean["scale"][0] == pytest.approx(15.0, rel=0.15)
    z = apply(x_out, present, dirty)
    assert z[0, 0] == 10.0                       # clipped, documented +-10
    assert np.abs(z[1:]).max() < 5


def test_heavy_tailed_column_ends_sane():
    rng = np.random.default_rng(1)
    heavy = rng.lognormal(0.0, 2.5, size=300) * 1000.0       # radiomics-like spread
    normal = rng.normal(0.0, 1.0, size=300)
    values = np.stack([heavy, -heavy, normal], axis=1).astype(np.float32)
    present = np.ones_like(values, dtype=bool)
    stats = fit(values, present)
    assert stats["transform"] == ["asinh", "asinh", "none"]
    assert tail_ratio(normal) < 10 < tail_ratio(heavy)
    z = apply(values, present, stats)
    assert np.isfinite(z).all() and np.abs(z).max() <= 10
    for j in range(3):
        assert 0.5 < np.std(z[:, j]) < 2.0       # unit-ish spread, not ~250x
        assert abs(np.median(z[:, j])) < 0.1
    assert np.argsort(z[:, 0]).tolist() == np.argsort(heavy, kind="stable").tolist()  # monotone
    plain = apply(values, present, fit(values, present, transform="none"))
    assert (np.abs(plain[:, 0]) == 10).sum() > (np.abs(z[:, 0]) == 10).sum()


def test_not_present_entries_are_ignored_and_zeroed():
    values = np.array([[1.0], [2.0], [3.0], [1e9], [np.nan]], dtype=np.float32)
    present = np.array([[True], [True], [True], [False], [True]])   # NaN counts as absent
    stats = fit(values, present)
    assert stats["centre"] == [2.0] and stats["n_present"] == [3]
    out = apply(values, present, stats)
    assert out[3, 0] == 0 and out[4, 0] == 0 and out[1, 0] == 0
    single = apply(values[0], present[0], stats)              # one subject, 1-D
    assert single.shape == (1,) and single[0] < 0


def test_standard_method_config_and_errors():
    values = np.array([[1.0, 4.0], [3.0, 4.0]], dtype=np.float32)
    present = np.ones_like(values, dtype=bool)
    stats = fit(values, present, **fit_kwargs(NormaliseConfig(method="standard"), "radiomics"))
    assert stats["centre"] == [2.0, 4.0] and stats["scale"] == [1.0, 1.0]
    assert apply(values, present, stats).tolist() == [[-1.0, 0.0], [1.0, 0.0]]
    kw = fit_kwargs(NormaliseConfig(), "morphometry")
    assert kw["transform"] == "none" and kw["clip"] == 10.0
    assert fit_kwargs(NormaliseConfig(), "radiomics")["transform"] == "auto"
    with pytest.raises(ValueError, match="one shape"):
        fit(values, present[:, :1])
    with pytest.raises(ValueError, match="do not match"):
        apply(values[:, :1], present[:, :1], stats)
