"""The versioned FreeSurfer-id -> training-class table (see docs/labels.md).

The table is a data file (``damt-v1.tsv``), never derived from the labels a subject happens to
have. Several FreeSurfer ids may share one class (e.g. structures left out map to background);
every id appears once, and the classes are exactly 0..n_classes-1.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from damt.datafile import read_versioned

BUILTIN_TABLES = {"damt-v1": Path(__file__).with_name("damt-v1.tsv")}
#: display colours per class, in a file of their own so the table's sha256 (in the preprocess
#: config hash) never changes with a colour; a table given by path looks for ``<stem>.colours.tsv``
COLOURS_SUFFIX = ".colours.tsv"
MAX_FS_ID = 16384  # FreeSurfer ids in aparc+aseg/aparc.a2009s+aseg stay well below this


class LabelTableError(ValueError):
    """The label table file is malformed (duplicate ids, gaps in the classes, bad rows)."""


@dataclass(frozen=True)
class LabelTable:
    """A checked label table.

    ``fs_ids`` (int64, [n_rows]) and ``classes`` (int64, [n_rows]) are parallel; ``class_names``
    has one name per class, index = class. ``version`` is the table name, ``sha256`` its content hash.
    """

    version: str
    sha256: str
    fs_ids: np.ndarray
    classes: np.ndarray
    class_names: tuple[str, ...]
    fs_names: tuple[str, ...]

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def lookup(self) -> np.ndarray:
        """Dense map (int16, [MAX_FS_ID]) from FreeSurfer id to class; -1 marks ids not in the table."""
        lut = np.full(MAX_FS_ID, -1, dtype=np.int16)
        lut[self.fs_ids] = self.classes
        return lut

    def ids_of_class(self, cls: int) -> list[int]:
        """FreeSurfer ids mapped to class ``cls``."""
        return [int(i) for i in self.fs_ids[self.classes == cls]]


def load_label_table(name_or_path: str) -> LabelTable:
    """Load and check a table by built-in name (``damt-v1``) or TSV path. Raises LabelTableError."""
    return parse_label_table(*read_versioned(name_or_path, BUILTIN_TABLES, LabelTableError, "label table"))


def class_colours(name_or_path: str, table: LabelTable) -> np.ndarray | None:
    """The display colour of each class of ``table`` (uint8, [n_classes, 3]), from the colour file
    beside the table (``damt-v1.colours.tsv``: columns class, class_name, fs_id, r, g, b; the
    FreeSurfer LUT colour of ``fs_id``). None when there is no colour file. Raises LabelTableError
    when the file does not cover every class once under the table's own class names."""
    path = BUILTIN_TABLES.get(name_or_path, Path(name_or_path))
    path = path.with_name(path.name.removesuffix(".tsv") + COLOURS_SUFFIX)
    if not path.is_file():
        return None
    rows = [ln.split("\t") for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    if not rows or rows[0] != ["class", "class_name", "fs_id", "r", "g", "b"]:
        raise LabelTableError(f"{path.name}: header must be class, class_name, fs_id, r, g, b")
    rgb = np.full((table.n_classes, 3), -1, dtype=np.int64)
    for n, row in enumerate(rows[1:], start=2):
        try:
            if len(row) != 6:
                raise ValueError
            cls, values = int(row[0]), [int(v) for v in row[3:6]]
        except ValueError:
            raise LabelTableError(f"{path.name} row {n}: expected class, class_name, fs_id, r, g, b") from None
        if not 0 <= cls < table.n_classes or table.class_names[cls] != row[1]:
            raise LabelTableError(f"{path.name} row {n}: {row[:2]} is not a class of label table {table.version}")
        if (rgb[cls] >= 0).any() or not all(0 <= v <= 255 for v in values):
            raise LabelTableError(f"{path.name} row {n}: class {cls} listed twice or a colour outside 0..255")
        rgb[cls] = values
    missing = [c for c in range(table.n_classes) if rgb[c, 0] < 0]
    if missing:
        raise LabelTableError(f"{path.name}: no colour for classes {missing}")
    return rgb.astype(np.uint8)


def parse_label_table(text: str, version: str, sha256: str = "") -> LabelTable:
    """Parse table TSV text (columns fs_id, class, class_name, fs_name; '#' comments) and check it."""
    rows = [ln.split("\t") for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not rows or rows[0][:4] != ["fs_id", "class", "class_name", "fs_name"]:
        raise LabelTableError(f"{version}: header must be fs_id, class, class_name, fs_name")
    ids, classes, fs_names, names = [], [], [], {}
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != 4:
            raise LabelTableError(f"{version} row {n}: expected 4 tab-separated columns, got {row}")
        try:
            fs_id, cls = int(row[0]), int(row[1])
        except ValueError:
            raise LabelTableError(f"{version} row {n}: fs_id and class must be integers") from None
        if not 0 <= fs_id < MAX_FS_ID:
            raise LabelTableError(f"{version} row {n}: fs_id {fs_id} outside 0..{MAX_FS_ID - 1}")
        if names.setdefault(cls, row[2]) != row[2]:
            raise LabelTableError(f"{version} row {n}: class {cls} named both {names[cls]!r} and {row[2]!r}")
        ids.append(fs_id)
        classes.append(cls)
        fs_names.append(row[3])
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise LabelTableError(f"{version}: duplicate FreeSurfer ids {dup}")
    if sorted(names) != list(range(len(names))):
        missing = sorted(set(range(max(names) + 1)) - set(names))
        raise LabelTableError(f"{version}: classes must be contiguous from 0; missing {missing}")
    if 0 not in ids or classes[ids.index(0)] != 0:
        raise LabelTableError(f"{version}: FreeSurfer id 0 must map to class 0 (background)")
    return LabelTable(version=version, sha256=sha256, fs_ids=np.asarray(ids, dtype=np.int64),
                      classes=np.asarray(classes, dtype=np.int64),
                      class_names=tuple(names[c] for c in range(len(names))), fs_names=tuple(fs_names))


def remap(parc: np.ndarray, lut: np.ndarray) -> tuple[np.ndarray, dict[int, int]]:
    """Map FreeSurfer ids to classes.

    parc: integer array of any shape (FreeSurfer ids); lut: from :meth:`LabelTable.lookup`.
    Returns (classes uint8 same shape, {unknown id: voxel count}). Unknown ids (not in the table,
    or outside 0..MAX_FS_ID-1) become class 0; the caller decides whether that is an error.
    """
    if parc.size and 0 <= parc.min() and parc.max() < MAX_FS_ID:
        cls = lut[parc]  # the usual case: one gather, no int64 copy of a 256³ volume
        ids = parc
    else:
        ids = parc.astype(np.int64, copy=False)
        inside = (ids >= 0) & (ids < MAX_FS_ID)
        cls = np.where(inside, lut[np.clip(ids, 0, MAX_FS_ID - 1)], -1)
    unknown: dict[int, int] = {}
    bad = cls < 0
    if bad.any():
        vals, counts = np.unique(ids[bad], return_counts=True)
        unknown = {int(v): int(c) for v, c in zip(vals, counts)}
        cls = np.where(bad, 0, cls)
    return cls.astype(np.uint8), unknown
