"""``damt cache relayout``: rewrite a cache's stores into the configured layout from their own arrays.

A layout (chunks, codec) is not in the preprocess hash, so a cohort never has to be preprocessed
again to change it: each ok store of the manifest is read, checked against its recorded hashes,
written in the new layout under ``.staging`` and renamed into place (damt.cache.layout). No input
file is opened. Stores that already record the layout are skipped, so a killed run resumes where
it stopped; the cache lock keeps ``damt preprocess`` out meanwhile.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tqdm import tqdm

from damt.cache import MANIFEST_FILE, Layout, clean_debris, ok_subjects, relayout_store
from damt.cache.layout import describe, store_bytes
from damt.config import DamtConfig
from preprocess.run import cache_lock


@dataclass
class RelayoutSummary:
    """What one relayout run did. ``failed``: (store, message) of stores left as they were."""

    layout: str = ""
    stores: int = 0
    rewritten: int = 0
    current: int = 0
    failed: list = field(default_factory=list)
    bytes_before: int = 0
    bytes_after: int = 0
    rewrite_seconds: float = 0.0
    rewrite_cpu_seconds: float = 0.0
    seconds: float = 0.0
    cache: str = ""

    def table(self) -> str:
        """A plain-text summary table for the console."""
        mb = 1e6 * max(self.stores - len(self.failed), 1)
        per, cpu = (t / max(self.rewritten, 1) for t in (self.rewrite_seconds, self.rewrite_cpu_seconds))
        lines = [f"{'layout':<28}{self.layout:>12}", f"{'ok stores':<28}{self.stores:>12}",
                 f"{'  rewritten':<28}{self.rewritten:>12}", f"{'  already in layout':<28}{self.current:>12}",
                 f"{'  failed (left as they were)':<28}{len(self.failed):>12}",
                 f"{'MB per store before':<28}{self.bytes_before / mb:>12.2f}",
                 f"{'MB per store after':<28}{self.bytes_after / mb:>12.2f}",
                 f"{'s per rewritten store':<28}{per:>12.3f}",
                 f"{'  of which CPU':<28}{cpu:>12.3f}",
                 f"{'wall time (s)':<28}{self.seconds:>12.1f}", f"cache: {self.cache}"]
        lines += [f"FAILED {store}: {msg}" for store, msg in self.failed]
        rule = "-" * 40
        return "\n".join([rule, *lines, rule])


def relayout_one(cache: Path, store: str, layout: Layout) -> tuple[str, str, int, int, float, float, str]:
    """Relayout one store: (store, status rewritten|current|failed, bytes before, after, seconds,
    CPU seconds, message). Never raises for a store's own problem: a failed store is left as it was."""
    path = Path(cache) / store
    before = store_bytes(path)[0]
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        changed = relayout_store(Path(cache), path, layout)
    except Exception as err:  # noqa: BLE001 - e.g. a chunk that no longer decodes: a finding, not a crash
        return store, "failed", before, before, 0.0, 0.0, f"{type(err).__name__}: {err}"
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return store, "rewritten" if changed else "current", before, store_bytes(path)[0], seconds, cpu, ""


def _results(cache: Path, stores: list[str], layout: Layout, workers: int) -> Iterator[tuple]:
    if workers <= 1:
        for s in stores:
            yield relayout_one(cache, s, layout)
        return
    # forkserver: zarr-python's event-loop thread does not survive a fork of this process
    ctx = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        yield from pool.map(relayout_one, [cache] * len(stores), stores, [layout] * len(stores), chunksize=4)


def run_relayout(cfg: DamtConfig, cache: Path, workers: int = 1, progress: bool = True) -> RelayoutSummary:
    """Rewrite every ok store of ``cache``'s manifest that does not record the layout of
    ``cfg.preprocess`` (chunk_vox, slab_vox, codec, clevel). Returns the summary; FileNotFoundError
    if the cache has no manifest, CacheBusyError while another run holds the cache."""
    t0 = time.perf_counter()
    cache = Path(cache)
    if not (cache / MANIFEST_FILE).is_file():
        raise FileNotFoundError(f"{cache}: no {MANIFEST_FILE}; is this a cache made by `damt preprocess`?")
    layout = Layout.from_config(cfg.preprocess)
    summary = RelayoutSummary(layout=describe(layout.record()), cache=str(cache))
    with cache_lock(cache):
        clean_debris(cache)  # also puts back a store caught between the two renames of a replacement
        stores = [str(s) for s in ok_subjects(cache)["store"]]
        summary.stores = len(stores)
        bar = tqdm(total=len(stores), unit="store", desc="relayout", disable=not progress, file=sys.stderr)
        for store, status, before, after, seconds, cpu, message in _results(cache, stores, layout, workers):
            if status == "failed":
                summary.failed.append((store, message))
            else:
                summary.rewritten += status == "rewritten"
                summary.current += status == "current"
                summary.bytes_before += before
                summary.bytes_after += after
                summary.rewrite_seconds += seconds
                summary.rewrite_cpu_seconds += cpu
            bar.update(1)
            bar.set_postfix(rewritten=summary.rewritten, failed=len(summary.failed))
        bar.close()
        clean_debris(cache)  # staging left by a store that failed half-way
    summary.seconds = time.perf_counter() - t0
    return summary

