"""``<cache>/targets.json``: the target schema (column names per kind) and the normalisation
statistics over the ok subjects. Subject stores keep raw values; statistics are applied when a
sample is loaded, so adding a cohort refits them without rewriting any store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from damt.cache.names import TARGETS_FILE
from damt.durable import atomic_write_text
from damt.errors import TargetsFileError, TargetsFileMissingError
from damt.targets.normalise import apply

TARGETS_FORMAT = "damt-targets-v1"
#: target kinds, in the names of the store arrays (``<kind>`` float32 and ``<kind>_present`` bool)
KINDS = ("morphometry", "radiomics")


@dataclass(frozen=True)
class CacheTargets:
    """Parsed targets.json. ``names[kind]``: column names in store order; ``stats[kind]``: the
    normalisation statistics from :func:`damt.targets.normalise.fit` (empty dict: no columns);
    ``sources[kind]``: the schema or source of the columns."""

    names: dict[str, list[str]]
    stats: dict[str, dict]
    info: dict[str, Any] = field(default_factory=dict)
    #: where each kind's columns come from: ``freesurfer:<schema>``, ``pyradiomics-glcm``, ``csv``, ``off``
    sources: dict[str, str] = field(default_factory=dict)

    def size(self, kind: str) -> int:
        """Number of columns of ``kind`` (0 when the kind is switched off)."""
        return len(self.names.get(kind, []))

    def normalise(self, kind: str, values: np.ndarray, present: np.ndarray) -> np.ndarray:
        """Normalised float32 values, same shape as ``values`` ([n] or [B, n]); 0 where not present."""
        if self.size(kind) == 0:
            return np.zeros(values.shape, np.float32)
        return apply(values, present, self.stats[kind])

    @classmethod
    def load(cls, cache: Path) -> "CacheTargets":
        """Read ``<cache>/targets.json``; TargetsFileError with advice if it is missing or damaged."""
        path = Path(cache) / TARGETS_FILE
        if not path.is_file():
            raise TargetsFileMissingError(f"{path} is missing: run `damt preprocess` on this cache first "
                                          f"(a run still in progress writes it when it ends)")
        redo = ("rerun `damt preprocess` with the same inputs: it rewrites targets.json from the stores "
                "without rebuilding them")
        try:
            doc = json.loads(path.read_text())
            if doc.get("format") != TARGETS_FORMAT:
                raise TargetsFileError(f"{path}: format {doc.get('format')!r}, expected {TARGETS_FORMAT!r}; "
                                       f"{redo}")
            names = {k: list(doc[k]["names"]) for k in KINDS}
            stats = {k: dict(doc[k]["normalisation"]) for k in KINDS}
            sources = {k: str(doc[k].get("source", "")) for k in KINDS}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
            if isinstance(err, TargetsFileError):
                raise
            raise TargetsFileError(f"{path} cannot be read ({type(err).__name__}: {err}); it is damaged: "
                                   f"{redo}") from None
        return cls(names=names, stats=stats, info={k: v for k, v in doc.items() if k not in KINDS},
                   sources=sources)


def write_targets_json(cache: Path, doc: dict[str, Any]) -> bool:
    """Write targets.json atomically if its content changed. Returns True if written."""
    path = Path(cache) / TARGETS_FILE
    text = json.dumps(doc | {"format": TARGETS_FORMAT}, indent=1, sort_keys=True)
    try:
        if path.read_text() == text:
            return False
    except (OSError, ValueError):  # missing, or damaged beyond decoding: write it
        pass
    atomic_write_text(path, text)
    return True
