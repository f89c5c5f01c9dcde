"""Config tree: defaults equal pipeline.yaml, strict checks name the key path, overrides, hashing."""

from __future__ import annotations

import pytest

from damt.config import ConfigError, DamtConfig, config_hash, dump_config, load_config, safe_load_yaml


def _err(tmp_path, text, overrides=()):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(p, overrides)
    return str(info.value)


def test_pipeline_yaml_holds_every_default(repo):
    assert load_config(repo / "pipeline.yaml") == DamtConfig()


def test_method_defaults():
    c = DamtConfig()
    assert c.preprocess.spacing_mm == 1.25 and c.preprocess.min_shape_vox == 128
    assert (c.preprocess.percentile_low, c.preprocess.percentile_high) == (0.05, 99.95)
    assert c.model.depths == [2, 2, 18, 2] and c.model.num_heads == [3, 6, 12, 24]
    assert c.tasks.atlas.weight == 0.5 and c.tasks.morphometry.weight == 5.0
    assert c.optim.base_lr == 5e-4 and c.optim.lr_reference_batch == 256
    assert c.views.mim_mask_ratio == 0.75 and c.tasks.contrastive_temperature == 0.5


def test_tiny_config_loads(repo):
    c = load_config(repo / "configs" / "tiny.yaml")
    assert c.model.embed_dim < DamtConfig().model.embed_dim
    assert c.preprocess == DamtConfig().preprocess  # the tiny config never changes the cache


def test_unknown_key_names_path(tmp_path):
    assert _err(tmp_path, "preprocess:\n  spacing: 1.0\n").startswith("preprocess.spacing: unknown key")


def test_duplicate_key_rejected(tmp_path):
    msg = _err(tmp_path, "train:\n  epochs: 3\n  epochs: 4\n")
    assert "epochs" in msg and "duplicate key" in msg


def test_yaml_exponent_string_rejected(tmp_path):
    msg = _err(tmp_path, "optim:\n  base_lr: 1e-3\n")
    assert msg.startswith("optim.base_lr") and "1.0e-3" in msg
    assert load_config(None, ["optim.base_lr=1.0e-3"]).optim.base_lr == 1e-3


def test_yes_is_a_bool_not_a_string(tmp_path):
    assert _err(tmp_path, "labels:\n  table: yes\n").startswith("labels.table: expected a string")
    assert _err(tmp_path, "train:\n  epochs: yes\n").startswith("train.epochs: expected an integer")


def test_range_and_choice_checks(tmp_path):
    assert _err(tmp_path, "preprocess:\n  spacing_mm: 0\n").startswith("preprocess.spacing_mm: must be >=")
    assert _err(tmp_path, "preprocess:\n  codec: gzip\n").startswith("preprocess.codec: expected one of")
    assert _err(tmp_path, "model:\n  depths: [2, 0]\n").startswith("model.depths[1]")
    assert "percentile_low" in _err(tmp_path, "preprocess:\n  percentile_low: 99.99\n")
    assert "global_crop_vox" in _err(tmp_path, "views:\n  global_crop_vox: 100\n")


def test_int_accepted_for_float_but_not_reverse():
    assert load_config(None, ["preprocess.spacing_mm=2"]).preprocess.spacing_mm == 2.0
    with pytest.raises(ConfigError, match="train.epochs: expected an integer"):
        load_config(None, ["train.epochs=2.5"])


def test_overrides_are_checked_like_the_file():
    with pytest.raises(ConfigError, match="^train.nope: unknown key"):
        load_config(None, ["train.nope=1"])
    with pytest.raises(ConfigError, match="override must look like"):
        load_config(None, ["train.epochs"])
    c = load_config(None, ["model.depths=[1,1,1,1]", "model.num_heads=[1,2,2,4]", "tasks.atlas.enabled=false"])
    assert c.model.depths == [1, 1, 1, 1] and not c.tasks.atlas.enabled
    assert c.tasks.atlas.weight == 0.5  # a partial section keeps its own defaults


def test_hash_and_dump_round_trip(tmp_path):
    c = load_config(None, ["train.epochs=7"])
    assert config_hash(c) == config_hash(load_config(None, ["train.epochs=7"]))
    assert config_hash(c) != config_hash(DamtConfig())
    p = tmp_path / "resolved.yaml"
    p.write_text(dump_config(c))
    assert load_config(p) == c


def test_safe_loader_refuses_python_tags():
    with pytest.raises(ConfigError, match="not valid YAML"):
        safe_load_yaml("a: !!python/object/apply:os.system ['true']")


def test_docs_config_reference_is_current(repo):
    """docs/config.md is generated from the config tree; regenerate it when a field changes."""
    from damt.config.render import to_markdown

    assert to_markdown(DamtConfig()) in (repo / "docs" / "config.md").read_text(), \
        "run: damt config --markdown and paste it into docs/config.md"
