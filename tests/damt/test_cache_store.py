"""Subject stores: zarr round-trips, completion marker, id allowlist, atomic replacement, layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from damt.cache import (
    Layout,
    array_sha256,
    clean_debris,
    is_valid_id,
    open_subject,
    read_store_attrs,
    store_path,
    write_subject_store,
)


@settings(max_examples=15, deadline=None)
@given(image=arrays(np.float16, st.tuples(*[st.integers(1, 20)] * 3),
                    elements=st.floats(0, 1, width=16)),
       chunk=st.one_of(st.none(), st.integers(8, 16)), codec=st.sampled_from(["lz4hc", "lz4", "zstd", "none"]))
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


# ---- layouts -----------------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(shape=st.tuples(*[st.integers(1, 300)] * 3), chunk=st.one_of(st.none(), st.integers(8, 128)),
       slab=st.integers(1, 64))
def test_layout_chunks_fit_the_array(shape, chunk, slab):
    chunks = Layout(chunk, slab, "lz4hc", 5).chunks(shape)
    assert all(1 <= c <= n for c, n in zip(chunks, shape))
    if chunk is None:  # whole extent on every axis but the (first) longest, cut into slabs there
        axis = shape.index(max(shape))
        assert chunks == tuple(min(slab, n) if i == axis else n for i, n in enumerate(shape))
    else:
        assert chunks == tuple(min(chunk, n) for n in shape)


@pytest.mark.parametrize("codec", ["lz4hc", "lz4", "zstd"])
def test_every_blosc_codec_uses_byte_shuffle_and_the_layout_is_recorded(tmp_path, codec):
    image = np.zeros((20, 30, 10), np.float16)
    path = write_subject_store(tmp_path, "s1", {"image": image, "v": np.ones(3, np.float32)}, {}, None, codec, 3,
                               slab_vox=4)
    meta = json.loads((path / "image" / "zarr.json").read_text())
    assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [20, 4, 10]
    assert [c["configuration"] for c in meta["codecs"] if c["name"] == "blosc"][0]["shuffle"] == "shuffle"
    v_meta = json.loads((path / "v" / "zarr.json").read_text())
    assert [c["name"] for c in v_meta["codecs"]] == ["bytes"]  # 1-D arrays stay one raw chunk
    assert read_store_attrs(path)["layout"] == {"chunks": "slab", "slab_vox": 4, "codec": codec, "clevel": 3,
                                                "shuffle": "shuffle"}


def test_layouts_that_write_the_same_bytes_have_one_record():
    assert Layout(64, 16, "none", 5).record() == Layout(64, 8, "none", 9).record() == \
        {"chunks": "cube", "chunk_vox": 64, "codec": "none"}
    assert Layout(None, 16, "lz4hc", 5).record() != Layout(None, 32, "lz4hc", 5).record()


def test_a_rewrite_whose_read_back_differs_publishes_nothing(tmp_path):
    image = np.full((8, 8, 8), 0.5, np.float16)
    path = write_subject_store(tmp_path, "s1", {"image": image}, {"v": 1}, 8, "none", 0)
    with pytest.raises(ValueError, match="differ from the recorded hashes"):
        write_subject_store(tmp_path, "s1", {"image": image}, {"v": 2}, None, "lz4hc", 5,
                            expect_sha256={"image": "0" * 64})
    assert read_store_attrs(path)["v"] == 1 and list((tmp_path / ".staging").iterdir()) == []


def test_a_replacement_killed_between_its_renames_gets_the_old_store_back(tmp_path):
    path = write_subject_store(tmp_path, "s1", {"image": np.ones((4, 4, 4), np.float16)}, {"v": 1}, 8, "none", 0)
    # _commit moved the old store to the trash, then died before renaming the new one into place
    (tmp_path / ".trash").mkdir()
    path.rename(tmp_path / ".trash" / "s1.zarr.0123456789ab")
    (tmp_path / ".staging" / "s1.fedcba987654.zarr").mkdir()
    clean_debris(tmp_path)
    assert read_store_attrs(path)["v"] == 1
    assert list((tmp_path / ".trash").iterdir()) == list((tmp_path / ".staging").iterdir()) == []
