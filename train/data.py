"""Training input: stream crops from the cache (DESIGN.md cache contract) into batches.

This module is the I/O side of the views: crop readers, the dataset, the sampler and the loader.
A sample is made from one subject store by drawing every random choice first
(:func:`damt.views.draw_sample`, from a generator seeded by ``(train.seed, epoch, sample key)``),
then reading only the two crop regions those draws name (never a whole volume), and returning
small CPU tensors. The voxel-heavy view work (rotations, resizing, mask expansion) is left to
:func:`damt.views.make_views` on the training device. See docs/data-loading.md.
"""

from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from damt.cache import KINDS, Cache, read_store_attrs
from damt.views import Draws, draw_sample, sample_rng

Box = tuple[slice, slice, slice]


class _TensorStoreReader:
    """Crop reads through tensorstore. One context per process, one I/O and one copy thread: the
    loader's parallelism is its worker processes, so a worker must not fan out threads of its own."""

    def __init__(self) -> None:
        import tensorstore as ts  # noqa: PLC0415 - imported where a reader is made, never at import

        self._ts = ts
        # cache_pool 0: chunks are read once per sample, caching them would only copy memory
        self._ctx = ts.Context({"data_copy_concurrency": {"limit": 1}, "file_io_concurrency": {"limit": 1},
                                "cache_pool": {"total_bytes_limit": 0}})

    def open(self, store: Path, name: str) -> Any:
        spec = {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(store / name)}}
        return self._ts.open(spec, read=True, context=self._ctx).result()

    def read(self, arrays: Sequence[tuple[Any, Any]]) -> list[np.ndarray]:
        """Read (array, index) pairs; all reads are issued before the first is awaited."""
        futures = [a[idx].read() for a, idx in arrays]
        return [f.result() for f in futures]


class _ZarrReader:
    """Crop reads through zarr-python (kept selectable; slower per sample, see the docs)."""

    def open(self, store: Path, name: str) -> Any:
        import zarr  # noqa: PLC0415

        return zarr.open_array(store=str(store / name), mode="r", zarr_format=3)

    def read(self, arrays: Sequence[tuple[Any, Any]]) -> list[np.ndarray]:
        return [np.asarray(a[idx]) for a, idx in arrays]


READERS = {"tensorstore": _TensorStoreReader, "zarr": _ZarrReader}


class NoOkSubjectsError(ValueError):
    """The cache's manifest holds no ok subject: there is nothing to train on."""

    @classmethod
    def of(cls, cache: Path) -> "NoOkSubjectsError":
        """The error for ``cache``, naming how many subjects failed and why, and where to look."""
        man = Cache(cache).manifest()
        if man.empty:
            return cls(f"{cache} holds no subject yet: run `damt preprocess --input DIR --cache {cache}`")
        counts = man["reason"].fillna("").value_counts()
        reasons = ", ".join(f"{n} {r}" for r, n in counts.items() if r)
        return cls(f"{cache} has no ok subject to train on: all {len(man)} failed in preprocessing ({reasons}); "
                   f"see why in `damt qc --cache {cache}`, fix the inputs, then run `damt preprocess` again")


class MissingTargetsError(FileNotFoundError):
    """A subject store lacks a target array that targets.json declares."""


