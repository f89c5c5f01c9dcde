"""The morphometry schema (a versioned data file) and the per-subject morphometry vector.

The schema fixes the columns, their order (global first, then local), units, where each value
comes from (a stats-file column, optionally scaled) and which columns the 1 mm parcellation can
stand in for (voxel counts of given FreeSurfer ids x voxel volume). Built-in schemas:

* ``damt-v1`` (334 columns; aseg volumes and Desikan aparc measures): see the header of
  ``morphometry-damt-v1.tsv`` for the column choice and the measured agreement between stats
  values and parcellation counts.
* ``original-dkt`` (566 = 440 global + 126 local) and ``original-desikan`` (620 = 482 + 138): the
  original DAMT's recipe (its ``extract/glo_feat.py`` and ``extract/loc_feat.py``) on the DKT or
  the Desikan surface tables; see the headers of ``morphometry-original-*.tsv``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from damt.datafile import read_versioned
from damt.labels import MAX_FS_ID
from damt.targets.fsstats import KNOWN_STATS_FILES, read_stats_dir, stats_file_of

BUILTIN_SCHEMAS = {name: Path(__file__).with_name(f"morphometry-{name}.tsv")
                   for name in ("damt-v1", "original-dkt", "original-desikan")}
_HEADER = ["name", "group", "unit", "parc_ids", "aliases", "description"]
#: optional trailing header fields: ``source`` (the stats column read; '-' = the name itself) and
#: ``scale`` (a factor applied to the value, e.g. 20 for the original's local curvature columns)
_OPTIONAL = ["source", "scale"]


class SchemaError(ValueError):
    """The morphometry schema file is malformed."""


@dataclass(frozen=True)
class MorphometrySchema:
    """Parallel per-column tuples, in vector order. ``sources[i]`` is the stats column read for
    column ``i`` (its name unless the schema says otherwise; several columns may read one source)
    and ``scales[i]`` the factor applied to it; ``parc_ids[i]`` is empty when column ``i`` cannot
    be computed from the parcellation; ``aliases[i]`` are other stats names of the same value.
    ``stats_files`` are the stats files the sources and aliases come from (the only ones read)."""

    version: str
    sha256: str
    names: tuple[str, ...]
    groups: tuple[str, ...]
    units: tuple[str, ...]
    parc_ids: tuple[tuple[int, ...], ...]
    aliases: tuple[tuple[str, ...], ...]
    descriptions: tuple[str, ...]
    sources: tuple[str, ...]
    scales: tuple[float, ...]
    stats_files: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)

    def group_mask(self, group: str) -> np.ndarray:
        """bool [n]: True for columns of ``group`` ('global' or 'local')."""
        return np.asarray([g == group for g in self.groups], dtype=bool)

    @property
    def parcellation_derivable(self) -> np.ndarray:
        """bool [n]: True where the parcellation can give the value."""
        return np.asarray([bool(ids) for ids in self.parc_ids], dtype=bool)


def _parse_ids(text: str, where: str) -> tuple[int, ...]:
    """'4,5,1000-1035' -> (4, 5, 1000, ..., 1035); '-' -> ()."""
    if text == "-":
        return ()
    out: list[int] = []
    try:
        for part in text.split(","):
            lo, _, hi = part.partition("-")
            out.extend(range(int(lo), int(hi) + 1) if hi else [int(lo)])
    except ValueError:
        raise SchemaError(f"{where}: parc_ids {text!r} is not a list of ids/ranges like 4,1000-1035") \
            from None
    if len(set(out)) != len(out) or min(out) < 0:
        raise SchemaError(f"{where}: parc_ids {text!r} repeats an id or has a negative id")
    return tuple(out)


def _parse_scale(text: str, where: str) -> float:
    try:
        scale = float(text)
    except ValueError:
        scale = math.nan
    if not (math.isfinite(scale) and scale != 0):
        raise SchemaError(f"{where}: scale {text!r} is not a finite non-zero number")
    return scale


def parse_schema(text: str, version: str, sha256: str = "") -> MorphometrySchema:
    """Parse schema TSV text (header ``name group unit parc_ids aliases description``, optionally
    followed by ``source scale``; '#' comments).

    Checks: unique names and aliases, groups in {global, local}, all global columns before local,
    scales finite and non-zero, and every column can be present: its source or an alias names a
    column of a known stats file (``aseg.``, ``lh.aparc.``, ``lh.aparc.DKTatlas.`` ...), or it has
    parc_ids. Raises SchemaError.
    """
    rows = [ln.split("\t") for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not rows or rows[0] not in (_HEADER, _HEADER + _OPTIONAL):
        raise SchemaError(f"{version}: header must be {' '.join(_HEADER)} [{' '.join(_OPTIONAL)}] "
                          f"(tab-separated)")
    header = rows[0]
    cols: dict[str, list] = {k: [] for k in _HEADER + _OPTIONAL}
    files: set[str] = set()
    for n, row in enumerate(rows[1:], start=2):
        where = f"{version} row {n}"
        if len(row) != len(header):
            raise SchemaError(f"{where}: expected {len(header)} tab-separated fields, got {len(row)}")
        field = dict(zip(header, row))
        name, group = field["name"], field["group"]
        if group not in ("global", "local"):
            raise SchemaError(f"{where}: group must be global or local, got {group!r}")
        if cols["group"] and cols["group"][-1] == "local" and group == "global":
            raise SchemaError(f"{where}: global columns must all come before local ones")
        source = field.get("source", "-")
        source = name if source == "-" else source
        aliases = () if field["aliases"] == "-" else tuple(field["aliases"].split("|"))
        cols["name"].append(name)
        cols["group"].append(group)
        cols["unit"].append(field["unit"])
        cols["parc_ids"].append(_parse_ids(field["parc_ids"], where))
        cols["aliases"].append(aliases)
        cols["description"].append(field["description"])
        cols["source"].append(source)
        cols["scale"].append(_parse_scale(field.get("scale", "1"), where))
    every = cols["name"] + [a for al in cols["aliases"] for a in al]
    dup = sorted({n for n in every if every.count(n) > 1})
    if dup:
        raise SchemaError(f"{version}: names or aliases used twice: {dup[:5]}")
    for name, source, aliases, ids in zip(cols["name"], cols["source"], cols["aliases"], cols["parc_ids"]):
        found = {f for f in map(stats_file_of, (source, *aliases)) if f is not None}
        if not found and not ids:
            prefixes = ", ".join(f.removesuffix("stats") for f in KNOWN_STATS_FILES)
            raise SchemaError(f"{version}: column {name!r} can never be present: its source {source!r} "
                              f"names no stats-file column (those start with {prefixes}) and it has "
                              f"no parc_ids")
        files |= found
    return MorphometrySchema(version=version, sha256=sha256, names=tuple(cols["name"]),
                             groups=tuple(cols["group"]), units=tuple(cols["unit"]),
                             parc_ids=tuple(cols["parc_ids"]), aliases=tuple(cols["aliases"]),
                             descriptions=tuple(cols["description"]), sources=tuple(cols["source"]),
                             scales=tuple(cols["scale"]),
                             stats_files=tuple(f for f in KNOWN_STATS_FILES if f in files))


def load_schema(name_or_path: str = "damt-v1") -> MorphometrySchema:
    """Load a built-in schema by name (``damt-v1``, ``original-dkt``, ``original-desikan``) or a
    schema TSV by path. Raises SchemaError."""
    return parse_schema(*read_versioned(name_or_path, BUILTIN_SCHEMAS, SchemaError, "morphometry schema"))


def id_counts(parcellation_fs_ids: np.ndarray) -> np.ndarray:
    """Voxel count per FreeSurfer id: int64 [max_id + 1] from an integer array of any shape.

    Negative ids and ids from MAX_FS_ID up (never written by FreeSurfer) are ignored rather than
    wrapping around or sizing the count array (an id of 2**31 would ask for 16 GB).
    """
    ids = np.asarray(parcellation_fs_ids).ravel()
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"parcellation must hold integer FreeSurfer ids, got dtype {ids.dtype}")
    if ids.size and (ids.min() < 0 or ids.max() >= MAX_FS_ID):
        ids = ids[(ids >= 0) & (ids < MAX_FS_ID)]
    return np.bincount(ids.astype(np.int64, copy=False))


def morphometry_from_values(stats_values: dict[str, float], counts: np.ndarray | None,
                            voxel_volume_mm3: float, schema: MorphometrySchema,
                            prefer_parcellation: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Assemble the vector from parsed stats values and/or per-id voxel counts.

    stats_values: name -> float (from :func:`damt.targets.fsstats.read_stats_dir`);
    counts: int64 [max_id + 1] from :func:`id_counts`, or None.
    A column takes its stats value (by source, then aliases); else, if it is parcellation-derivable
    and counts are given, sum(counts[ids]) * voxel_volume_mm3; else present False and value 0.0.
    ``prefer_parcellation`` swaps that order for derivable columns. The value found is multiplied
    by the column's scale (in float64, then rounded once to float32).
    Returns (values float32 [n], present bool [n]); values are always finite.
    """
    n = len(schema)
    values = np.zeros(n, dtype=np.float32)
    present = np.zeros(n, dtype=bool)
    for i, (source, ids) in enumerate(zip(schema.sources, schema.parc_ids)):
        from_parc = None
        if ids and counts is not None:
            inside = [j for j in ids if j < counts.size]
            from_parc = float(counts[inside].sum()) * voxel_volume_mm3
        from_stats = next((stats_values[k] for k in (source, *schema.aliases[i]) if k in stats_values),
                          None)
        order = (from_parc, from_stats) if prefer_parcellation else (from_stats, from_parc)
        value = next((v for v in order if v is not None), None)
        if value is not None and np.isfinite(value * schema.scales[i]):
            values[i], present[i] = value * schema.scales[i], True
    return values, present


