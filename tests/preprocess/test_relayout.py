"""`damt cache relayout` on a real cache (bert + sub-01) built in the old layout (64³ chunks, no
codec): the stores end in the default layout with bit-identical arrays and unchanged attributes,
no input file is read, `damt qc --verify` passes, a rerun does nothing, `damt preprocess` keeps
every store (a layout is not in the preprocess hash), and a damaged store is left alone."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from damt.cache import Layout, ok_subjects, read_store_attrs, relayout_store
from damt.cli import main
from damt.config import load_config
from preprocess.relayout import run_relayout
from preprocess.run import run_preprocess

OLD = ["preprocess.codec=none", "preprocess.chunk_vox=64"]


def _cfg(root: Path, extra=()):
    return load_config(None, [f"data.inputs={json.dumps([str(root)])}", *extra])


def _contents(cache: Path) -> dict:
    """store -> (attrs without the layout record, {array: values})."""
    out = {}
    for store in ok_subjects(cache)["store"]:
        g = zarr.open_group(str(cache / store), mode="r")
        attrs = {k: v for k, v in dict(g.attrs).items() if k != "layout"}
        out[store] = (attrs, {k: g[k][...] for k in g.array_keys()})
    return out


def _meta(cache: Path, store: str, name: str) -> dict:
    return json.loads((cache / store / name / "zarr.json").read_text())


@pytest.fixture(scope="module")
def old_cache(data_dir, tmp_path_factory):
    """(cohort root, cache) of two real subjects in the old layout; tests copy the cache."""
    root = tmp_path_factory.mktemp("relayout") / "cohort"
    shutil.copytree(data_dir / "fs_bert" / "bert", root / "bert")
    shutil.copytree(data_dir / "fs_training_data" / "sub-01", root / "sub-01")
    cache = root.parent / "cache_old"
    summary = run_preprocess(_cfg(root, OLD), cache, workers=0, progress=False)
    assert summary.ok == 2, summary.table()
    return root, cache


def test_relayout_turns_an_old_cache_into_the_default_without_inputs(old_cache, tmp_path, capsys):
    root, src = old_cache
    cache = tmp_path / "cache"
    shutil.copytree(src, cache)
    before = _contents(cache)
    hidden = root.parent / "cohort_hidden"
    root.rename(hidden)  # no input file can be read during the relayout
    try:
        assert main(["cache", "relayout", "--cache", str(cache), "--quiet"]) == 0
    finally:
        hidden.rename(root)
    assert re.search(r"rewritten +2\n", capsys.readouterr().out)

    after = _contents(cache)
    assert after.keys() == before.keys()
    default = Layout()
    for store, (attrs, arrays) in after.items():
        assert attrs == before[store][0]  # hashes, config hash, everything but the layout record
        assert arrays.keys() == before[store][1].keys()
        for name, values in arrays.items():
            old = before[store][1][name]
            assert values.dtype == old.dtype and values.tobytes() == old.tobytes()  # bit-identical
        assert read_store_attrs(cache / store)["layout"] == default.record()
        for name in ("image", "atlas"):
            meta = _meta(cache, store, name)
            shape = meta["shape"]
            assert meta["chunk_grid"]["configuration"]["chunk_shape"] == list(default.chunks(tuple(shape)))
            blosc = [c["configuration"] for c in meta["codecs"] if c["name"] == "blosc"]
            assert blosc and (blosc[0]["cname"], blosc[0]["clevel"], blosc[0]["shuffle"]) == ("lz4hc", 5, "shuffle")
    assert not any((cache / ".staging").iterdir()) and not any((cache / ".trash").iterdir())

    # damt qc --verify passes on the re-laid-out cache
    assert main(["qc", "--cache", str(cache), "--out", str(tmp_path / "qc"), "--verify",
                 "--set", f"data.inputs={json.dumps([str(root)])}"]) == 0
    assert "every ok store matches" in capsys.readouterr().out

    # a rerun finds every store in the layout and writes nothing
    stamps = {p: p.stat().st_mtime_ns for p in (cache / "subjects").rglob("*")}
    again = run_relayout(_cfg(root), cache, progress=False)
    assert (again.rewritten, again.current, again.failed) == (0, 2, [])
    assert stamps == {p: p.stat().st_mtime_ns for p in (cache / "subjects").rglob("*")}

    # preprocess with the default config keeps every store (same preprocess hash) ...
    summary = run_preprocess(_cfg(root), cache, workers=0, progress=False)
    assert (summary.ok, summary.processed) == (2, 0) and not summary.notes
    assert stamps == {p: p.stat().st_mtime_ns for p in (cache / "subjects").rglob("*")}
    # ... and with the old layout keeps them too, but says that they are in another layout
    summary = run_preprocess(_cfg(root, OLD), cache, workers=0, progress=False)
    assert summary.processed == 0 and stamps == {p: p.stat().st_mtime_ns for p in (cache / "subjects").rglob("*")}
    assert any("2 ok store(s) are in another layout" in n and "damt cache relayout" in n for n in summary.notes)


def test_relayout_back_with_workers_and_to_cubes(old_cache, tmp_path):
    root, src = old_cache
    cache = tmp_path / "cache"
    shutil.copytree(src, cache)
    before = _contents(cache)
    summary = run_relayout(_cfg(root, ["preprocess.codec=lz4", "preprocess.chunk_vox=32"]), cache, workers=2,
                           progress=False)
    assert (summary.rewritten, summary.failed) == (2, [])
    assert summary.bytes_after < summary.bytes_before / 2
    for store, (_, arrays) in _contents(cache).items():
        assert all(np.array_equal(arrays[k], before[store][1][k]) for k in arrays)
        meta = _meta(cache, store, "atlas")
        assert meta["chunk_grid"]["configuration"]["chunk_shape"] == [32, 32, 32]
        assert [c["configuration"]["shuffle"] for c in meta["codecs"] if c["name"] == "blosc"] == ["shuffle"]


def test_a_damaged_store_is_left_as_it_was(old_cache, tmp_path, capsys):
    root, src = old_cache
    cache = tmp_path / "cache"
    shutil.copytree(src, cache)
    store = cache / "subjects" / "bert.zarr"
    chunk = next(p for p in sorted((store / "image" / "c").rglob("*")) if p.is_file() and p.stat().st_size > 1000)
    raw = bytearray(chunk.read_bytes())
    raw[500] ^= 0xFF  # a raw float16 chunk: still decodes, to other values
    chunk.write_bytes(bytes(raw))
    files = {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}

    assert main(["cache", "relayout", "--cache", str(cache), "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "FAILED subjects/bert.zarr" in out and "do not match the hashes recorded" in out
    assert files == {p: p.read_bytes() for p in store.rglob("*") if p.is_file()}  # untouched
    assert read_store_attrs(cache / "subjects" / "sub-01.zarr")["layout"] == Layout().record()
    with pytest.raises(ValueError, match="do not match"):
        relayout_store(cache, store, Layout())


def test_relayout_needs_a_cache(tmp_path, capsys):
    assert main(["cache", "relayout", "--cache", str(tmp_path), "--quiet"]) == 2
    assert "no manifest.parquet" in capsys.readouterr().err
