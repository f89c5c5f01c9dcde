"""``Cache(path)``: the one reader of a preprocessed cache for every command but ``damt
preprocess`` itself (the trainer, embed, probe, export, the benchmarks).

What a cache holds is fixed by this package: the file names (damt.cache.names), the manifest
(damt.cache.manifest), ``targets.json`` (damt.cache.targets), the subject stores
(damt.cache.store) and the lock (damt.cache.lock). The stages meet only here: ``preprocess/``
writes these files through the same modules, ``train/`` reads them through this class.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from damt.cache.lock import preprocess_running
from damt.cache.manifest import ok_subjects, read_manifest
from damt.cache.names import CONFIG_FILE, LOCK_FILE, MANIFEST_FILE, TARGETS_FILE
from damt.cache.store import open_subject, read_store_attrs, store_path
from damt.cache.targets import CacheTargets


class Cache:
    """A cache folder, read-only. Nothing is read until a method asks for it."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"Cache({str(self.path)!r})"

    # -- the files -----------------------------------------------------------------------------
    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def targets_path(self) -> Path:
        return self.path / TARGETS_FILE

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_FILE

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_FILE

    def exists(self) -> bool:
        """True once a preprocess run has written the manifest (a cache, possibly still growing)."""
        return self.manifest_path.is_file()

    def busy(self) -> bool:
        """True while a ``damt preprocess`` run holds the cache's lock (never blocks)."""
        return preprocess_running(self.path)

    def has_targets(self) -> bool:
        """True once targets.json exists (a first preprocess run writes it at its end)."""
        return self.targets_path.is_file()

    # -- what they hold ------------------------------------------------------------------------
    def manifest(self) -> pd.DataFrame:
        """Every manifest row (ok and failed), all columns; empty if there is no manifest yet.
        ManifestError if it is damaged."""
        return read_manifest(self.path)

    def ok_subjects(self) -> pd.DataFrame:
        """The manifest's ``ok`` rows, in manifest order (cohort, subject_id): what training reads."""
        return ok_subjects(self.path)

    def targets(self) -> CacheTargets:
        """targets.json parsed; TargetsFileMissingError / TargetsFileError with what to do."""
        return CacheTargets.load(self.path)

    def store(self, subject_id: str) -> Path:
        """The store folder of ``subject_id`` (ValueError for an id outside the allowlist)."""
        return store_path(self.path, subject_id)

    def store_at(self, relative: str) -> Path:
        """The store a manifest row's ``store`` column names (relative to the cache)."""
        return self.path / str(relative)

    def open_store(self, subject_id: str):
        """The zarr group of ``subject_id``'s store, read-only."""
        return open_subject(self.store(subject_id))

    def store_attrs(self, subject_id: str) -> dict | None:
        """The attributes of ``subject_id``'s store, or None if it is absent or incomplete."""
        return read_store_attrs(self.store(subject_id))

    def preprocess_config(self) -> dict[str, Any] | None:
        """The resolved config (a plain dict) of the preprocess run that last changed the
        manifest, or None when the cache does not record one. ConfigError if it is not YAML."""
        if not self.config_path.is_file():
            return None
        from damt.config import safe_load_yaml  # noqa: PLC0415  (damt.config is heavy-ish)

        return safe_load_yaml(self.config_path.read_text(), source=str(self.config_path)) or {}

    def preprocess_hash(self) -> str | None:
        """The preprocess hash the ok stores were built with (targets.json's ``config_hash``), or
        None when targets.json is missing or records none."""
        if not self.has_targets():
            return None
        value = self.targets().info.get("config_hash")
        return str(value) if value else None
