"""The preprocess hash takes its keys from the config scopes: store keys rebuild, others do not."""

from __future__ import annotations

import dataclasses

from damt.config import load_config
from damt.config.validate import setting
from damt.labels import load_label_table
from preprocess.run import preprocess_hash
from preprocess.targets import build_plan

#: the hash of pipeline.yaml's defaults before the hash's keys were derived from the scopes:
#: existing caches must keep it (a different hash rebuilds every store)
PIPELINE_HASH = "a5edba8c4b1e23ca"


def _hash(cfg) -> str:
    table = load_label_table(cfg.labels.table)
    return preprocess_hash(cfg, table, build_plan(cfg, table, []))


def test_existing_caches_keep_their_hash(repo):
    assert _hash(load_config(repo / "pipeline.yaml", [])) == PIPELINE_HASH


def test_store_keys_change_the_hash_and_other_scopes_do_not(repo):
    base = _hash(load_config(repo / "pipeline.yaml", []))
    for key in ("preprocess.spacing_mm=1.5", "preprocess.unknown_labels=fail",
                "targets.radiomics.bin_count=16"):
        assert _hash(load_config(repo / "pipeline.yaml", [key])) != base, key
    for key in ("preprocess.codec=zstd", "preprocess.max_voxels=1000", "targets.normalise.clip=5.0",
                "train.seed=4", "dask.workers=7", "data.cache_dir=elsewhere"):
        assert _hash(load_config(repo / "pipeline.yaml", [key])) == base, key


def test_a_new_store_key_is_hashed_without_touching_preprocess_hash(repo):
    """A key added to the preprocess section with scope="store" enters the hash by itself."""
    cfg = load_config(repo / "pipeline.yaml", [])
    pre = type(cfg.preprocess)
    extended = dataclasses.make_dataclass(
        "Extended", [("new_store_key", int, setting(3, "a new store setting", scope="store")),
                     ("new_cache_key", int, setting(3, "a new layout setting", scope="cache"))],
        bases=(pre,), frozen=True)
    plain = dataclasses.replace(cfg, preprocess=extended(**dataclasses.asdict(cfg.preprocess)))
    changed = dataclasses.replace(plain, preprocess=dataclasses.replace(plain.preprocess, new_store_key=4))
    other = dataclasses.replace(plain, preprocess=dataclasses.replace(plain.preprocess, new_cache_key=4))
    assert _hash(plain) != _hash(cfg)  # the new key is part of the hashed section
    assert _hash(changed) != _hash(plain)
    assert _hash(other) == _hash(plain)