class CacheDataset(Dataset):
    """The manifest's ok subjects as training samples.

    ``dataset[key]`` makes the sample of subject ``key % len(self)`` with the generator seeded by
    ``(cfg.train.seed, epoch, key)``. Keys >= len(self) (a subject drawn again in the same epoch by
    padding or cohort balancing) give fresh crops of the same subject. Returns a dict of CPU
    tensors (G = views.global_crop_vox, Lc = views.local_crop_vox, S = views.local_size_vox,
    b = views.mim_block_vox):

    global_image float16 [1,G,G,G], global_atlas uint8 [1,G,G,G], local_image float16
    [1,Lc,Lc,Lc], local_atlas uint8 [1,Lc,Lc,Lc], location int64 [], rotation int64 [3]
    (global view 1, global view 2, local), mim_global bool [G/b]*3, mim_local bool [S/b]*3,
    morphometry float32 [n_m] (normalised), morphometry_present bool [n_m], radiomics float32
    [n_r], radiomics_present bool [n_r], index int64 [] (the subject's row in ``self.subjects``).

    Volumes are read lazily, crop by crop, in the process that makes the sample (after the loader's
    workers start); no volume is ever held. The targets are small (a few hundred numbers per
    subject) and are read once, here, into one normalised table in shared memory that the workers
    share: per sample they would cost four store reads, a quarter of the sample's CPU time. A store
    without its target arrays raises MissingTargetsError here, naming the subject.
    """

    def __init__(self, cache: Path, cfg) -> None:
        self.cache = Path(cache)
        self.cfg = cfg
        rows = Cache(self.cache).ok_subjects()
        if rows.empty:
            raise NoOkSubjectsError.of(self.cache)
        self.subjects = rows[["subject_id", "cohort", "store"]].reset_index(drop=True)
        # plain paths: a pandas lookup per sample costs a quarter of a millisecond
        self._stores = [self.cache / str(s) for s in self.subjects["store"]]
        self.targets = Cache(self.cache).targets()
        self.target_table = self._load_targets()
        v = cfg.views
        self._g, self._lc = v.global_crop_vox, v.local_crop_vox
        # Shared memory so set_epoch in the main process reaches persistent worker processes.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._reader: Any = None
        self._reader_pid = -1

    def __len__(self) -> int:
        return len(self.subjects)

    @property
    def cohorts(self) -> list[str]:
        """Cohort name of each subject, in dataset order (for cohort-balanced sampling)."""
        return self.subjects["cohort"].astype(str).tolist()

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch of every later sample, in this process and in the loader's workers. Call it
        before iterating the loader for that epoch."""
        self._epoch.fill_(int(epoch))

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_reader"], state["_reader_pid"] = None, -1  # reader threads never cross processes
        return state

    def _get_reader(self):
        if self._reader is None or self._reader_pid != os.getpid():
            self._reader = READERS[self.cfg.loader.reader]()
            self._reader_pid = os.getpid()
            self._complete: set[int] = set()
        return self._reader

    def draws(self, key: int, shape: Sequence[int]) -> Draws:
        """The random choices of sample ``key`` (in this epoch) for a volume of ``shape``:
        :func:`damt.views.draw_sample` from the sample's own generator."""
        return draw_sample(sample_rng(self.cfg.train.seed, self.epoch, key), shape, self.cfg)

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        key = int(key)
        if key < 0:
            raise IndexError(key)
        index = key % len(self)
        store = self._stores[index]
        reader = self._get_reader()
        if index not in self._complete:  # once per subject and process: parsing the attrs costs 0.4 ms
            if read_store_attrs(store) is None:
                raise FileNotFoundError(f"{store}: no complete subject store (the manifest lists it as ok; "
                                        f"re-run `damt preprocess` on this cache)")
            self._complete.add(index)
        image, atlas = reader.open(store, "image"), reader.open(store, "atlas")
        shape = tuple(int(n) for n in image.shape)
        d = self.draws(key, shape)
        g, lc = self._g, self._lc
        gbox = _box(d.global_start, g)
        inside = all(a <= b and b + lc <= a + g for a, b in zip(d.global_start, d.local_start))
        reads = [(image, gbox), (atlas, gbox)]
        if not inside:
            lbox = _box(d.local_start, lc)
            reads += [(image, lbox), (atlas, lbox)]
        got = reader.read(reads)
        gimg, gatl = got[0], got[1]
        if inside:  # the local crop lies in the global one: slice it instead of reading it again
            rel = _box(tuple(b - a for a, b in zip(d.global_start, d.local_start)), lc)
            limg, latl = gimg[rel], gatl[rel]
        else:
            limg, latl = got[2], got[3]
        out = {
            "global_image": _as_image(gimg), "global_atlas": torch.from_numpy(np.ascontiguousarray(gatl))[None],
            "local_image": _as_image(limg), "local_atlas": torch.from_numpy(np.ascontiguousarray(latl))[None],
            "location": torch.tensor(d.location),
            "rotation": torch.tensor(d.rotation, dtype=torch.int64),
            "mim_global": torch.from_numpy(d.mim_global), "mim_local": torch.from_numpy(d.mim_local),
            "index": torch.tensor(index, dtype=torch.int64),
        }
        out.update({k: t[index].clone() for k, t in self.target_table.items()})
        return out

    def _load_targets(self) -> dict[str, torch.Tensor]:
        """name -> shared-memory tensor [n_subjects, n_kind]: each kind normalised with targets.json,
        and its presence mask (a present entry whose raw value is not finite is not present)."""
        reader = READERS[self.cfg.loader.reader]()
        names = [name for kind in KINDS for name in (kind, f"{kind}_present")]
        raw: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for store in self._stores:
            for name in names:
                if not (store / name / "zarr.json").is_file():
                    raise MissingTargetsError(
                        f"{store}: no '{name}' array. This store was written before targets were "
                        f"cached (or by an older preprocess); re-run `damt preprocess` on this cache. "
                        f"Targets are never zero-filled.")
            got = reader.read([(reader.open(store, name), slice(None)) for name in names])
            for name, arr in zip(names, got):
                raw[name].append(arr)
        table = {}
        for kind in KINDS:
            n = self.targets.size(kind)
            bad = [sid for sid, v, p in zip(self.subjects["subject_id"], raw[kind], raw[f"{kind}_present"])
                   if v.shape != (n,) or p.shape != (n,)]
            if bad:
                raise ValueError(f"{self.cache}: '{kind}' of {bad[:5]} does not have the {n} columns that "
                                 f"targets.json lists; re-run `damt preprocess` on this cache")
            values = np.stack(raw[kind]).astype(np.float32).reshape(len(self), n)
            present = np.stack(raw[f"{kind}_present"]).astype(bool).reshape(len(self), n) & np.isfinite(values)
            table[kind] = torch.from_numpy(self.targets.normalise(kind, values, present)).share_memory_()
            table[f"{kind}_present"] = torch.from_numpy(present).share_memory_()
        return table


