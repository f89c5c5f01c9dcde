"""damt.cache owns the cache contract (issue 14, point 1): the manifest schema written once (its
row builder, and ``to_frame`` refusing a field outside it instead of dropping it), targets.json,
the file names, the lock, and ``Cache(path)``, the reader the trainer, embed and probe use.

Built with the library's own writers only (the preprocess stage is tested in tests/preprocess)."""

from __future__ import annotations

import fcntl
import os

import numpy as np
import pytest

from damt.cache import (
    COLUMNS,
    CONFIG_FILE,
    LOCK_FILE,
    MANIFEST_FILE,
    TARGETS_FILE,
    Cache,
    ManifestRowError,
    hold_lock,
    manifest_row,
    open_lock,
    read_manifest,
    to_frame,
    write_manifest,
    write_subject_store,
    write_targets_json,
)
from damt.errors import CacheBusyError, TargetsFileMissingError
from damt.targets.normalise import fit


def test_manifest_row_is_every_column_and_refuses_unknown_fields():
    row = manifest_row("s1", "c", status="ok", seconds=1.5)
    assert list(row) == list(COLUMNS)
    assert row["status"] == "ok" and row["reason"] == "" and row["software_version"]
    with pytest.raises(ManifestRowError, match="shapes"):
        manifest_row("s1", "c", shapes="1x2x3")


def test_to_frame_refuses_a_field_it_would_drop(tmp_path):
    with pytest.raises(ManifestRowError, match="extra_note"):
        to_frame([manifest_row("s1", "c") | {"extra_note": "lost before issue 14"}])
    partial = {"subject_id": "s2", "cohort": "c", "status": "ok"}  # the rest from the defaults
    write_manifest(tmp_path, to_frame([manifest_row("s1", "c"), partial]))
    back = read_manifest(tmp_path)
    assert list(back.columns) == list(COLUMNS) and list(back["subject_id"]) == ["s1", "s2"]
    assert back.loc[1, "unknown_label_voxels"] == 0 and back.loc[1, "reason"] == ""
    assert [p.name for p in tmp_path.iterdir()] == [MANIFEST_FILE]  # no temporary file left


@pytest.fixture()
def small_cache(tmp_path):
    """Two ok subjects and one failed, with targets.json and the preprocess config, written by
    the same library functions damt preprocess uses."""
    cache = tmp_path / "cache"
    cache.mkdir()
    rng = np.random.default_rng(0)
    rows, values = [], []
    for sid in ("a1", "b2"):
        morph = rng.normal(size=3).astype(np.float32)
        values.append(morph)
        path = write_subject_store(cache, sid, {"image": rng.random((8, 8, 8), dtype=np.float32),
                                                "atlas": np.zeros((8, 8, 8), np.uint8),
                                                "morphometry": morph, "morphometry_present": np.ones(3, bool),
                                                "radiomics": np.zeros(0, np.float32),
                                                "radiomics_present": np.zeros(0, bool)},
                                   {"subject_id": sid, "cohort": "c"}, None, "lz4hc", 5)
        rows.append(manifest_row(sid, "c", status="ok", store=str(path.relative_to(cache))))
    rows.append(manifest_row("z9", "c", reason="missing_image"))
    write_manifest(cache, to_frame(rows))
    v = np.stack(values)
    write_targets_json(cache, {"config_hash": "abc123", "n_subjects": 2,
                               "morphometry": {"names": ["x", "y", "z"], "source": "csv",
                                               "normalisation": fit(v, np.ones(v.shape, bool))},
                               "radiomics": {"names": [], "source": "off", "normalisation": {}}})
    (cache / CONFIG_FILE).write_text("preprocess:\n  spacing_mm: 1.25\n# preprocess hash abc123\n")
    return cache


def test_cache_reads_the_contract(small_cache):
    c = Cache(small_cache)
    assert c.exists() and c.has_targets() and not c.busy()
    assert list(c.ok_subjects()["subject_id"]) == ["a1", "b2"] and len(c.manifest()) == 3
    t = c.targets()
    assert t.names["morphometry"] == ["x", "y", "z"] and t.size("radiomics") == 0
    assert c.store("a1") == small_cache / "subjects" / "a1.zarr" == c.store_at(c.ok_subjects()["store"][0])
    assert c.open_store("b2")["morphometry"].shape == (3,) and c.store_attrs("b2")["cohort"] == "c"
    assert c.preprocess_config() == {"preprocess": {"spacing_mm": 1.25}}
    assert c.preprocess_hash() == "abc123"
    assert (c.manifest_path.name, c.targets_path.name, c.config_path.name, c.lock_path.name) == (
        MANIFEST_FILE, TARGETS_FILE, CONFIG_FILE, LOCK_FILE)


def test_an_empty_folder_is_no_cache(tmp_path):
    c = Cache(tmp_path)
    assert not c.exists() and c.manifest().empty and c.preprocess_config() is None and c.preprocess_hash() is None
    with pytest.raises(TargetsFileMissingError):
        c.targets()


def test_the_lock_is_seen_while_held_and_refuses_a_second_holder(small_cache):
    fd = open_lock(small_cache)
    with hold_lock(fd, small_cache):
        assert Cache(small_cache).busy()
        other = os.open(small_cache / LOCK_FILE, os.O_RDWR)
        with pytest.raises(CacheBusyError, match="in use"):
            with hold_lock(other, small_cache):
                pass
    assert not Cache(small_cache).busy()
    probe = os.open(small_cache / LOCK_FILE, os.O_RDWR)
    fcntl.flock(probe, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released: free to take
    os.close(probe)
