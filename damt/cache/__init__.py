"""The cache contract: subject stores (zarr v3) written atomically, their reader, their layouts."""

from damt.cache.layout import LAYOUT_KEYS, Layout, StoreLayoutError, relayout_store
from damt.cache.store import (STORE_FORMAT, array_sha256, clean_debris, is_valid_id, open_subject,
                              read_store_attrs, store_path, write_subject_store)

__all__ = ["LAYOUT_KEYS", "Layout", "STORE_FORMAT", "StoreLayoutError", "array_sha256", "clean_debris",
           "is_valid_id", "open_subject", "read_store_attrs", "relayout_store", "store_path",
           "write_subject_store"]
