"""The cache manifest: one parquet row per subject seen, written by the driver alone, atomically."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterable

import pandas as pd

from damt.durable import atomic_write
from damt.errors import ManifestError

MANIFEST = "manifest.parquet"

#: column -> pandas dtype; the order is the file's column order
COLUMNS = {
    "subject_id": "string", "cohort": "string", "status": "string", "reason": "string",
    "message": "string", "input_hash": "string", "input_stat": "string", "config_hash": "string",
    "seconds": "float64", "shape": "string", "image_source": "string",
    "unknown_label_voxels": "int64", "store": "string", "software_version": "string",
    "finished_at": "string",
}


def read_manifest(cache: Path) -> pd.DataFrame:
    """The manifest as a DataFrame (empty, with all columns, if there is none yet)."""
    path = Path(cache) / MANIFEST
    if not path.is_file():
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})
    try:
        df = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ManifestError(
            f"{path} cannot be read ({type(err).__name__}: {err}); it is damaged (e.g. truncated). To "
            f"recover, move it aside (mv {path} {path}.damaged) and rerun damt preprocess with the same "
            f"inputs: the subject stores are complete on their own and the manifest is rebuilt") from None
    for c, t in COLUMNS.items():  # files from older versions lack newer columns
        if c not in df:
            df[c] = pd.Series(dtype=t)
    return df


def rows_by_key(df: pd.DataFrame) -> dict[tuple[str, str], dict[str, Any]]:
    """(cohort, subject_id) -> row dict."""
    return {(r["cohort"], r["subject_id"]): r for r in df.to_dict("records")}


def to_frame(rows: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Rows -> DataFrame with the manifest's columns and dtypes, sorted by (cohort, subject_id)."""
    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    df = df.astype({c: t for c, t in COLUMNS.items()})
    return df.sort_values(["cohort", "subject_id"], kind="stable").reset_index(drop=True)


def write_manifest(cache: Path, df: pd.DataFrame) -> Path:
    """Write ``df`` as the manifest atomically (temp file in the same folder, fsync, rename). A
    write that fails (a full disk) leaves the old manifest and no temporary file behind."""

    return atomic_write(Path(cache) / MANIFEST, lambda tmp: df.to_parquet(tmp, index=False))


def ok_subjects(cache: Path) -> pd.DataFrame:
    """The manifest's ``ok`` rows: the only subjects training reads."""
    df = read_manifest(cache)
    return df[df["status"] == "ok"].reset_index(drop=True)
