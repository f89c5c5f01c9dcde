"""The cache contract, whole: the subject stores (zarr v3, written atomically) and their
layouts, the manifest, targets.json, the file names, the lock, and :class:`Cache`, the reader
every command but ``damt preprocess`` goes through. The stages meet only here."""

from damt.cache.cache import Cache
from damt.cache.layout import LAYOUT_KEYS, Layout, StoreLayoutError, relayout_store
from damt.cache.lock import hold_lock, open_lock, preprocess_running
from damt.cache.manifest import (
    COLUMNS,
    ManifestRowError,
    manifest_row,
    ok_subjects,
    read_manifest,
    rows_by_key,
    to_frame,
    write_manifest,
)
from damt.cache.names import CONFIG_FILE, LOCK_FILE, MANIFEST_FILE, TARGETS_FILE
from damt.cache.store import (
    STORE_FORMAT,
    array_sha256,
    clean_debris,
    is_valid_id,
    open_subject,
    read_store_attrs,
    store_path,
    write_subject_store,
)
from damt.cache.targets import KINDS, TARGETS_FORMAT, CacheTargets, write_targets_json

__all__ = [
    "COLUMNS", "CONFIG_FILE", "KINDS", "LAYOUT_KEYS", "LOCK_FILE", "MANIFEST_FILE", "STORE_FORMAT",
    "TARGETS_FILE", "TARGETS_FORMAT", "Cache", "CacheTargets", "Layout", "ManifestRowError",
    "StoreLayoutError", "array_sha256", "clean_debris", "hold_lock", "is_valid_id", "manifest_row",
    "ok_subjects", "open_lock", "open_subject", "preprocess_running", "read_manifest",
    "read_store_attrs", "relayout_store", "rows_by_key", "store_path", "to_frame", "write_manifest",
    "write_subject_store", "write_targets_json",
]
