"""Parse FreeSurfer ``aseg.stats``, ``?h.aparc.stats`` and ``?h.aparc.DKTatlas.stats`` into named
float columns.

All are text: ``#`` header lines, among them ``# Measure <name>, <key>, <desc>, <value>,
<unit>`` (whole-brain or whole-hemisphere measures) and ``# ColHeaders <col> <col> ...`` naming the
whitespace-separated table rows that follow. Column names made here:

* ``aseg.measure.<key>``                e.g. ``aseg.measure.eTIV``
* ``aseg.<StructName>.<col>``           e.g. ``aseg.Left-Hippocampus.Volume_mm3``
* ``<hemi>.aparc.measure.<key>``        e.g. ``lh.aparc.measure.MeanThickness``
* ``<hemi>.aparc.<StructName>.<col>``   e.g. ``lh.aparc.superiorfrontal.ThickAvg``
* the same with the file's own stem for other parcellations, e.g.
  ``lh.aparc.DKTatlas.measure.MeanThickness``, ``lh.aparc.DKTatlas.superiorfrontal.ThickAvg``

A column name thus starts with its file's stem (the file name less ``.stats``);
:func:`stats_file_of` maps a name back to its file.

Table columns ``Index`` and ``SegId`` (row bookkeeping, not measurements) are skipped; the FreeSurfer
segment id of each aseg row is kept in :attr:`StatsFile.seg_ids` instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

#: the files of the damt-v1 schema (and the default of read_stats_dir)
STATS_FILES = ("aseg.stats", "lh.aparc.stats", "rh.aparc.stats")
#: every stats file a schema may read: aseg tables, Desikan (aparc) and DKT (aparc.DKTatlas, written
#: by recon-all since FreeSurfer 6) surface tables
KNOWN_STATS_FILES = (*STATS_FILES, "lh.aparc.DKTatlas.stats", "rh.aparc.DKTatlas.stats")
_SKIP_COLUMNS = {"Index", "SegId", "StructName"}


class FsStatsError(ValueError):
    """A FreeSurfer stats file is malformed; ``str(err)`` names the file, the line and a remedy."""


@dataclass(frozen=True)
class StatsFile:
    """One parsed stats file: ``values`` maps column name -> float; ``seg_ids`` maps an aseg
    StructName to its FreeSurfer id (empty for aparc files)."""

    source: str
    values: dict[str, float]
    seg_ids: dict[str, int] = field(default_factory=dict)


def _fail(source: str, line_no: int | None, reason: str) -> FsStatsError:
    where = f"{source}, line {line_no}" if line_no else source
    return FsStatsError(f"{where}: {reason}. The file is not a valid FreeSurfer stats file "
                        f"(truncated or edited?): regenerate it with recon-all, or remove it so "
                        f"the subject falls back to parcellation-derived volumes")


def _number(text: str, source: str, line_no: int, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise _fail(source, line_no, f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise _fail(source, line_no, f"{what} is {text!r}, not a finite number")
    return value


def _parse_measure(body: str, source: str, line_no: int) -> tuple[str, float]:
    """``<name>, <key>, <desc>, <value>, <unit>`` -> (key, value).

    FreeSurfer 6 writes one aparc line with a comma missing between key and description
    (``Cortex, CortexVol Total cortical gray matter volume, 491582.2, mm^3``); the key is then the
    first word of the second field, and the value is always the second-to-last field.
    """
    parts = [p.strip() for p in body.split(",")]
    if len(parts) < 4 or not parts[1]:
        raise _fail(source, line_no, f"a Measure line needs '<name>, <key>, <description>, "
                    f"<value>, <unit>', got {body.strip()!r}")
    key = parts[1] if len(parts) >= 5 else parts[1].split()[0]
    return key, _number(parts[-2], source, line_no, f"Measure {key} value")


def parse_stats_text(text: str, prefix: str, source: str) -> StatsFile:
    """Parse the text of one stats file; names start with ``prefix`` (``aseg``, ``lh.aparc``).

    Raises FsStatsError when a Measure line or a table row is malformed, the ColHeaders line is
    missing, a structure appears twice, or the row count differs from a declared ``# NRows``.
    """
    values: dict[str, float] = {}
    seg_ids: dict[str, int] = {}
    headers: list[str] | None = None
    declared_rows: int | None = None
    seen: set[str] = set()
    n_rows = 0
    if not text.strip():
        raise _fail(source, None, "the file is empty")
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            body = line[1:].strip()
            if body.startswith("Measure "):
                key, value = _parse_measure(body[len("Measure "):], source, line_no)
                values[f"{prefix}.measure.{key}"] = value
            elif body.startswith("ColHeaders"):
                headers = body.split()[1:]
                if "StructName" not in headers:
                    raise _fail(source, line_no, f"ColHeaders has no StructName column: {headers}")
            elif body.startswith("NRows"):
                fields = body.split()
                declared_rows = int(_number(fields[1], source, line_no, "NRows")) \
                    if len(fields) > 1 else None
            continue
        if headers is None:
            raise _fail(source, line_no, "a table row comes before the '# ColHeaders' line")
        cells = line.split()
        if len(cells) != len(headers):
            raise _fail(source, line_no, f"expected {len(headers)} columns ({' '.join(headers)}), "
                        f"got {len(cells)}")
        row = dict(zip(headers, cells))
        name = row["StructName"]
        if name in seen:
            raise _fail(source, line_no, f"structure {name!r} appears twice")
        seen.add(name)
        if "SegId" in row:
            seg_ids[name] = int(_number(row["SegId"], source, line_no, "SegId"))
        for col, cell in row.items():
            if col not in _SKIP_COLUMNS:
                values[f"{prefix}.{name}.{col}"] = _number(cell, source, line_no, f"{name} {col}")
        n_rows += 1
    if headers is None:
        raise _fail(source, None, "no '# ColHeaders' line (the structure table is missing)")
    if declared_rows is not None and declared_rows != n_rows:
        raise _fail(source, None, f"'# NRows {declared_rows}' but {n_rows} table rows")
    return StatsFile(source=source, values=values, seg_ids=seg_ids)


def parse_aseg_stats(path: Path) -> StatsFile:
    """Parse ``aseg.stats`` (names ``aseg.measure.*`` and ``aseg.<StructName>.<col>``)."""
    return parse_stats_text(_read(path), "aseg", str(path))


def parse_aparc_stats(path: Path, hemi: str, prefix: str | None = None) -> StatsFile:
    """Parse ``<hemi>.aparc.stats`` (names ``<hemi>.aparc.measure.*``, ``<hemi>.aparc.<region>.<col>``),
    or another surface table of the same format under ``prefix`` (``lh.aparc.DKTatlas``).

    A ``# hemi`` header that disagrees with ``hemi`` is an error (a renamed file).
    """
    if hemi not in ("lh", "rh"):
        raise ValueError(f"hemi must be 'lh' or 'rh', got {hemi!r}")
    text = _read(path)
    for line_no, line in enumerate(text.splitlines(), start=1):
        fields = line[1:].split() if line.startswith("#") else []
        if len(fields) == 2 and fields[0] == "hemi" and fields[1] != hemi:
            raise _fail(str(path), line_no, f"the file says '# hemi {fields[1]}' but is read as {hemi}")
    return parse_stats_text(text, prefix or f"{hemi}.aparc", str(path))


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise _fail(str(path), None, "not UTF-8/ASCII text") from None


def stats_file_of(name: str) -> str | None:
    """The file of :data:`KNOWN_STATS_FILES` a column name comes from (the longest file stem that
    the name starts with, so ``lh.aparc.DKTatlas.x.ThickAvg`` is DKT, not Desikan), or None."""
    stems = [f for f in KNOWN_STATS_FILES if name.startswith(f.removesuffix("stats"))]
    return max(stems, key=len) if stems else None


def read_stats_dir(stats_dir: Path | None, files: tuple[str, ...] = STATS_FILES
                   ) -> tuple[dict[str, float], dict[str, int], list[str]]:
    """Parse whichever of ``files`` (names from :data:`KNOWN_STATS_FILES`) exist in ``stats_dir``.

    Only the files asked for are opened, so a broken file that a schema does not use never fails
    a subject.

    Returns (values: name -> float, aseg seg_ids: StructName -> FreeSurfer id, files found).
    A missing file (or ``stats_dir`` None / absent) is not an error; a malformed one raises
    FsStatsError.
    """
    unknown = sorted(set(files) - set(KNOWN_STATS_FILES))
    if unknown:
        raise ValueError(f"unknown stats files {unknown}; known: {', '.join(KNOWN_STATS_FILES)}")
    values: dict[str, float] = {}
    seg_ids: dict[str, int] = {}
    found: list[str] = []
    if stats_dir is None or not Path(stats_dir).is_dir():
        return values, seg_ids, found
    for name in files:
        path = Path(stats_dir) / name
        if not path.is_file():
            continue
        parsed = parse_aseg_stats(path) if name == "aseg.stats" else \
            parse_aparc_stats(path, name[:2], name.removesuffix(".stats"))
        values.update(parsed.values)
        seg_ids.update(parsed.seg_ids)
        found.append(name)
    return values, seg_ids, found
