"""``damt bench loader``: CPU time of one training sample from the cache, against the original
on-the-fly MONAI chain on the same subjects' original files, in one run, on one thread.

"One sample" is what a loader worker makes (both crops, their parcellations, the labels, the
MIM block masks, the normalised targets): ``CacheDataset.__getitem__``. The targets come from a
table that the dataset reads once per run; that one-time cost is reported per subject on its own
line (``targets_table``). The floor is an in-memory
copy of the same two crops from volumes already in RAM. Time is ``time.process_time`` (all
threads of this process), with torch, Blosc and tensorstore held to one thread each. The view
work that runs on the training device (``damt.views.make_views``) is reported separately, timed
here on the CPU for information. Several caches (store layouts of one cohort) are compared in one
run: their samples are timed interleaved, and each cache's MB per subject is reported.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from damt.benchutil import machine, single_threaded
from damt.config import DamtConfig


def _cpu_ms(fn, count: int, rounds: int = 1) -> float:
    """CPU milliseconds per item of ``fn()`` (which does ``count`` items); the median of ``rounds``
    runs, so one run disturbed by another process on a shared machine does not decide."""
    times = []
    for _ in range(rounds):
        c0 = time.process_time()
        fn()
        times.append((time.process_time() - c0) / count * 1e3)
    return float(np.median(times))


def store_layout(cache: Path, store: str) -> dict:
    """A store's layout: its recorded ``layout`` attribute (by name) and, from the image array's
    own metadata, the chunk shape and the Blosc settings actually on disk."""
    from damt.cache import read_store_attrs
    from damt.cache.layout import describe

    meta = json.loads((cache / store / "image" / "zarr.json").read_text())
    chunk = meta["chunk_grid"]["configuration"]["chunk_shape"]
    blosc = [c["configuration"] for c in meta["codecs"] if c["name"] == "blosc"]
    codec = (f"{blosc[0]['cname']} {blosc[0]['clevel']} {blosc[0]['shuffle']}" if blosc
             else "+".join(c["name"] for c in meta["codecs"] if c["name"] != "bytes") or "none")
    return {"layout": describe((read_store_attrs(cache / store) or {}).get("layout")),
            "chunk_shape": chunk, "codec": codec}


def store_sizes(cache: Path, stores: Sequence[str]) -> dict:
    """MB per subject of ``stores`` (everything in a store: image, atlas, targets, metadata):
    apparent bytes, bytes allocated on this file system, and files per store."""
    from damt.cache.layout import store_bytes

    size = alloc = files = 0
    for s in stores:
        a, b = store_bytes(cache / s)
        size, alloc = size + a, alloc + b
        files += sum(len(f) for _, _, f in os.walk(cache / s))
    n = max(len(stores), 1)
    return {"mb_per_subject": round(size / n / 1e6, 3), "disk_mb_per_subject": round(alloc / n / 1e6, 3),
            "files_per_subject": round(files / n, 1)}


def _interleaved_ms(runs: Sequence[tuple], n: int, rounds: int) -> list[float]:
    """CPU ms per sample of each ``(dataset, keys)`` in ``runs``, timed sample by sample in turn
    (sample j of every run before sample j+1 of any, the order rotating with j), so all layouts see
    the same machine load; the median of ``rounds`` passes."""
    per_round = np.zeros((rounds, len(runs)))
    for r in range(rounds):
        for j in range(n):
            for i in np.roll(np.arange(len(runs)), j + r):
                ds, keys = runs[i]
                c0 = time.process_time()
                ds[keys[j]]  # made and dropped, as a training loop consumes samples
                per_round[r, i] += time.process_time() - c0
    return [float(np.median(per_round[:, i])) / n * 1e3 for i in range(len(runs))]


@single_threaded
def bench_loader(cfg: DamtConfig, cache: Path | Sequence[Path], limit: int = 8, repeats: int = 5,
                 readers: Sequence[str] = ("tensorstore", "zarr"), chain_repeats: int = 1,
                 rounds: int = 5, chain: Callable | None = None) -> Iterator[dict]:
    """Yield one JSON-ready dict per result.

    cache: one cache, or several (other store layouts of the same cohort, e.g. made with ``damt
    cache relayout``): each is measured with each reader, all interleaved sample by sample; each
    cache's size is reported (``store_size``) and its CPU per sample relative to the first cache
    (``layout_ratio``); the chain ratio uses the first cache with ``cfg.loader.reader``. limit:
    subjects measured (the first ok ones of the first cache); repeats: samples per subject (new
    crops each); chain_repeats: runs of the MONAI chain per subject (0 = skip it; ~1.4 s a run);
    chain: the baseline chain's builder ``chain(cfg, label_table, crops=True)`` (the CLI passes
    ``damt.app.baseline.monai_chain``; None = skip it);
    rounds: timed passes over the same samples; the median pass is reported.
    """
    import dataclasses

    from train.data import CacheDataset

    caches = [Path(c) for c in ([cache] if isinstance(cache, (str, Path)) else cache)]
    first = CacheDataset(caches[0], cfg)
    ids = first.subjects["subject_id"].tolist()[:limit]
    n = len(ids) * repeats
    base = {"bench": "loader", "subjects": len(ids), "repeats": repeats, "samples": n, "rounds": rounds,
            **machine()}
    combos, runs = [], []
    for ci, c in enumerate(caches):
        for reader in readers:
            rcfg = dataclasses.replace(cfg, loader=dataclasses.replace(cfg.loader, reader=reader))
            ds = CacheDataset(c, rcfg)
            pos = {sid: i for i, sid in enumerate(ds.subjects["subject_id"])}
            missing = [sid for sid in ids if sid not in pos]
            if missing:
                raise ValueError(f"{c} lacks subjects {missing[:5]} of {caches[0]}: compare layouts of one cohort")
            keys = [pos[sid] + r * len(ds) for r in range(repeats) for sid in ids]
            for k in keys[: len(ids)]:  # warm-up: imports, reader start, page cache
                ds[k]
            combos.append((ci, reader, ds))
            runs.append((ds, keys))
    ours = dict(zip([(ci, reader) for ci, reader, _ in combos], _interleaved_ms(runs, n, rounds)))
    for ci, reader, ds in combos:
        yield {**base, "stage": "damt", "reader": reader, "cache": str(caches[ci]),
               **store_layout(caches[ci], ds.subjects.at[0, "store"]),
               "cpu_ms_per_sample": round(ours[(ci, reader)], 3)}
    ref_reader = cfg.loader.reader if cfg.loader.reader in readers else readers[0]
    for ci, c in enumerate(caches):
        ds = next(d for i, _, d in combos if i == ci)
        stores = ds.subjects["store"].astype(str).tolist()
        yield {**base, "stage": "store_size", "cache": str(c), "stores": len(stores),
               **store_layout(c, stores[0]), **store_sizes(c, stores)}
        if ci:
            yield {**base, "stage": "layout_ratio", "reader": ref_reader, "cache": str(c),
                   "first_cache": str(caches[0]),
                   "cpu_over_first_cache": round(ours[(ci, ref_reader)] / max(ours[(0, ref_reader)], 1e-9), 3)}

    yield {**base, "stage": "targets_table", "what": "read + normalise all targets, once per run and rank",
           "cpu_ms_per_subject": round(_cpu_ms(first._load_targets, len(first), rounds), 3)}
    yield {**base, "stage": "floor", "what": "in-memory copy of both crops",
           "cpu_ms_per_sample": round(_floor(first, ids, repeats, rounds), 3)}
    vb = max(1, min(cfg.train.batch_per_device, len(first)))
    yield {**base, "stage": "views", "device": "cpu", "batch": vb,
           "cpu_ms_per_sample": round(_views_ms(first, vb, cfg), 3),
           "note": "make_views, on the training device in a run; timed here on the CPU for information"}

    if chain_repeats > 0 and chain is not None:
        chain_ms = _chain_ms(chain, cfg, first, ids, chain_repeats)
        ref = ours.get((0, cfg.loader.reader), next(iter(ours.values())))
        yield {**base, "stage": "monai_chain", "samples": len(ids) * chain_repeats,
               "cpu_ms_per_sample": round(chain_ms, 1)}
        yield {**base, "stage": "ratio", "reader": cfg.loader.reader,
               "monai_chain_over_damt_cpu": round(chain_ms / max(ref, 1e-9), 1), "target": 200}


def _floor(ds, ids: list[str], repeats: int, rounds: int) -> float:
    """The same crops copied out of volumes already in memory (no store access at all)."""
    from damt.cache import open_subject

    pos = {sid: i for i, sid in enumerate(ds.subjects["subject_id"])}
    vols = {}
    for sid in ids:
        g = open_subject(ds.cache / ds.subjects.at[pos[sid], "store"])
        vols[sid] = (g["image"][...], g["atlas"][...])
    g, lc = ds.cfg.views.global_crop_vox, ds.cfg.views.local_crop_vox
    plan = []
    for r in range(repeats):
        for sid in ids:
            d = ds.draws(pos[sid] + r * len(ds), vols[sid][0].shape)
            plan.append((vols[sid], [tuple(slice(s, s + g) for s in d.global_start),
                                      tuple(slice(s, s + lc) for s in d.local_start)]))

    def run():
        for (img, atl), boxes in plan:
            for box in boxes:
                np.array(img[box]), np.array(atl[box])

    return _cpu_ms(run, len(plan), rounds)


def _views_ms(ds, b: int, cfg: DamtConfig) -> float:
    from torch.utils.data import default_collate

    from damt.views import make_views

    batch = default_collate([ds[i] for i in range(b)])
    make_views(batch, cfg)
    return _cpu_ms(lambda: make_views(batch, cfg), b, 3)


def _chain_ms(monai_chain: Callable, cfg: DamtConfig, ds, ids: list[str], repeats: int) -> float:
    """The original chain per sample on the subjects' original files (paths kept in the stores)."""
    from damt.cache import read_store_attrs
    from damt.labels import load_label_table

    table = load_label_table(cfg.labels.table)
    chain = monai_chain(cfg, table, crops=True)
    chain.set_random_state(seed=cfg.train.seed)
    pos = {sid: i for i, sid in enumerate(ds.subjects["subject_id"])}
    items = []
    for sid in ids:
        src = read_store_attrs(ds.cache / ds.subjects.at[pos[sid], "store"])["source_paths"]
        items.append({"image": src["image"], "label": src["parcellation"]})
    chain(dict(items[0]))  # warm-up: imports and first-call set-up are not per-sample cost
    todo = [dict(it) for _ in range(repeats) for it in items]
    return _cpu_ms(lambda: [chain(it) for it in todo], len(todo))
