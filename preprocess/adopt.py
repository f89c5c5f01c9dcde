"""Stores are the source of truth when the manifest lacks them (a run killed with ``kill -9``, or
interrupted before its manifest write, or a lost ``manifest.parquet``).

A complete store names its subject's cohort, input hash and config hash in its attributes. A
store the manifest does not know still *owns its id* for its cohort (another cohort's subject of
the same id never overwrites it), and becomes that subject's row again, without a rebuild, once
the task has re-hashed the subject's inputs and found the store's input hash.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import damt
from damt.cache import is_valid_id, manifest_row, read_store_attrs, store_path

_SUFFIX = ".zarr"


def store_owners(cache: Path, known: set[str]) -> dict[str, str]:
    """subject id -> cohort named by its complete store, for the stores whose id is not in
    ``known`` (the ids the manifest already owns). Lists ``<cache>/subjects`` and reads the
    attributes of unknown stores only, so a cache whose manifest is whole costs one listing."""
    folder = store_path(Path(cache), "x").parent  # the folder of the stores, as the cache names it
    if not folder.is_dir():
        return {}
    owners = {}
    for entry in os.scandir(folder):
        sid = entry.name[: -len(_SUFFIX)] if entry.name.endswith(_SUFFIX) else ""
        if not is_valid_id(sid) or sid in known:
            continue
        attrs = read_store_attrs(Path(entry.path))
        if attrs is not None and attrs.get("subject_id") == sid and is_valid_id(str(attrs.get("cohort", ""))):
            owners[sid] = str(attrs["cohort"])
    return owners


def store_row(cache: Path, subject_id: str, cohort: str) -> dict[str, Any] | None:
    """The manifest row a complete store of ``cohort`` stands for, or None (no complete store, or
    one of another cohort). Its ``input_hash`` and ``config_hash`` are the store's; the task keeps
    the store only when the subject's inputs still hash to it and the config hash is the run's
    (preprocess.subject.is_unchanged), so a row adopted here is as checked as one built now."""
    path = store_path(cache, subject_id)
    attrs = read_store_attrs(path)
    if attrs is None or attrs.get("cohort") != cohort or attrs.get("subject_id") != subject_id:
        return None
    try:
        shape = json.loads((path / "image" / "zarr.json").read_text())["shape"]
    except (OSError, ValueError, KeyError):
        return None  # a store without a readable image array is no store to keep
    unknown = attrs.get("unknown_label_voxels") or {}
    return manifest_row(subject_id, cohort, status="ok", input_hash=str(attrs.get("input_hash", "")),
                        config_hash=str(attrs.get("config_hash", "")), shape="x".join(map(str, shape)),
                        image_source=str(attrs.get("image_source", "")),
                        unknown_label_voxels=int(sum(unknown.values())), store=str(path.relative_to(cache)),
                        software_version=str(attrs.get("software_version", damt.__version__)))