def morphometry_vector(stats_dir: Path | None, parcellation_fs_ids: np.ndarray | None,
                       voxel_volume_mm3: float, schema: MorphometrySchema,
                       prefer_parcellation: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The morphometry target of one subject.

    stats_dir: the subject's ``stats/`` folder (None or absent: no stats); only the schema's
    ``stats_files`` are read, and any of them may be missing (its columns are then not present,
    unless the parcellation can give them). parcellation_fs_ids: the ORIGINAL 1 mm
    aparc+aseg (integer FreeSurfer ids, any shape) or None; voxel_volume_mm3: its voxel volume
    (|det| of the affine's 3x3 part). Returns (values float32 [n], present bool [n]); a column
    neither file nor parcellation can give is present=False with value 0.0 (never NaN).
    Raises FsStatsError for a malformed stats file, ValueError for a bad voxel volume.
    """
    if not (np.isfinite(voxel_volume_mm3) and voxel_volume_mm3 > 0):
        raise ValueError(f"voxel_volume_mm3 must be a positive number, got {voxel_volume_mm3!r}")
    stats_values, _, _ = read_stats_dir(stats_dir, schema.stats_files)
    counts = None if parcellation_fs_ids is None else id_counts(parcellation_fs_ids)
    return morphometry_from_values(stats_values, counts, float(voxel_volume_mm3), schema,
                                   prefer_parcellation)
