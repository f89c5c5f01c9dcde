"""The cache contract: subject stores (zarr v3) written atomically, and their reader."""

from damt.cache.store import (STORE_FORMAT, array_sha256, clean_debris, is_valid_id, open_subject,
                              read_store_attrs, store_path, write_subject_store)

__all__ = ["STORE_FORMAT", "array_sha256", "clean_debris", "is_valid_id", "open_subject",
           "read_store_attrs", "store_path", "write_subject_store"]
