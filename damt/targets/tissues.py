"""GM / WM / CSF tissue masks from the training classes, for the radiomics texture targets.

The class -> tissue map is a versioned data file (``tissues-damt-v1.tsv``; its header documents
which structures go where and why). It is keyed by class index and checked against the label
table's class names, so a changed label table cannot silently shift a structure to another tissue.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from damt.datafile import read_versioned
from damt.labels import LabelTable

BUILTIN_TISSUE_TABLES = {"damt-v1": Path(__file__).with_name("tissues-damt-v1.tsv")}
TISSUES = ("GM", "WM", "CSF")  # vector order of the texture targets


class TissueTableError(ValueError):
    """The tissue table is malformed or does not match the label table."""


@dataclass(frozen=True)
class TissueTable:
    """``class_tissue`` (int8, [n_classes]): tissue index into ``tissues`` per class, -1 = none."""

    version: str
    sha256: str
    tissues: tuple[str, ...]
    class_names: tuple[str, ...]
    class_tissue: np.ndarray

    def lookup(self) -> np.ndarray:
        """uint8 [256]: class index -> tissue label (1 + tissue index; 0 = none, also for classes
        beyond the table) for fast mapping of a uint8 atlas."""
        lut = np.zeros(256, dtype=np.uint8)
        lut[: len(self.class_tissue)] = np.where(self.class_tissue >= 0, self.class_tissue + 1, 0)
        return lut

    def classes_of(self, tissue: str) -> list[int]:
        """Class indices assigned to ``tissue``."""
        return [int(c) for c in np.flatnonzero(self.class_tissue == self.tissues.index(tissue))]


def parse_tissue_table(text: str, version: str, sha256: str = "") -> TissueTable:
    """Parse tissue TSV text (columns class, class_name, tissue; '#' comments).

    Classes must be exactly 0..n-1 in order; tissue is one of GM, WM, CSF, none.
    """
    rows = [ln.split("\t") for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not rows or rows[0] != ["class", "class_name", "tissue"]:
        raise TissueTableError(f"{version}: header must be class, class_name, tissue (tab-separated)")
    names, tissue_idx = [], []
    for n, row in enumerate(rows[1:], start=2):
        if len(row) != 3:
            raise TissueTableError(f"{version} row {n}: expected 3 tab-separated fields, got {row}")
        if row[0] != str(len(names)):
            raise TissueTableError(f"{version} row {n}: classes must be listed as 0, 1, 2, ... in "
                                   f"order; expected {len(names)}, got {row[0]!r}")
        if row[2] not in TISSUES + ("none",):
            raise TissueTableError(f"{version} row {n}: tissue must be one of "
                                   f"{', '.join(TISSUES)}, none; got {row[2]!r}")
        names.append(row[1])
        tissue_idx.append(TISSUES.index(row[2]) if row[2] in TISSUES else -1)
    if len(names) > 256:
        raise TissueTableError(f"{version}: more than 256 classes cannot come from a uint8 atlas")
    return TissueTable(version=version, sha256=sha256, tissues=TISSUES, class_names=tuple(names),
                       class_tissue=np.asarray(tissue_idx, dtype=np.int8))


def load_tissue_table(name_or_path: str = "damt-v1",
                      label_table: LabelTable | None = None) -> TissueTable:
    """Load a built-in tissue table by name or a TSV by path; with ``label_table``, check that the
    classes and their names match it. Raises TissueTableError."""
    table = parse_tissue_table(*read_versioned(name_or_path, BUILTIN_TISSUE_TABLES, TissueTableError,
                                               "tissue table"))
    if label_table is not None:
        check_against_labels(table, label_table)
    return table


def check_against_labels(table: TissueTable, label_table: LabelTable) -> None:
    """Raise TissueTableError unless ``table`` lists exactly the label table's classes by name."""
    if table.class_names != label_table.class_names:
        diff = [(c, a, b) for c, (a, b) in enumerate(zip(table.class_names, label_table.class_names))
                if a != b]
        raise TissueTableError(
            f"tissue table {table.version} does not match label table {label_table.version}: "
            f"{len(table.class_names)} vs {label_table.n_classes} classes"
            + (f"; first differing class {diff[0][0]}: {diff[0][1]!r} vs {diff[0][2]!r}" if diff else "")
            + ". Write a tissue table for this label table and set targets.radiomics.tissue_table")


def tissue_fs_ids(table: TissueTable, label_table: LabelTable) -> dict[str, list[int]]:
    """FreeSurfer ids per tissue (through the label table's classes), e.g. to build the same masks
    on a 1 mm FreeSurfer parcellation. Checks the tables match first."""
    check_against_labels(table, label_table)
    return {t: sorted(i for c in table.classes_of(t) for i in label_table.ids_of_class(c))
            for t in table.tissues}


def tissue_labels(atlas: np.ndarray, table: TissueTable) -> np.ndarray:
    """Tissue label map: uint8, same shape as ``atlas`` (uint8 class indices); 0 = none,
    1 + i = ``table.tissues[i]``."""
    if atlas.dtype != np.uint8:
        raise ValueError(f"atlas must be uint8 class indices, got dtype {atlas.dtype}")
    return table.lookup()[atlas]
