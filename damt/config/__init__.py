"""Typed configuration: one tree, validated once at start (see docs/config.md)."""

from damt.config.load import apply_overrides, config_hash, dump_config, load_config, safe_load_yaml
from damt.config.schema import (
    DamtConfig,
    DaskConfig,
    DataConfig,
    LabelsConfig,
    ModelConfig,
    OptimConfig,
    PreprocessConfig,
    TasksConfig,
    TrainConfig,
    ViewsConfig,
)
from damt.config.validate import ConfigError, describe, to_dict

__all__ = [
    "ConfigError", "DamtConfig", "DaskConfig", "DataConfig", "LabelsConfig", "ModelConfig",
    "OptimConfig", "PreprocessConfig", "TasksConfig", "TrainConfig", "ViewsConfig",
    "apply_overrides", "config_hash", "describe", "dump_config", "load_config", "safe_load_yaml",
    "to_dict",
]
