"""``damt bench preprocess``: seconds per subject per core for DAMT's stage and for the original
on-the-fly MONAI chain on the same subjects in the same run, their ratio, and worker scaling.

"Per core" means one thread: torch and Blosc are pinned to one thread and CPU time is measured
with ``time.process_time`` (all threads of this process), next to the wall time.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from damt.benchutil import machine, single_threaded
from damt.config import DamtConfig
from damt.labels import load_label_table
from preprocess.discover import discover, parse_cohorts
from preprocess.run import preprocess_hash, run_preprocess
from preprocess.subject import process_subject
from preprocess.targets import build_plan


def _timed(fn) -> tuple[float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


@single_threaded
def bench_preprocess(cfg: DamtConfig, limit: int = 4, repeats: int = 1,
                     workers: list[int] = (1,), chain: Callable | None = None) -> Iterator[dict]:
    """Yield one JSON-ready dict per result (DAMT stage, MONAI chain, ratio, worker scaling).

    chain: the baseline chain's builder ``chain(cfg, label_table, crops=True)`` (the CLI passes
    ``damt.app.baseline.monai_chain``); None skips the chain and the ratio."""
    table = load_label_table(cfg.labels.table)
    subjects = [s for s in discover(parse_cohorts(cfg.data.inputs), cfg.data)
                if s.error is None and s.image is not None and s.parcellation is not None][:limit]
    if not subjects:
        raise ValueError("no usable subjects under data.inputs / --input")
    ids = [s.subject_id for s in subjects]
    targets = build_plan(cfg, table, ids)
    chash = preprocess_hash(cfg, table, targets)
    base = {"bench": "preprocess", "subjects": len(subjects), "repeats": repeats, **machine()}

    ours_cpu = ours_wall = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for s in subjects:
                cache = Path(tmp) / f"r{r}"
                row: dict = {}
                c, w = _timed(lambda s=s, cache=cache, row=row:
                              row.update(process_subject(s, cfg, table, targets, cache, chash)))
                if row["status"] != "ok":
                    raise RuntimeError(f"{s.subject_id} failed: {row['message']}")
                ours_cpu, ours_wall = ours_cpu + c, ours_wall + w
        rad_cpu = _radiomics_cpu(Path(tmp) / "r0", ids, cfg, targets) if targets.tissues else 0.0
    n = len(subjects) * repeats
    yield {**base, "stage": "damt", "cpu_s_per_subject": round(ours_cpu / n, 4),
           "wall_s_per_subject": round(ours_wall / n, 4), "subject_ids": ids}
    yield {**base, "stage": "damt_radiomics_part", "cpu_s_per_subject": round(rad_cpu / len(ids), 4),
           "fraction_of_stage": round(rad_cpu / len(ids) / max(ours_cpu / n, 1e-9), 3),
           "target_s_per_subject": 3.0}

    if chain is not None:
        yield from _chain_rows(chain(cfg, table, crops=True), subjects, repeats, ours_cpu / n, base)

    yield from _scaling(cfg, workers, base)


def _chain_rows(transform, subjects: list, repeats: int, ours_cpu: float, base: dict) -> Iterator[dict]:
    """The baseline chain on the same subjects' files: CPU and wall seconds per subject, and its
    ratio to DAMT's stage (``ours_cpu``: DAMT's CPU seconds per subject)."""
    transform.set_random_state(seed=0)
    base_cpu = base_wall = 0.0
    for _ in range(repeats):
        for s in subjects:
            c, w = _timed(lambda s=s: transform({"image": str(s.image), "label": str(s.parcellation)}))
            base_cpu, base_wall = base_cpu + c, base_wall + w
    n = len(subjects) * repeats
    yield {**base, "stage": "monai_chain", "cpu_s_per_subject": round(base_cpu / n, 4),
           "wall_s_per_subject": round(base_wall / n, 4)}
    yield {**base, "stage": "ratio", "monai_chain_over_damt_cpu": round(base_cpu / n / max(ours_cpu, 1e-9), 3)}


def _radiomics_cpu(cache: Path, ids: list[str], cfg: DamtConfig, targets) -> float:
    """CPU seconds of the radiomics part alone, re-run on the stored training grids."""
    from damt.cache import open_subject, store_path
    from damt.targets.radiomics import texture_vector

    total = 0.0
    for sid in ids:
        g = open_subject(store_path(cache, sid))
        image, atlas = g["image"][...].astype("float32"), g["atlas"][...]
        total += _timed(lambda image=image, atlas=atlas: texture_vector(
            image, atlas, cfg.preprocess.spacing_mm, cfg.targets.radiomics, targets.tissues))[0]
    return total


def _scaling(cfg: DamtConfig, workers: list[int], base: dict) -> Iterator[dict]:
    """Wall time of a full ``run_preprocess`` with w local workers (cluster started beforehand)."""
    from dask.distributed import LocalCluster

    first = None
    for w in workers:
        with tempfile.TemporaryDirectory() as tmp, \
                LocalCluster(n_workers=w, threads_per_worker=1, processes=True, dashboard_address=None,
                             memory_limit=f"{cfg.dask.memory_limit_gb}GiB") as cluster:
            t0 = time.perf_counter()
            summary = run_preprocess(cfg, Path(tmp), scheduler=cluster.scheduler_address, progress=False)
            wall = time.perf_counter() - t0
        rate = summary.processed / wall
        first = first or rate
        yield {**base, "stage": "scaling", "workers": w, "subjects": summary.processed,
               "wall_s": round(wall, 3), "subjects_per_s": round(rate, 4),
               "speedup_vs_first": round(rate / first, 3)}
