"""Render the config tree as commented YAML (pipeline.yaml) and as a Markdown reference table."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

import yaml

from damt.config.scopes import key_scopes
from damt.config.validate import describe


def _yaml_value(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        text = repr(value)
        # YAML 1.1 reads "5e-04" as a string; always write a dot before the exponent
        if "e" in text and "." not in text.split("e")[0]:
            mant, exp = text.split("e")
            text = f"{mant}.0e{exp}"
        return text
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def to_commented_yaml(obj: Any, indent: int = 0) -> str:
    """YAML text of a config instance, each field preceded by a comment with its doc and unit."""
    lines: list[str] = []
    pad = " " * indent
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        doc = " ".join(f.metadata.get("doc", "").split())  # one line, whatever the docstring
        unit = f.metadata.get("unit")
        if dataclasses.is_dataclass(hints[f.name]):
            if indent == 0:
                lines.append("")
            lines.append(f"{pad}# {doc}" if doc else f"{pad}#")
            lines.append(f"{pad}{f.name}:")
            lines.append(to_commented_yaml(value, indent + 2))
            continue
        comment = f"{doc} [{unit}]" if unit else doc
        lines.append(f"{pad}{f.name}: {_yaml_value(value)}  # {comment}")
    return "\n".join(lines)


#: what each scope means, as docs/config.md shows it (damt/config/scopes.py derives the rules)
SCOPE_LEGEND = (
    ("store", "changes what a subject store holds: part of the preprocess hash (a change rebuilds "
              "the stores), reported by `damt embed` when the cache differs, binding on resume"),
    ("cache", "changes how the cache is written (chunks, codec) or which input files preprocess "
              "admits, never a store's values: not hashed (`damt cache relayout` applies a layout "
              "change), binding on resume"),
    ("run", "changes the numbers of a training run: binding on resume (`--allow-config-change` "
            "overrides)"),
    ("io", "changes neither a store nor a run's numbers (paths, workers, loader speed, logging, "
           "checkpoint cadence, reports): free on resume"),
)


def to_markdown(obj: Any) -> str:
    """The scope legend, then a Markdown table of every key: path, type and range, default, unit,
    scope, meaning."""
    scopes = key_scopes(type(obj))
    rows = ["Scopes (what a key affects; the resume check, `damt embed`'s cache comparison and the "
            "preprocess hash are derived from them):", ""]
    rows += [f"- **{name}**: {text}" for name, text in SCOPE_LEGEND]
    rows += ["", "| key | type | default | unit | scope | meaning |", "|---|---|---|---|---|---|"]
    for key, tp, default, unit, doc in describe(obj):
        rows.append(f"| `{key}` | {tp} | `{default}` | {unit} | {scopes.get(key) or ''} | "
                    f"{doc.replace('|', '/')} |")
    return "\n".join(rows)