def _box(start: Sequence[int], edge: int) -> Box:
    return tuple(slice(s, s + edge) for s in start)  # type: ignore[return-value]


def _as_image(a: np.ndarray) -> torch.Tensor:
    """float16 [L,L,L] -> float16 tensor [1,L,L,L]. Crops stay float16 on the host (half the
    copies and half the host-to-device traffic); make_views converts them on the device."""
    return torch.from_numpy(np.ascontiguousarray(a))[None]


class ShardedSampler(Sampler[int]):
    """Sample keys for one DDP rank; a drop-in for DistributedSampler with exact resume.

    Every rank builds the same epoch order from ``(seed, epoch)`` and takes every
    ``world_size``-th key from its rank on, so ranks are disjoint and together complete. With
    ``drop_last`` the order is cut to a multiple of ``world_size``; otherwise it is padded with its
    own first subjects. The j-th occurrence of subject ``s`` in an epoch (padding and balanced
    sampling repeat subjects) has key ``s + j * n``, so a repeat gets fresh crops.

    balanced (needs ``groups``, one cohort label per subject): an epoch still has ``n`` keys, but
    the cohorts take turns (in a random order each round), and within a cohort the subjects are
    cycled in a fresh random order per pass: cohorts are drawn equally often, and the subjects of
    a cohort as evenly as possible.

    Resume: ``position`` counts the keys of this rank already consumed in this epoch. The trainer
    calls :meth:`advance` with each batch size after the step; :meth:`state_dict` saves
    ``epoch`` and ``position``; after :meth:`load_state_dict` the next ``__iter__`` starts at the
    next unconsumed key. :meth:`set_epoch` to a new epoch resets the position to 0.
    """

    def __init__(self, n: int, rank: int, world_size: int, seed: int, shuffle: bool = True,
                 drop_last: bool = False, groups: Sequence[Any] | None = None, balanced: bool = False) -> None:
        if n < 1 or world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"need n >= 1 and 0 <= rank < world_size, got n={n} rank={rank} "
                             f"world_size={world_size}")
        if balanced and (groups is None or len(groups) != n):
            raise ValueError("balanced sampling needs groups: one cohort label per subject")
        if drop_last and n < world_size:
            raise ValueError(f"drop_last with {n} subjects over {world_size} ranks leaves no sample")
        self.n, self.rank, self.world_size, self.seed = n, rank, world_size, int(seed)
        self.shuffle, self.drop_last, self.balanced = shuffle, drop_last, balanced
        self.groups = list(groups) if groups is not None else None
        self.epoch, self.position = 0, 0
        self.num_samples = n // world_size if drop_last else math.ceil(n / world_size)

    def __len__(self) -> int:
        """Keys of this rank in a whole epoch (a resumed epoch yields ``len - position``)."""
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        if int(epoch) != self.epoch:
            self.epoch, self.position = int(epoch), 0

    def advance(self, count: int) -> None:
        """Record that ``count`` more keys of this epoch were consumed (call after each step)."""
        self.position = min(self.position + int(count), self.num_samples)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "n": self.n,
                "world_size": self.world_size, "balanced": int(self.balanced)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        for name in ("seed", "n", "world_size"):
            if name in state and int(state[name]) != getattr(self, name):
                raise ValueError(f"sampler state has {name}={state[name]} but this run has "
                                 f"{getattr(self, name)}: the sample order would differ, resume is not exact")
        self.epoch, self.position = int(state["epoch"]), int(state["position"])

    def epoch_order(self) -> np.ndarray:
        """The subjects of this epoch for all ranks together, before padding (int64 [n]; a subject
        may repeat when balanced)."""
        rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([self.seed, self.epoch, 0x5A])))
        if self.balanced:
            return _balanced_order(rng, self.groups, self.n)
        return rng.permutation(self.n) if self.shuffle else np.arange(self.n)

    def rank_keys(self) -> np.ndarray:
        """This rank's sample keys of the whole epoch (int64 [len(self)])."""
        order = self.epoch_order()
        total = self.num_samples * self.world_size
        if total > len(order):  # pad with the order's own first subjects (DistributedSampler's rule)
            order = np.concatenate([order, order[np.arange(total - len(order)) % len(order)]])
        return _occurrence_keys(order[:total], self.n)[self.rank::self.world_size]

    def __iter__(self) -> Iterator[int]:
        return iter(self.rank_keys()[self.position:].tolist())


