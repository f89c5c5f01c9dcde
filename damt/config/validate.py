"""Turn plain YAML data into typed config dataclasses, strictly.

Every config section is a frozen dataclass whose fields carry metadata made by :func:`setting`
(a one-line doc, a unit, a range or a set of choices). :func:`build` walks the dataclass tree and
checks a nested ``dict`` against it. The rules are strict on purpose, because a silently
mis-typed YAML value is the most common way a long run goes wrong:

* unknown keys are errors (a typo must never fall back to a default);
* ``bool`` is never accepted where a number or string is expected (YAML reads ``yes`` as True);
* a string is never accepted where a number is expected (YAML 1.1 reads ``1e-3`` as a string);
* an ``int`` is accepted for a ``float`` field, never the other way round;
* numbers must be finite (YAML's ``.nan`` and ``.inf`` are refused);
* a path may not be empty (``Path("")`` is the current folder);
* ranges and choices are checked after the type.

Every error names the dotted key path, e.g. ``preprocess.spacing_mm``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from typing import Any, Literal, get_args, get_origin


class ConfigError(ValueError):
    """A config value, key or file is invalid. ``str(err)`` names the key path and the reason."""

    def __init__(self, path: str, reason: str):
        self.path = path
        self.reason = reason
        super().__init__(f"{path or '<root>'}: {reason}")


#: what a config key affects (docs/config.md "Scopes"); the rules that depend on it (the preprocess
#: hash, the resume check, embed's cache comparison) are derived from it in damt/config/scopes.py
SCOPES = ("store", "cache", "run", "io")


def setting(default: Any, doc: str, unit: str | None = None, lo: float | None = None,
            hi: float | None = None, choices: tuple | None = None, scope: str | None = None) -> Any:
    """Declare a config field: its default, a one-line doc, its unit, its valid range and its scope.

    ``lo``/``hi`` are inclusive bounds, checked on numbers and on each element of numeric lists.
    Mutable defaults (lists, dicts) are copied per instance. ``scope`` (one of :data:`SCOPES`) says
    what the key affects; without it the field takes its class's ``SCOPE`` (a section whose keys
    all affect the same thing declares it once).
    """
    if scope is not None and scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not one of {SCOPES}")  # a schema bug, not user input
    meta = {"doc": doc, "unit": unit, "lo": lo, "hi": hi, "choices": choices, "scope": scope}
    if isinstance(default, (list, dict)):
        return dataclasses.field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def section(cls: type, doc: str = "") -> Any:
    """Declare a nested section field whose default is ``cls()``."""
    return dataclasses.field(default_factory=cls, metadata={"doc": doc or (cls.__doc__ or "").strip()})


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _check_scalar(path: str, value: Any, tp: Any) -> Any:
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected true/false, got {value!r} ({type(value).__name__})")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {value!r} ({type(value).__name__})")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            hint = ""
            if isinstance(value, str):
                hint = " (YAML 1.1 reads exponents without a dot, like 1e-3, as strings: write 1.0e-3)"
            raise ConfigError(path, f"expected a number, got {value!r} ({type(value).__name__}){hint}")
        if not math.isfinite(value):  # YAML reads .nan and .inf: a NaN lr trains a NaN model
            raise ConfigError(path, f"expected a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            hint = " (YAML reads yes/no/on/off as booleans: quote the value)" if isinstance(value, bool) else ""
            raise ConfigError(path, f"expected a string, got {value!r} ({type(value).__name__}){hint}")
        return value
    raise ConfigError(path, f"unsupported field type {_type_name(tp)}")  # a schema bug, not user input


def _check_value(path: str, value: Any, tp: Any) -> Any:
    origin = get_origin(tp)
    if origin is Literal:
        allowed = get_args(tp)
        if isinstance(value, bool) or value not in allowed:
            raise ConfigError(path, f"expected one of {list(allowed)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if value is None:
            if type(None) in get_args(tp):
                return None
            raise ConfigError(path, "may not be null")
        return _check_value(path, value, args[0])
    if origin in (list, tuple):
        (elem,) = get_args(tp)[:1]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(path, f"expected a list, got {value!r} ({type(value).__name__})")
        out = [_check_value(f"{path}[{i}]", v, elem) for i, v in enumerate(value)]
        return out if origin is list else tuple(out)
    if origin is dict:
        ktp, vtp = get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(path, f"expected a mapping, got {value!r}")
        return {_check_value(f"{path}.<key>", k, ktp): _check_value(f"{path}.{k}", v, vtp)
                for k, v in value.items()}
    if dataclasses.is_dataclass(tp):
        return build(tp, value, path)
    if value is None:
        raise ConfigError(path, "may not be null")
    return _check_scalar(path, value, tp)


def _check_bounds(path: str, value: Any, meta: typing.Mapping[str, Any]) -> None:
    lo, hi, choices = meta.get("lo"), meta.get("hi"), meta.get("choices")
    items = value if isinstance(value, (list, tuple)) else [value]
    for i, v in enumerate(items):
        where = f"{path}[{i}]" if isinstance(value, (list, tuple)) else path
        if choices is not None and v not in choices:
            raise ConfigError(where, f"expected one of {list(choices)}, got {v!r}")
        if meta.get("unit") == "path" and isinstance(v, str) and not v.strip():
            # Path("") is the current folder: an empty path would write there
            raise ConfigError(where, "may not be an empty path")
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            if lo is not None and v < lo:
                raise ConfigError(where, f"must be >= {lo}, got {v!r}")
            if hi is not None and v > hi:
                raise ConfigError(where, f"must be <= {hi}, got {v!r}")


def build(cls: type, data: Any, path: str = "", base: Any = None) -> Any:
    """Build dataclass ``cls`` from nested plain data, checking keys, types and ranges.

    Missing keys keep their value in ``base`` (default: ``cls()``), so a nested section given in
    part keeps its own defaults for the rest. Returns an instance of ``cls``; raises ConfigError.
    A class may define ``_check(self, path) -> None`` for cross-field rules; it runs last.
    """
    base = cls() if base is None else base
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(path, f"expected a mapping, got {data!r} ({type(data).__name__})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        where = ".".join(p for p in (path, str(unknown[0])) if p)
        raise ConfigError(where, f"unknown key (known keys here: {', '.join(sorted(fields))})")
    kwargs = {}
    for name, f in fields.items():
        sub = f"{path}.{name}" if path else name
        if name in data and dataclasses.is_dataclass(hints[name]):
            kwargs[name] = build(hints[name], data[name], sub, base=getattr(base, name))
        elif name in data:
            value = _check_value(sub, data[name], hints[name])
            _check_bounds(sub, value, f.metadata)
            kwargs[name] = value
    obj = dataclasses.replace(base, **kwargs)
    check = getattr(obj, "_check", None)
    if check is not None:
        check(path)
    return obj


def to_dict(obj: Any) -> Any:
    """Plain nested data (dicts, lists, scalars) from a config dataclass tree; tuples become lists."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def describe(obj: Any, prefix: str = "") -> list[tuple[str, str, str, str, str]]:
    """Rows (key path, type, default, unit, doc) for every leaf field of config instance ``obj``."""
    rows = []
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        default = getattr(obj, f.name)
        if dataclasses.is_dataclass(tp):
            rows.extend(describe(default, key + "."))
            continue
        meta = f.metadata
        rng = ""
        if meta.get("lo") is not None or meta.get("hi") is not None:
            rng = f" [{meta.get('lo', '')}, {meta.get('hi', '')}]".replace("None", "")
        rows.append((key, _type_name(tp) + rng, repr(default), meta.get("unit") or "", meta.get("doc", "")))
    return rows
