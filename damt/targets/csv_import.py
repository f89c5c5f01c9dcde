"""Import precomputed cohort targets from CSV files keyed by a subject-id column.

Users of the original code hold ``nfeats_global.csv`` (440 columns), ``nfeats_local.csv`` (126) and
``radiomics_texture.csv`` (72). Each file gives one row per subject; every numeric column becomes
a target column named ``<file stem>.<column>`` (so two files may share column names). A cell that
is empty or not a finite number is present=False; a subject without a row is present=False in
every column of that file. Columns with no numeric cell at all (e.g. a site or sex column) and
unnamed index columns (``Unnamed: 0``, written by pandas) are dropped and reported. A file left
with no column (header only, or only the id column) is refused: it would replace the computed
targets by an empty vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


class CsvImportError(ValueError):
    """A target CSV cannot be used (missing id column, duplicate subject ids, no numeric column,
    unreadable)."""


@dataclass(frozen=True)
class CsvReport:
    """What did not match, per file (keys are the file paths as given)."""

    unmatched_rows: dict[str, list[str]] = field(default_factory=dict)      # CSV ids not asked for
    subjects_without_row: dict[str, list[str]] = field(default_factory=dict)  # asked, no row
    dropped_columns: dict[str, list[str]] = field(default_factory=dict)     # non-numeric/unnamed

    def summary(self) -> str:
        """One line per file with the counts, for logs."""
        lines = []
        for f in sorted(set(self.unmatched_rows) | set(self.subjects_without_row)):
            lines.append(f"{f}: {len(self.unmatched_rows.get(f, []))} rows match no subject, "
                         f"{len(self.subjects_without_row.get(f, []))} subjects have no row, "
                         f"{len(self.dropped_columns.get(f, []))} columns dropped")
        return "\n".join(lines)


@dataclass(frozen=True)
class CsvTargets:
    """values float32 [n_subjects, n_columns], present bool (same), in ``subject_ids`` order."""

    subject_ids: list[str]
    names: list[str]
    values: np.ndarray
    present: np.ndarray
    report: CsvReport


def read_target_csv(path: Path, id_column: str, subject_ids: list[str],
                    drop_columns: tuple[str, ...] | list[str] = ()) -> CsvTargets:
    """Read one target CSV for the given subjects. Raises CsvImportError."""
    path = Path(path)
    try:
        # dtype=str keeps ids like '007' intact; numbers are parsed per column below.
        frame = pd.read_csv(path, dtype=str, keep_default_na=False, skipinitialspace=True,
                            encoding="utf-8-sig")  # utf-8-sig: Excel writes a BOM
    except FileNotFoundError:
        raise CsvImportError(f"{path}: no such file (targets.csv_import.files)") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CsvImportError(f"{path}: not a readable CSV ({err})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if id_column not in frame.columns:
        raise CsvImportError(f"{path}: no subject-id column {id_column!r}; columns are "
                             f"{list(frame.columns)[:10]}... - set targets.csv_import.id_column "
                             f"or the file's id_column")
    ids = frame[id_column].str.strip()
    dup = sorted(ids[ids.duplicated()].unique())
    if dup:
        raise CsvImportError(f"{path}: subject ids appear on more than one row: {dup[:10]}")
    dropped = []
    numeric = {}
    for col in frame.columns:
        if col == id_column:
            continue
        if col in drop_columns or not col or col.startswith("Unnamed:"):
            dropped.append(col)
            continue
        nums = pd.to_numeric(frame[col].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
        if not np.isfinite(nums).any():
            dropped.append(col)
            continue
        numeric[col] = nums
    if not numeric:  # a 0-column target would replace the computed one and crash training later
        why = "it has no data rows" if frame.empty else f"columns dropped: {dropped[:10]}"
        raise CsvImportError(f"{path}: no usable target column ({why}); a target CSV needs at least one "
                             f"numeric column beside {id_column!r}. Fix the file or remove it from "
                             f"targets.csv_import.files")
    names = [f"{path.stem}.{c}" for c in numeric]
    table = np.stack(list(numeric.values()), axis=1) if numeric else np.zeros((len(frame), 0))
    row_of = {sid: i for i, sid in enumerate(ids)}
    values = np.zeros((len(subject_ids), len(names)), dtype=np.float32)
    present = np.zeros_like(values, dtype=bool)
    without = []
    for k, sid in enumerate(subject_ids):
        i = row_of.get(str(sid).strip())
        if i is None:
            without.append(sid)
            continue
        row = table[i]
        # float32 overflow would turn a huge but finite cell into inf: treat it as not present.
        ok = np.isfinite(row) & (np.abs(row) <= np.finfo(np.float32).max)
        values[k, ok] = row[ok]
        present[k] = ok
    wanted = {str(s).strip() for s in subject_ids}
    unmatched = [sid for sid in ids if sid not in wanted]
    key = str(path)
    report = CsvReport(unmatched_rows={key: unmatched}, subjects_without_row={key: without},
                       dropped_columns={key: dropped})
    return CsvTargets(list(subject_ids), names, values, present, report)


def combine(parts: list[CsvTargets]) -> CsvTargets:
    """Concatenate the columns of several imports of the same subjects, in order."""
    if not parts:
        raise ValueError("nothing to combine")
    subjects = parts[0].subject_ids
    if any(p.subject_ids != subjects for p in parts):
        raise ValueError("all parts must cover the same subject ids in the same order")
    names = [n for p in parts for n in p.names]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise CsvImportError(f"column names repeated across files (two files with one stem?): {dup[:5]}")
    report = CsvReport(
        unmatched_rows={k: v for p in parts for k, v in p.report.unmatched_rows.items()},
        subjects_without_row={k: v for p in parts for k, v in p.report.subjects_without_row.items()},
        dropped_columns={k: v for p in parts for k, v in p.report.dropped_columns.items()})
    return CsvTargets(list(subjects), names, np.concatenate([p.values for p in parts], axis=1),
                      np.concatenate([p.present for p in parts], axis=1), report)


def import_targets(cfg, kind: str, subject_ids: list[str],
                   base_dir: Path | None = None) -> CsvTargets | None:
    """All files of one ``kind`` (morphometry | texture) listed in a ``CsvImportConfig``, combined in
    the order listed; None when no file has that kind. Relative paths resolve against ``base_dir``
    (e.g. the config file's folder) when given."""
    parts = []
    for f in cfg.files:
        if f.kind != kind:
            continue
        path = Path(f.path)
        if base_dir is not None and not path.is_absolute():
            path = Path(base_dir) / path
        parts.append(read_target_csv(path, f.id_column or cfg.id_column, subject_ids,
                                     tuple(cfg.drop_columns)))
    return combine(parts) if parts else None
