"""Config keys say what they affect (scope), and the rules that depend on it are derived from it."""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import pytest

from damt.config import DamtConfig, to_dict
from damt.config.scopes import key_scopes, keys_in_scope, scoped_dict
from damt.config.validate import SCOPES, setting


def _leaves(d: dict, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for k, v in d.items():
        out |= _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def test_every_config_key_has_a_scope():
    scopes = key_scopes(DamtConfig)
    assert set(scopes) == _leaves(to_dict(DamtConfig()))  # every leaf, as the resume check sees them
    assert not [k for k, s in scopes.items() if s not in SCOPES], "declare scope= on the setting"


def test_derived_rules_equal_the_hand_written_lists_they_replace():
    """Regression: the old lists (RESUME_FREE_KEYS prefixes, embed's sections minus the layout
    keys, the preprocess hash's section minus layout keys and max_voxels) computed once, literally,
    over every key; the derived sets must equal them, except the deviations named here."""
    keys = set(key_scopes(DamtConfig))
    old_free_prefixes = ("data.", "dask.", "loader.num_workers", "loader.prefetch_factor",
                         "loader.pin_memory", "loader.reader", "train.out_dir", "train.log_every_steps",
                         "train.checkpoint_every_epochs", "train.keep_every_epochs",
                         "train.max_consecutive_skips", "train.wandb", "train.wandb_project")
    old_free = {k for k in keys if k.startswith(old_free_prefixes)}
    layout = {f"preprocess.{k}" for k in ("chunk_vox", "slab_vox", "codec", "clevel")}
    old_embed = {k for k in keys if k.startswith(("preprocess.", "labels."))} - layout
    old_hashed = {k for k in keys if k.startswith("preprocess.")} - layout - {"preprocess.max_voxels"}
    qc = {k for k in keys if k.startswith("qc.")}
    targets_store = {k for k in keys if k.startswith("targets.") and not k.startswith("targets.normalise.")}

    # deviation 1: qc.* were binding on resume only because no list named them; reports never
    # change a run, so they are io (free). Issue 15's checkpointing keys joined the free list
    # (recomputation gives the same activations; a resumed run may fit another card)
    memory = {"train.grad_checkpointing", "train.memory_budget_gib"}
    assert keys_in_scope(DamtConfig, "io") == old_free | qc | memory
    # binding on resume: everything else, as before
    assert keys - keys_in_scope(DamtConfig, "io") == keys - old_free - qc - memory
    # the preprocess hash's section: unchanged (so existing caches keep their hash)
    assert {k for k in keys_in_scope(DamtConfig, "store") if k.startswith("preprocess.")} == old_hashed
    # deviation 2: embed reports the store keys: the targets it used to skip (they change the
    # stores: the hash covers them through the target plan) and no longer max_voxels (it
    # decides only whether a file is read, and the hash leaves it out)
    assert keys_in_scope(DamtConfig, "store") == old_embed - {"preprocess.max_voxels"} | targets_store
    assert keys_in_scope(DamtConfig, "cache") == layout | {"preprocess.max_voxels"}


def test_store_keys_outside_preprocess_are_hashed_through_their_content():
    """preprocess_hash hashes the preprocess section's store keys by value, labels.table through
    the table's bytes and targets.* through the target plan. A store key anywhere else would be
    missed by the hash: classify it elsewhere or extend preprocess_hash (and this test)."""
    store = keys_in_scope(DamtConfig, "store")
    assert {k for k in store if not k.startswith(("preprocess.", "targets."))} == {"labels.table"}


def test_scoped_dict_cuts_a_section_to_one_scope_in_field_order():
    cfg = DamtConfig()
    pre = scoped_dict(cfg.preprocess, "store")
    assert list(pre) == [k for k in to_dict(cfg.preprocess)
                         if k not in ("max_voxels", "chunk_vox", "slab_vox", "codec", "clevel")]
    assert scoped_dict(cfg.preprocess, "cache") == {"max_voxels": 512 ** 3, "chunk_vox": None,
                                                    "slab_vox": 16, "codec": "lz4hc", "clevel": 5}
    targets = scoped_dict(cfg.targets, "store")
    assert set(targets) == {"morphometry", "radiomics", "csv_import"}  # normalise (run) dropped
    assert scoped_dict(cfg.targets, "run") == {"normalise": to_dict(cfg.targets.normalise)}


def test_a_new_key_takes_its_declared_scope_or_its_class_default():
    @dataclasses.dataclass(frozen=True)
    class Section:
        SCOPE: ClassVar[str] = "run"
        a: int = setting(1, "inherits run")
        b: int = setting(2, "declared", scope="store")

    assert key_scopes(Section) == {"a": "run", "b": "store"}
    assert scoped_dict(Section(), "store") == {"b": 2}
    with pytest.raises(ValueError, match="scope"):
        setting(0, "a typo in a scope is a schema bug", scope="stores")
