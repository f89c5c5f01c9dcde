"""Subject stores: zarr round-trips, completion marker, id allowlist, atomic replacement."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from damt.cache import (array_sha256, clean_debris, is_valid_id, open_subject, read_store_attrs,
                        store_path, write_subject_store)


@settings(max_examples=15, deadline=None)
@given(image=arrays(np.float16, st.tuples(*[st.integers(1, 20)] * 3),
                    elements=st.floats(0, 1, width=16)),
       chunk=st.integers(8, 16), codec=st.sampled_from(["lz4", "zstd", "none"]))
def test_zarr_round_trip(tmp_path_factory, image, chunk, codec):
    cache = tmp_path_factory.mktemp("c")
    atlas = (image * 100).astype(np.uint8)
    vec = np.arange(5, dtype=np.float32)
    path = write_subject_store(cache, "s-1", {"image": image, "atlas": atlas, "morph": vec},
                               {"spacing_mm": 1.25, "note": [1, 2]}, chunk, codec, 5)
    g = open_subject(path)
    np.testing.assert_array_equal(g["image"][...], image)
    np.testing.assert_array_equal(g["atlas"][...], atlas)
    np.testing.assert_array_equal(g["morph"][...], vec)
    attrs = read_store_attrs(path)
    assert attrs["status"] == "complete" and attrs["spacing_mm"] == 1.25
    assert attrs["array_sha256"]["image"] == array_sha256(image)


def test_store_without_marker_is_absent(tmp_path):
    path = write_subject_store(tmp_path, "s1", {"image": np.zeros((4, 4, 4), np.float16)}, {}, 8, "lz4", 5)
    meta = json.loads((path / "zarr.json").read_text())
    del meta["attributes"]["status"]
    (path / "zarr.json").write_text(json.dumps(meta))
    assert read_store_attrs(path) is None
    with pytest.raises(FileNotFoundError):
        open_subject(path)


def test_replacing_a_store_leaves_no_debris(tmp_path):
    for value in (1, 2):
        write_subject_store(tmp_path, "s1", {"image": np.full((4, 4, 4), value, np.float16)},
                            {"v": value}, 8, "lz4", 5)
    assert read_store_attrs(store_path(tmp_path, "s1"))["v"] == 2
    assert list((tmp_path / ".staging").iterdir()) == []
    (tmp_path / ".staging" / "junk.zarr").mkdir()
    assert len(clean_debris(tmp_path)) == 1


@pytest.mark.parametrize("name", ["sub-01", "bert", "S_1.2", "a+b"])
def test_valid_ids(name):
    assert is_valid_id(name)


@pytest.mark.parametrize("name", ["../x", "..", "a/b", "/abs", ".hidden", "a..b", "", "a b", "x" * 200,
                                  "sub\n01", "-rf", "é"])
def test_ids_that_could_escape_are_refused(tmp_path, name):
    assert not is_valid_id(name)
    with pytest.raises(ValueError, match="not allowed"):
        store_path(tmp_path, name)


@settings(max_examples=200)
@given(st.text(max_size=40))
def test_valid_ids_never_leave_the_subjects_folder(tmp_path_factory, name):
    if is_valid_id(name):
        cache = tmp_path_factory.getbasetemp()
        p = store_path(cache, name).resolve()
        assert p.parent == (cache / "subjects").resolve()
