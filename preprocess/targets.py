"""Regression targets in the preprocess stage: per-subject vectors into the store, cohort CSV
import, and the normalisation statistics of ``<cache>/targets.json``.

The driver builds one :class:`TargetPlan` (schema, tissue table, imported CSV rows) and ships it
with each task; a task adds four 1-D arrays to its store: ``morphometry`` and ``radiomics``
(float32 raw values) with their ``*_present`` masks. A missing value is a False presence entry
(value 0.0), never NaN, so it can only ever be excluded from a loss, not learnt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from damt.cache import KINDS, write_targets_json
from damt.config import DamtConfig, to_dict
from damt.config.scopes import scoped_dict
from damt.labels import LabelTable
from damt.targets.csv_import import import_targets
from damt.targets.normalise import fit, fit_kwargs
from damt.targets.radiomics import texture_names, texture_vector
from damt.targets.schema import MorphometrySchema, load_schema, morphometry_vector
from damt.targets.tissues import TissueTable, check_against_labels, load_tissue_table

#: CSV kind (csv_import config) -> store kind
_CSV_KIND = {"morphometry": "morphometry", "radiomics": "texture"}


@dataclass(frozen=True)
class TargetPlan:
    """What every task needs to make a subject's targets; built once by the driver."""

    schema: MorphometrySchema | None
    tissues: TissueTable | None
    cfg: Any  # TargetsConfig
    names: dict[str, list[str]]
    sources: dict[str, str]
    csv_rows: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)
    csv_report: dict[str, dict] = field(default_factory=dict)

    def digest(self) -> str:
        """Hash of what makes the stores' target arrays (for the preprocess config hash)."""
        # the targets keys of scope "store" (all but normalise, which only targets.json uses)
        parts = {"cfg": scoped_dict(self.cfg, "store"),
                 "schema": self.schema.sha256 if self.schema else None,
                 "tissues": self.tissues.sha256 if self.tissues else None, "names": self.names}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]

    def for_subject(self, subject_id: str) -> "TargetPlan":
        """This plan with only ``subject_id``'s imported CSV rows (and no report): what its task
        needs, small enough to pass by value with every task instead of scattering the cohort's."""
        rows = {k: ({subject_id: v[subject_id]} if subject_id in v else {}) for k, v in self.csv_rows.items()}
        return replace(self, csv_rows=rows, csv_report={})

    def subject_digest(self, subject_id: str) -> str:
        """Hash of a subject's imported CSV rows ('' without CSV import): part of its input hash,
        so a changed CSV row rebuilds that subject only."""
        rows = [self.csv_rows[k][subject_id] for k in KINDS if subject_id in self.csv_rows.get(k, {})]
        if not rows:
            return ""
        h = hashlib.sha256()
        for values, present in rows:
            h.update(values.tobytes())
            h.update(present.tobytes())
        return h.hexdigest()[:16]


def build_plan(cfg: DamtConfig, labels: LabelTable, subject_ids: list[str], base_dir: Path | None = None
               ) -> TargetPlan:
    """Load the schema and tissue table (checked against the label table) and import CSVs."""
    t = cfg.targets
    schema = load_schema(t.morphometry.schema) if t.morphometry.enabled else None
    tissues = None
    if t.radiomics.enabled:
        tissues = load_tissue_table(t.radiomics.tissue_table)
        check_against_labels(tissues, labels)
    names = {"morphometry": list(schema.names) if schema else [],
             "radiomics": texture_names(t.radiomics, tissues) if tissues else []}
    sources = {"morphometry": f"freesurfer:{schema.version}" if schema else "off",
               "radiomics": "pyradiomics-glcm" if tissues else "off"}
    csv_rows, report = {}, {}
    for kind, csv_kind in _CSV_KIND.items():
        imported = import_targets(t.csv_import, csv_kind, subject_ids, base_dir=base_dir)
        if imported is None:
            continue
        names[kind], sources[kind] = list(imported.names), "csv"
        csv_rows[kind] = {sid: (imported.values[i].astype(np.float32), imported.present[i].astype(bool))
                          for i, sid in enumerate(imported.subject_ids)}
        report[kind] = {"summary": imported.report.summary(), **asdict(imported.report)}
    return TargetPlan(schema, tissues, t, names, sources, csv_rows, report)


def subject_targets(plan: TargetPlan, subject_id: str, stats_dir: Path | None, parc_ids: np.ndarray,
                    voxel_volume_mm3: float, image: np.ndarray, atlas: np.ndarray, spacing_mm: float
                    ) -> dict[str, np.ndarray]:
    """The four target arrays of one subject.

    parc_ids: the original (1 mm) FreeSurfer-id parcellation, for voxel-count volumes;
    image: float32 [X, Y, Z] in [0, 1] on the training grid (the float16 values the store holds,
    so texture can be recomputed from the cache alone); atlas: uint8 class ids, same grid.
    """
    out: dict[str, np.ndarray] = {}
    for kind in KINDS:
        n = len(plan.names[kind])
        if kind in plan.csv_rows:
            values, present = plan.csv_rows[kind].get(subject_id, (np.zeros(n, np.float32), np.zeros(n, bool)))
        elif kind == "morphometry" and plan.schema is not None:
            values, present = morphometry_vector(stats_dir, parc_ids, voxel_volume_mm3, plan.schema,
                                                 plan.cfg.morphometry.volume_source == "parcellation")
        elif kind == "radiomics" and plan.tissues is not None:
            values, present, _ = texture_vector(image, atlas, spacing_mm, plan.cfg.radiomics, plan.tissues)
        else:
            values, present = np.zeros(0, np.float32), np.zeros(0, bool)
        present = present & np.isfinite(values)
        out[kind] = np.where(present, values, 0.0).astype(np.float32)
        out[f"{kind}_present"] = present.astype(bool)
    return out


def refit_targets_json(cache: Path, ok: pd.DataFrame, plan: TargetPlan, cfg: DamtConfig, config_hash: str) -> bool:
    """Fit normalisation statistics over the ok subjects' stored raw values and write targets.json
    (only if it changed). Reads the four small 1-D arrays of each store, never an image."""
    doc: dict[str, Any] = {"config_hash": config_hash, "n_subjects": int(len(ok)), "csv_report": plan.csv_report,
                           "normalise_config": to_dict(cfg.targets.normalise)}
    for kind in KINDS:
        n = len(plan.names[kind])
        values = np.zeros((len(ok), n), np.float32)
        present = np.zeros((len(ok), n), bool)
        for i, store in enumerate(ok["store"]):
            g = zarr.open_group(store=str(cache / store), mode="r", zarr_format=3)
            if g[kind].shape == (n,):  # a store from another schema is left out, not misread
                values[i], present[i] = g[kind][...], g[f"{kind}_present"][...]
        stats = fit(values, present, **fit_kwargs(cfg.targets.normalise, kind)) if n else {}
        doc[kind] = {"names": plan.names[kind], "source": plan.sources[kind], "normalisation": stats,
                     "present_fraction": present.mean(axis=0).round(4).tolist() if len(ok) else []}
    return write_targets_json(cache, doc)
