"""The names of a cache's top-level files: the one place they are spelled.

A cache folder holds ``subjects/<id>.zarr`` (damt.cache.store) and these files, all written by
``damt preprocess`` alone (under the lock) and read by every other command.
"""

#: one row per subject seen (damt.cache.manifest)
MANIFEST_FILE = "manifest.parquet"
#: the target schema and normalisation statistics (damt.cache.targets)
TARGETS_FILE = "targets.json"
#: the resolved config of the last preprocess run that changed the manifest, with its hash
CONFIG_FILE = "preprocess_config.yaml"
#: held with flock by a running ``damt preprocess`` (damt.cache.lock)
LOCK_FILE = ".lock"
