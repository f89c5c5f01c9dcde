"""Strata for the QC report from a user's table: ``damt qc --csv FILE --by COLUMN`` (docs/qc.md).

The table (CSV, or TSV such as a BIDS ``participants.tsv``) has one row per subject: an id column
(``subject_id``, ``participant_id``, ``subject`` or ``id``, the first found), optionally a
``cohort`` column (then rows match on cohort and id), and any covariates (site, scanner, age...).
A categorical column stratifies by its values; a numeric column with more than ``MAX_LEVELS``
distinct values (an age) is cut into ``N_BINS`` groups of about equal size.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from damt.qc.render import fmt

ID_COLUMNS = ("subject_id", "participant_id", "subject", "id")
MAX_LEVELS = 12
N_BINS = 5
NO_ROW, NO_VALUE = "(not in table)", "(no value)"


class StrataError(ValueError):
    """The --csv table cannot stratify the report (unreadable, no id column, no such --by column,
    an id on two rows)."""


@dataclass
class Strata:
    """``labels``: one stratum per manifest row, in the manifest's order; ``levels``: the strata in
    display order (bins in numeric order); ``notes``: what did not match."""

    column: str
    labels: list[str]
    levels: list[str]
    notes: list[str] = field(default_factory=list)


def read_table(path: Path) -> pd.DataFrame:
    """The user's table with every cell a stripped string ('' when empty). Raises StrataError."""
    path = Path(path)
    sep = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    try:
        # dtype=str keeps ids like '007'; utf-8-sig: Excel writes a BOM
        frame = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise StrataError(f"--csv {path}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, IsADirectoryError) as err:
        raise StrataError(f"--csv {path}: not a readable CSV ({err})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame.apply(lambda col: col.str.strip())


def _bins(values: pd.Series) -> tuple[pd.Series, list[str]] | None:
    """Numeric values with many levels -> (label per row, ordered labels); None if not numeric."""
    filled = values[values != ""]
    nums = pd.to_numeric(filled, errors="coerce")
    if filled.empty or nums.isna().any() or nums.nunique() <= MAX_LEVELS:
        return None
    cut = pd.qcut(nums, N_BINS, duplicates="drop")
    labels = {iv: f"{fmt(max(iv.left, nums.min()))}–{fmt(iv.right)}" for iv in cut.cat.categories}
    out = pd.Series(NO_VALUE, index=values.index, dtype=object)
    out[filled.index] = [labels[iv] for iv in cut]
    return out, [labels[iv] for iv in cut.cat.categories]


def stratify(manifest: pd.DataFrame, path: Path, column: str) -> Strata:
    """The stratum of each manifest row (columns ``cohort``, ``subject_id``) by ``column`` of the
    table at ``path``. Raises StrataError."""
    frame = read_table(path)
    id_col = next((c for c in ID_COLUMNS if c in frame.columns), None)
    if id_col is None:
        raise StrataError(f"--csv {path}: no subject id column (one of {', '.join(ID_COLUMNS)}); "
                          f"columns are {list(frame.columns)[:12]}")
    if column not in frame.columns or column in (id_col, "cohort"):
        choices = [c for c in frame.columns if c not in (id_col, "cohort")]
        raise StrataError(f"--by {column!r}: not a covariate column of {path}; choose one of {choices[:20]}")
    keys = ["cohort", id_col] if "cohort" in frame.columns else [id_col]
    dup = frame[frame.duplicated(keys, keep=False)][keys].drop_duplicates()
    if len(dup):
        shown = ["/".join(r) for r in dup.astype(str).itertuples(index=False)][:10]
        hint = "" if "cohort" in frame.columns else " (add a cohort column if ids repeat across cohorts)"
        raise StrataError(f"--csv {path}: these subjects are on more than one row: {shown}{hint}")
    binned = _bins(frame[column])
    values, levels = binned if binned else (frame[column].where(frame[column] != "", NO_VALUE), None)
    lookup = dict(zip(map(tuple, frame[keys].to_numpy().tolist()), values))
    man_keys = (list(zip(manifest["cohort"].astype(str), manifest["subject_id"].astype(str)))
                if len(keys) == 2 else [(s,) for s in manifest["subject_id"].astype(str)])
    labels = [lookup.get(k, NO_ROW) for k in man_keys]
    if levels is None:
        levels = sorted({v for v in values if v != NO_VALUE})
    present = set(labels)  # strata of the cache's subjects only (a bin edge still comes from the whole table)
    levels = [x for x in (*levels, NO_VALUE, NO_ROW) if x in present]
    notes = []
    missing = sum(lab == NO_ROW for lab in labels)
    if missing:
        notes.append(f"--csv {path}: {missing} of {len(labels)} subjects have no row (stratum {NO_ROW!r})")
    unmatched = len(set(lookup) - set(man_keys))
    if unmatched:
        notes.append(f"--csv {path}: {unmatched} rows match no subject of the cache")
    if binned:
        notes.append(f"--by {column}: numeric, cut into {len(binned[1])} groups of about equal size")
    return Strata(column, labels, levels, notes)

