"""The cache manifest: one parquet row per subject seen, written by the preprocess driver alone,
atomically; read by every other command through :class:`damt.cache.Cache`.

The row schema is written once, in :data:`COLUMNS` (name -> dtype and default);
:func:`manifest_row` builds a row from it and is the only way the preprocess stage makes one, and
:func:`to_frame` refuses a row with a key outside the schema instead of dropping it.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from damt import __version__
from damt.cache.names import MANIFEST_FILE
from damt.durable import atomic_write
from damt.errors import ManifestError

#: column -> (pandas dtype, default); the order is the file's column order. ``software_version``
#: and ``finished_at`` default to this version and the time the row is built (see manifest_row).
COLUMNS: dict[str, tuple[str, Any]] = {
    "subject_id": ("string", None), "cohort": ("string", None), "status": ("string", "failed"),
    "reason": ("string", ""), "message": ("string", ""), "input_hash": ("string", ""),
    "input_stat": ("string", ""), "config_hash": ("string", ""), "seconds": ("float64", 0.0),
    "shape": ("string", ""), "image_source": ("string", ""), "unknown_label_voxels": ("int64", 0),
    "store": ("string", ""), "software_version": ("string", None), "finished_at": ("string", None),
}
DTYPES = {c: t for c, (t, _) in COLUMNS.items()}
#: the values ``status`` takes; training reads ``ok`` rows only
STATUSES = ("ok", "failed")


class ManifestRowError(ValueError):
    """A manifest row with a key outside :data:`COLUMNS`, or without a subject id or cohort."""


def manifest_row(subject_id: str, cohort: str, **fields: Any) -> dict[str, Any]:
    """A complete manifest row: every column of :data:`COLUMNS`, ``fields`` over the defaults.

    ``software_version`` defaults to this damt's version, ``finished_at`` to now (UTC, seconds).
    ManifestRowError for a field that is not a column.
    """
    unknown = sorted(set(fields) - set(COLUMNS))
    if unknown:
        raise ManifestRowError(f"manifest row fields {unknown} are not manifest columns ({list(COLUMNS)})")
    row = {c: default for c, (_, default) in COLUMNS.items()}
    row |= {"subject_id": subject_id, "cohort": cohort, "software_version": __version__,
            "finished_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return row | fields


def empty_manifest() -> pd.DataFrame:
    """A manifest with no rows and every column."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in DTYPES.items()})


def read_manifest(cache: Path) -> pd.DataFrame:
    """The manifest as a DataFrame (empty, with all columns, if there is none yet).
    ManifestError (with how to recover) if the file is damaged."""
    path = Path(cache) / MANIFEST_FILE
    if not path.is_file():
        return empty_manifest()
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ManifestError(
            f"{path} cannot be read ({type(err).__name__}: {err}); it is damaged (e.g. truncated). To "
            f"recover, move it aside (mv {path} {path}.damaged) and rerun damt preprocess with the same "
            f"inputs: the subject stores are complete on their own and the manifest is rebuilt") from None
    for c, t in DTYPES.items():  # files from older versions lack newer columns
        if c not in df:
            df[c] = pd.Series(dtype=t)
    return df


def rows_by_key(df: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """(cohort, subject_id) -> row dict."""
    return {(r["cohort"], r["subject_id"]): r for r in df.to_dict("records")}


def to_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with the manifest's columns and dtypes, sorted by (cohort, subject_id).

    ManifestRowError for a row with a key that is not a column (it would otherwise be lost
    silently); a missing column gets its default, as :func:`manifest_row` would give it.
    """
    rows = list(rows)
    for row in rows:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise ManifestRowError(f"manifest row of {row.get('cohort')}/{row.get('subject_id')} has fields "
                                   f"{sorted(unknown)} that are not manifest columns; add them to "
                                   f"damt.cache.manifest.COLUMNS")
    full = [{c: row.get(c, default) for c, (_, default) in COLUMNS.items()} for row in rows]
    df = pd.DataFrame(full, columns=list(COLUMNS)).astype(DTYPES)
    return df.sort_values(["cohort", "subject_id"], kind="stable").reset_index(drop=True)


def write_manifest(cache: Path, df: pd.DataFrame) -> Path:
    """Write ``df`` as the manifest atomically (damt.durable: temp file in the same folder, fsync,
    rename, fsync the folder). A write that fails (a full disk) leaves the old manifest and no
    temporary file behind."""
    return atomic_write(Path(cache) / MANIFEST_FILE, lambda tmp: df.to_parquet(tmp, index=False))


def ok_subjects(cache: Path) -> pd.DataFrame:
    """The manifest's ``ok`` rows: the only subjects training reads."""
    df = read_manifest(cache)
    return df[df["status"] == "ok"].reset_index(drop=True)