def _occurrence_keys(subjects: np.ndarray, n: int) -> np.ndarray:
    """Key of each entry: ``subject + j * n`` for the j-th occurrence of that subject (j from 0), so
    every sample of an epoch has its own generator even when a subject repeats."""
    order = np.argsort(subjects, kind="stable")
    ranked = subjects[order]
    first = np.r_[0, np.flatnonzero(np.diff(ranked)) + 1]
    group_start = np.repeat(first, np.diff(np.r_[first, len(ranked)]))
    occurrence = np.empty_like(subjects)
    occurrence[order] = np.arange(len(ranked)) - group_start
    return subjects + n * occurrence


def _balanced_order(rng: np.random.Generator, groups: list, n: int) -> np.ndarray:
    """n subjects: cohorts take turns in a shuffled order per round; within a cohort, members are
    drawn in a fresh shuffled order per pass over the cohort."""
    members: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        members.setdefault(g, []).append(i)
    names = sorted(members, key=str)
    streams: dict[Any, list[int]] = {g: [] for g in names}
    out: list[int] = []
    while len(out) < n:
        for g in (names[i] for i in rng.permutation(len(names))):
            if len(out) == n:
                break
            if not streams[g]:
                streams[g] = [int(i) for i in rng.permutation(members[g])]
            out.append(streams[g].pop())
    return np.asarray(out, dtype=np.int64)


def _worker_init(worker_id: int) -> None:
    """Deterministic, single-threaded workers. Samples draw only from their own generators; the
    global generators are seeded anyway so a library that uses them stays reproducible."""
    info = torch.utils.data.get_worker_info()
    seed = int(info.dataset.cfg.train.seed) if info is not None else 0
    torch.set_num_threads(1)  # parallelism is across workers; threads inside them oversubscribe
    torch.manual_seed(seed * 1000 + worker_id)
    np.random.seed((seed * 1000 + worker_id) % 2 ** 32)
    random.seed(seed * 1000 + worker_id)


def build_loader(dataset: CacheDataset, sampler: Sampler, cfg, batch_size: int) -> DataLoader:
    """A DataLoader over ``dataset`` in ``sampler`` order, set from ``cfg.loader``.

    Workers are persistent and started by ``forkserver``: tensorstore aborts a process that forks
    after using it, and zarr-python's event-loop thread does not survive a fork either.
    Memory is pinned only when CUDA is available. The last, smaller batch is kept.
    """
    lc = cfg.loader
    kwargs: dict[str, Any] = {}
    if lc.num_workers > 0:
        kwargs = {"prefetch_factor": lc.prefetch_factor, "persistent_workers": True,
                  "multiprocessing_context": "forkserver"}
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=lc.num_workers,
                      pin_memory=bool(lc.pin_memory and torch.cuda.is_available()),
                      worker_init_fn=_worker_init, drop_last=False, **kwargs)


def to_device(batch: dict[str, torch.Tensor], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Move a collated batch to ``device`` (asynchronously from pinned memory)."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}
