"""Which config keys affect what, derived from the ``scope`` each field declares.

Every leaf key of the config has one scope (damt.config.validate.SCOPES, docs/config.md "Scopes"):

* ``store``: changes what a subject store holds. Part of the preprocess hash (so a change rebuilds
  the stores): ``preprocess.*`` by value, ``labels.table`` through the label table's bytes,
  ``targets.*`` through the target plan. ``damt embed`` reports these when the cache was built
  with other values than the checkpoint's config. Binding on resume.
* ``cache``: changes how the cache is written (store chunks and codec) or which input files
  preprocess admits (its size guard), never a store's values. Not hashed (``damt cache
  relayout`` applies a layout change to an existing cache). Binding on resume.
* ``run``: changes the numbers of a training run (views, model, tasks, optimiser, seed, batch,
  length, precision, target normalisation). Binding on resume.
* ``io``: changes neither a store nor a run's numbers: where inputs and outputs are, workers,
  loader speed, logging, checkpoint cadence, reports. Free on resume.

The preprocess hash, the resume check and embed's comparison take their keys from here, so a new
key is classified once, where it is declared, and a key without a scope fails a test.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Any

from damt.config.validate import SCOPES, to_dict


def field_scope(cls: type, field: dataclasses.Field) -> str | None:
    """The scope of ``field`` of config class ``cls``: its own, else the class's ``SCOPE``."""
    return field.metadata.get("scope") or getattr(cls, "SCOPE", None)


@functools.cache
def key_scopes(cls: type, prefix: str = "") -> dict[str, str | None]:
    """Dotted leaf key -> scope for config class ``cls`` (None where a field declares none).
    Leaves are what ``to_dict`` and the resume check flatten to: a list, even of sections, is one
    leaf."""
    out: dict[str, str | None] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            out |= key_scopes(hints[f.name], f"{prefix}{f.name}.")
        else:
            out[f"{prefix}{f.name}"] = field_scope(cls, f)
    return out


def keys_in_scope(cls: type, scope: str) -> frozenset[str]:
    """The dotted leaf keys of config class ``cls`` whose scope is ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"scope {scope!r} is not one of {SCOPES}")
    return frozenset(k for k, s in key_scopes(cls).items() if s == scope)


def scoped_dict(obj: Any, scope: str) -> dict[str, Any]:
    """``to_dict(obj)`` cut to the keys of ``scope``, in field order; a section left empty is
    dropped. The preprocess hash hashes ``scoped_dict(cfg.preprocess, "store")``."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            sub = scoped_dict(value, scope)
            if sub:
                out[f.name] = sub
        elif field_scope(type(obj), f) == scope:
            out[f.name] = to_dict(value)
    return out
