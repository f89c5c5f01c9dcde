"""Subject stores: one zarr v3 group per subject, committed whole by rename (DESIGN.md contract).

zarr writes each key atomically, but a subject is many keys (metadata, chunks of several arrays),
so a store is built in ``<cache>/.staging/`` and becomes visible at ``<cache>/subjects/<id>.zarr``
by one ``os.rename``. ``status = "complete"`` is the last attribute written; a reader treats a
store without it as absent. Replacing an existing store moves the old one to ``<cache>/.trash/``
first (a directory rename cannot overwrite a non-empty directory); debris in ``.staging`` and
``.trash`` from a killed run is removed at the start of the next.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import zarr

from damt.cache.layout import Layout
from damt.durable import fsync_tree, publish_folder

STORE_FORMAT = "damt-subject-v1"
SUBJECTS_DIR, STAGING_DIR, TRASH_DIR = "subjects", ".staging", ".trash"

# Allowlist for subject and cohort ids. Checked before any path is formed from an id, so an id can
# never name a parent folder, an absolute path, a hidden file or something a shell would mangle.
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")


def is_valid_id(name: str) -> bool:
    """True if ``name`` is an allowed subject/cohort id (no separators, no '..', no leading dot)."""
    return bool(ID_PATTERN.fullmatch(name)) and ".." not in name


def store_path(cache: Path, subject_id: str) -> Path:
    """``<cache>/subjects/<subject_id>.zarr``; ValueError for an id outside the allowlist."""
    if not is_valid_id(subject_id):
        raise ValueError(f"subject id {subject_id!r} is not allowed (pattern {ID_PATTERN.pattern})")
    return Path(cache) / SUBJECTS_DIR / f"{subject_id}.zarr"


def array_sha256(arr: np.ndarray) -> str:
    """sha256 of an array's C-order bytes, dtype and shape (for verification of stored data)."""
    h = hashlib.sha256(f"{arr.dtype.str}{tuple(arr.shape)}".encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def clean_debris(cache: Path) -> list[Path]:
    """Remove leftovers of killed runs (``.staging``, ``.trash`` entries). Returns what was removed.

    A complete store in ``.trash`` whose place in ``subjects/`` is empty was caught between the two
    renames of a replacement (:func:`_commit`): it is moved back instead of removed, so a killed
    replacement (a relayout above all, which has no inputs to rebuild from) never loses a store.
    Only call this while no other preprocess run writes to the same cache.
    """
    removed = []
    trash = Path(cache) / TRASH_DIR
    if trash.is_dir():
        for entry in trash.iterdir():
            m = _TRASH_NAME.fullmatch(entry.name)
            home = Path(cache) / SUBJECTS_DIR / m.group(1) if m and is_valid_id(m.group(1)[:-5]) else None
            if home is not None and not home.exists() and read_store_attrs(entry) is not None:
                os.rename(entry, home)
    for sub in (STAGING_DIR, TRASH_DIR):
        folder = Path(cache) / sub
        if folder.is_dir():
            for entry in folder.iterdir():
                shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
                removed.append(entry)
    return removed


#: a replaced store's name in ``.trash``: ``<id>.zarr.<12 hex>`` (see :func:`_commit`)
_TRASH_NAME = re.compile(r"(.+\.zarr)\.[0-9a-f]{12}")


def write_subject_store(cache: Path, subject_id: str, arrays: Mapping[str, np.ndarray],
                        attrs: Mapping[str, Any], chunk_vox: int | None, codec: str, clevel: int, *,
                        slab_vox: int = Layout.slab_vox,
                        expect_sha256: Mapping[str, str] | None = None) -> Path:
    """Write a complete subject store and publish it atomically. Returns its final path.

    arrays: name -> ndarray. 3-D arrays are chunked and compressed as ``damt.cache.layout.Layout(
    chunk_vox, slab_vox, codec, clevel)`` says (chunk_vox None: slabs); 1-D arrays (targets,
    presence masks) are stored as one raw chunk. ``attrs`` must be JSON-serialisable; this function
    adds ``array_sha256`` (per array), ``store_format``, ``layout`` and, last, ``status =
    "complete"``. expect_sha256 (a relayout): every array is read back from staging and must hash
    to these values, else ValueError and nothing is published.
    """
    layout = Layout(chunk_vox, slab_vox, codec, clevel)
    final = store_path(cache, subject_id)
    staging = Path(cache) / STAGING_DIR / f"{subject_id}.{uuid.uuid4().hex[:12]}.zarr"
    staging.parent.mkdir(parents=True, exist_ok=True)
    final.parent.mkdir(parents=True, exist_ok=True)
    group = zarr.open_group(store=str(staging), mode="w", zarr_format=3)
    hashes = {}
    for name, arr in arrays.items():
        arr = np.ascontiguousarray(arr)
        chunks = layout.chunks(arr.shape) if arr.ndim == 3 else arr.shape
        za = group.create_array(name, shape=arr.shape, dtype=arr.dtype, chunks=chunks,
                                compressors=layout.compressors() if arr.ndim == 3 else None,
                                fill_value=0)
        za[...] = arr
        hashes[name] = array_sha256(arr)
    if expect_sha256 is not None:
        got = {name: array_sha256(group[name][...]) for name in arrays}
        if got != dict(expect_sha256):
            shutil.rmtree(staging, ignore_errors=True)
            raise ValueError(f"{final}: arrays read back from the new layout differ from the recorded "
                             f"hashes ({sorted(k for k in got if got[k] != expect_sha256.get(k))}); "
                             f"the store was left as it was")
    # one zarr.json write for all attributes (attrs.update writes the file once per key)
    group.update_attributes(json.loads(json.dumps(dict(attrs))) | {"array_sha256": hashes,
                                                                   "store_format": STORE_FORMAT,
                                                                   "layout": layout.record()})
    group.attrs["status"] = "complete"  # written last: the store's own completion marker
    _commit(staging, final)
    return final


def _commit(staging: Path, final: Path) -> None:
    """Publish ``staging`` as ``final`` by rename, moving any previous store to the trash first."""
    fsync_tree(staging)
    if final.exists():
        trash = final.parent.parent / TRASH_DIR / f"{final.name}.{uuid.uuid4().hex[:12]}"
        trash.parent.mkdir(parents=True, exist_ok=True)
        os.rename(final, trash)
        publish_folder(staging, final, fsync_contents=False)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        publish_folder(staging, final, fsync_contents=False)


def read_store_attrs(path: Path) -> dict | None:
    """A store's attributes from its ``zarr.json`` alone (no array is read), or None if the store
    is absent, unreadable or not marked complete."""
    meta = Path(path) / "zarr.json"
    try:
        attrs = json.loads(meta.read_text()).get("attributes", {})
    except (OSError, ValueError):
        return None
    return attrs if attrs.get("status") == "complete" else None


def open_subject(path: Path) -> zarr.Group:
    """Open a complete store read-only; FileNotFoundError if it is absent or incomplete."""
    if read_store_attrs(path) is None:
        raise FileNotFoundError(f"{path}: no complete subject store")
    return zarr.open_group(store=str(path), mode="r", zarr_format=3)


def discard_staging(cache: Path, subject_id: str) -> list[Path]:
    """Remove this subject's staging folders (a store whose write failed, e.g. on a full disk).

    Safe while the run holds the cache lock: a subject id is written by one task at a time.
    """
    folder = Path(cache) / STAGING_DIR
    removed = []
    if is_valid_id(subject_id) and folder.is_dir():
        # the names write_subject_store gives: <id>.<12 hex>.zarr (ids may hold dots themselves)
        mine = re.compile(re.escape(subject_id) + r"\.[0-9a-f]{12}\.zarr")
        for entry in folder.iterdir():
            if mine.fullmatch(entry.name):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed
