"""Read pipeline.yaml (safely), apply ``--set`` overrides, validate once, hash and save.

YAML is read with a SafeLoader subclass that rejects duplicate keys: PyYAML's default keeps the
last one silently, which turns a copy-paste slip into a wrong experiment.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

import yaml

from damt.config.schema import DamtConfig
from damt.config.validate import ConfigError, build, to_dict


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate mapping keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    loader.flatten_mapping(node)
    out: dict = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in out:
            line = key_node.start_mark.line + 1
            raise ConfigError(str(key), f"duplicate key (again at line {line})")
        out[key] = loader.construct_object(value_node, deep=deep)
    return out


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def safe_load_yaml(text: str, source: str = "<string>") -> Any:
    """Parse YAML text with the safe, duplicate-rejecting loader. Raises ConfigError."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except ConfigError as err:
        raise ConfigError(err.path, f"{err.reason} in {source}") from None
    except yaml.YAMLError as err:
        raise ConfigError("", f"{source} is not valid YAML: {err}") from None


def apply_overrides(data: dict, overrides: Iterable[str]) -> dict:
    """Return a copy of ``data`` with ``a.b.c=value`` overrides applied.

    The value is parsed as a YAML scalar or flow collection with the same safe loader, so
    ``--set train.epochs=3`` gives an int and ``--set model.depths=[1,1]`` a list. Types, keys and
    ranges are then checked by the same validation as the file.
    """
    data = copy.deepcopy(data) if data else {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(item, "an override must look like key.path=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        if not all(parts):
            raise ConfigError(key, "empty key in override path")
        node = data
        for i, part in enumerate(parts[:-1]):
            nxt = node.setdefault(part, {})
            if not isinstance(nxt, dict):
                raise ConfigError(".".join(parts[: i + 1]), "is a value, not a section")
            node = nxt
        node[parts[-1]] = safe_load_yaml(raw, source=f"--set {key}") if raw.strip() else ""
    return data


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> DamtConfig:
    """Load, override and validate the config. ``path=None`` means the built-in defaults."""
    data: Any = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError("", f"config file {p} does not exist")
        data = safe_load_yaml(p.read_text(), source=str(p)) or {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{path}: the top level must be a mapping of sections")
    return build(DamtConfig, apply_overrides(data, overrides))


def canonical_json(obj: Any) -> str:
    """Key-sorted, whitespace-free JSON, the input of every hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(cfg: Any) -> str:
    """sha256 (hex, 16 chars) of a config (sub)tree's canonical JSON."""
    return hashlib.sha256(canonical_json(to_dict(cfg)).encode()).hexdigest()[:16]


def dump_config(cfg: DamtConfig) -> str:
    """The resolved config as YAML text, with its hash in a header comment."""
    body = yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=None)
    return f"# resolved DAMT config, hash {config_hash(cfg)}\n{body}"
