"""Config values that would poison a run are refused at start (issue 12, items 7 and 12): NaN and
inf in every float key, empty paths, seeds beyond what the RNGs take."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from damt.config import ConfigError, DamtConfig, load_config


def _float_keys(cls=DamtConfig, prefix=""):
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _float_keys(tp, f"{prefix}{f.name}.")
        elif tp is float or typing.get_args(tp)[:1] == (float,) or tp == list[float]:
            yield f"{prefix}{f.name}", tp


FLOAT_KEYS = sorted(_float_keys())


def test_the_walk_finds_the_float_keys():
    names = {k for k, _ in FLOAT_KEYS}
    assert {"optim.base_lr", "preprocess.spacing_mm", "optim.betas", "dask.memory_limit_gb"} <= names
    assert len(names) >= 20


@pytest.mark.parametrize("key, tp", FLOAT_KEYS, ids=[k for k, _ in FLOAT_KEYS])
@pytest.mark.parametrize("bad", [".nan", ".inf", "-.inf"])
def test_every_float_key_refuses_non_finite_values(key, tp, bad):
    value = f"[{bad}, {bad}]" if tp == list[float] else bad
    with pytest.raises(ConfigError, match="finite number") as err:
        load_config(None, [f"{key}={value}"])
    assert str(err.value).startswith(key)


@pytest.mark.parametrize("key", ["data.cache_dir", "train.out_dir", "qc.out_dir"])
def test_empty_paths_are_refused(key):
    with pytest.raises(ConfigError, match="empty path"):
        load_config(None, [f"{key}=''"])


@pytest.mark.parametrize("key", ["train.seed", "qc.seed"])
def test_seeds_stay_in_range(key):
    assert load_config(None, [f"{key}=4294967295"])
    with pytest.raises(ConfigError, match="must be <="):
        load_config(None, [f"{key}=4294967296"])
