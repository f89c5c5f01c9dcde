"""Store layouts: how a subject store's 3-D arrays are chunked and compressed, never what they hold.

A layout changes bytes on disk and read cost, not array contents: the per-array sha256 recorded
at build time (``array_sha256``) is over the arrays' values, so it is the same in every layout,
and layout settings are left out of the preprocess hash. A store can therefore be rewritten into
another layout from its own arrays (:func:`relayout_store`) without touching its inputs, and it
stays valid for the manifest, ``damt qc --verify`` and the trainer, whose readers take the chunk
grid and codecs from each array's own metadata. docs/data-loading.md has the measurements behind
the default (slabs 16 voxels thick across the longest axis, Blosc lz4hc 5, byte shuffle).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from zarr.codecs import BloscCodec

#: preprocess config keys that choose the layout (and nothing else); not in the preprocess hash
LAYOUT_KEYS = ("chunk_vox", "slab_vox", "codec", "clevel")
#: Blosc shuffle of every codec: byte shuffle was smaller *and* faster to read than bit shuffle
#: for the float16 intensities and the uint8 class ids alike (docs/data-loading.md)
SHUFFLE = "shuffle"
#: attributes the writer itself sets; everything else in a store's attrs came from preprocess
WRITER_ATTRS = ("array_sha256", "store_format", "layout", "status")


class StoreLayoutError(ValueError):
    """A store cannot be re-laid out as it is (incomplete, another format, or data that no longer
    matches its recorded hashes); it is left exactly as it was."""


@dataclass(frozen=True)
class Layout:
    """Chunking and compression of a store's 3-D arrays (image, atlas). 1-D arrays (targets and
    their masks, a few KB) are always one raw chunk.

    chunk_vox: cube edge of the chunks; None = slabs: chunks span the whole volume on two axes
    and ``slab_vox`` voxels on its longest axis (the first of equally long ones).
    codec: a Blosc cname (always byte shuffle) or "none" (raw chunks); clevel: Blosc level.
    """

    chunk_vox: int | None = None
    slab_vox: int = 16
    codec: str = "lz4hc"
    clevel: int = 5

    @classmethod
    def from_config(cls, p: Any) -> "Layout":
        """The layout that ``preprocess`` settings ``p`` (a PreprocessConfig) ask for."""
        return cls(p.chunk_vox, p.slab_vox, p.codec, p.clevel)

    def chunks(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Chunk shape of a 3-D array of ``shape`` (never larger than the array on any axis)."""
        if self.chunk_vox is not None:
            return tuple(min(self.chunk_vox, n) for n in shape)
        # Across the longest axis: a crop spans the full extent of the two short axes of typical
        # volumes (128 at 1.25 mm), so whole-width slabs over-read least there. Thin slabs across
        # the last axis would make every crop copy strided 16-element rows (measured ~1.2x).
        axis = int(np.argmax(shape))
        out = list(shape)
        out[axis] = min(self.slab_vox, shape[axis])
        return tuple(out)

    def compressors(self) -> list[BloscCodec] | None:
        """zarr v3 compressors of the 3-D arrays (None: raw chunks)."""
        if self.codec == "none":
            return None
        return [BloscCodec(cname=self.codec, clevel=self.clevel, shuffle=SHUFFLE)]

    def record(self) -> dict[str, Any]:
        """The store attribute ``layout``: what a reader or a person needs to know, normalised so
        that two settings that write the same bytes have the same record (no level without a
        codec, no slab thickness for cubes)."""
        rec: dict[str, Any] = ({"chunks": "slab", "slab_vox": self.slab_vox} if self.chunk_vox is None
                               else {"chunks": "cube", "chunk_vox": self.chunk_vox})
        if self.codec == "none":
            return rec | {"codec": "none"}
        return rec | {"codec": self.codec, "clevel": self.clevel, "shuffle": SHUFFLE}


def describe(record: Mapping[str, Any] | None) -> str:
    """A short human name of a layout record, e.g. ``slab16 lz4hc-5`` or ``cube64 none``;
    ``unrecorded`` for a store written before layouts were recorded."""
    if not record:
        return "unrecorded"
    shape = f"slab{record.get('slab_vox')}" if record.get("chunks") == "slab" else f"cube{record.get('chunk_vox')}"
    codec = record.get("codec", "?")
    return f"{shape} {codec}-{record.get('clevel')}" if codec != "none" else f"{shape} none"


def store_bytes(path: Path) -> tuple[int, int]:
    """(apparent bytes, allocated bytes) of every file under a store folder."""
    size = alloc = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            size += st.st_size
            alloc += st.st_blocks * 512
    return size, alloc


def relayout_store(cache: Path, store: Path, layout: Layout) -> bool:
    """Rewrite one complete store into ``layout`` from its own arrays, atomically (the writer's
    stage + rename); returns False if it already records ``layout`` (nothing is written).

    Every array is read whole and must match the sha256 recorded at build time before anything is
    written, so a damaged store is never re-blessed with fresh hashes; the new store is read back
    in staging and must give the same hashes again before it replaces the old one. All attributes
    but the writer's own (hashes, format, layout, status) are carried over unchanged. Raises
    StoreLayoutError (a store that cannot be re-laid out as it is), ValueError (the read-back
    differs) or OSError; in every case the store is left as it was. Call it only under the cache lock.
    """
    import zarr  # noqa: PLC0415

    from damt.cache.store import STORE_FORMAT, array_sha256, read_store_attrs, store_path, write_subject_store

    attrs = read_store_attrs(store)
    if attrs is None:
        raise StoreLayoutError(f"{store}: no complete subject store")
    if attrs.get("layout") == layout.record():
        return False
    if attrs.get("store_format") != STORE_FORMAT:
        raise StoreLayoutError(f"{store}: store format {attrs.get('store_format')!r}, this version writes "
                               f"{STORE_FORMAT!r}; re-run `damt preprocess` on this cache instead")
    sid = str(attrs.get("subject_id", ""))
    try:
        same_place = store_path(cache, sid).resolve() == Path(store).resolve()
    except ValueError:
        same_place = False
    if not same_place:
        raise StoreLayoutError(f"{store}: its attrs name subject {sid!r}, whose store is elsewhere")
    recorded = attrs.get("array_sha256") or {}
    group = zarr.open_group(store=str(store), mode="r", zarr_format=3)
    arrays = {name: group[name][...] for name in sorted(group.array_keys())}
    bad = sorted(n for n, a in arrays.items() if recorded.get(n) != array_sha256(a))
    if bad or set(recorded) != set(arrays):
        raise StoreLayoutError(f"{store}: arrays {bad or sorted(set(recorded) ^ set(arrays))} do not match the "
                               f"hashes recorded at build time (`damt qc --verify` says more); not rewritten")
    keep = {k: v for k, v in attrs.items() if k not in WRITER_ATTRS}
    write_subject_store(cache, sid, arrays, keep, layout.chunk_vox, layout.codec, layout.clevel,
                        slab_vox=layout.slab_vox, expect_sha256=recorded)
    return True
