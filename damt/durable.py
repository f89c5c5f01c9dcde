"""Durable writes: the one way DAMT puts a file or a folder on disk so that a crash (a killed
process, a power cut) leaves the old content or the new one, never a half-written file that
looks whole, and so that what was published survives the crash.

Every writer of the cache (manifest, targets.json, preprocess_config.yaml, subject stores), of a
run (config.yaml, metrics, checkpoints) and of the downstream files (exports, embeddings, probe
reports, qc CSVs) goes through here:

* :func:`atomic_write` (and its text/bytes forms): write a temporary file in the same folder,
  fsync it, rename it over the target, fsync the folder (the rename itself is durable only then);
* :func:`publish_folder`: rename a fully written (and :func:`fsync_tree`-d) staging folder to its
  final name and fsync the parent;
* :func:`sha256_file`: the content hash of a file (checkpoint markers, export sidecars, inputs).
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO, Callable


def fsync_file(path: str | Path) -> None:
    """Flush a file's data and metadata to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | Path) -> None:
    """Flush a folder's entries (new, renamed or removed names in it) to disk."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(root: str | Path) -> None:
    """fsync every file and folder under ``root`` (a staging folder about to be published)."""
    for dirpath, _, files in os.walk(root):
        for name in files:
            fsync_file(os.path.join(dirpath, name))
        fsync_dir(dirpath)


def temp_name(path: str | Path) -> Path:
    """A hidden, unique temporary name beside ``path``: ``.<name>.<8 hex>.tmp`` (same folder,
    so the final rename never crosses a file system)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary name in the same folder, fsync it, rename it to
    ``path`` and fsync the folder. Returns ``path``.

    The rename is atomic on POSIX file systems, so readers see the old file or the new one; the
    temporary file is removed if ``write`` (or the fsync) fails, e.g. on a full disk, and the old
    file stays as it was.
    """
    path = Path(path)
    tmp = temp_name(path)
    try:
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """:func:`atomic_write` of raw bytes."""
    return atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> Path:
    """:func:`atomic_write` of a UTF-8 text."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def publish_folder(staging: str | Path, final: str | Path, fsync_contents: bool = True) -> Path:
    """Rename a fully written ``staging`` folder to ``final`` (which must not exist) and fsync
    ``final``'s parent, so the folder appears whole or not at all and stays after a crash.

    ``fsync_contents``: fsync every file and folder under ``staging`` first (pass False when
    the caller has already done so).
    """
    staging, final = Path(staging), Path(final)
    if fsync_contents:
        fsync_tree(staging)
    os.rename(staging, final)
    fsync_dir(final.parent)
    return final


def sha256_stream(f: BinaryIO, block: int = 1 << 22) -> str:
    """sha256 hex digest of an open binary file from its current position (``block``-byte reads)."""
    h = hashlib.sha256()
    for chunk in iter(lambda: f.read(block), b""):
        h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """sha256 hex digest of a file's bytes (4 MiB reads)."""
    with open(path, "rb") as f:
        return sha256_stream(f)
