"""Importing precomputed cohort target CSVs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from damt.config.targets import CsvImportConfig
from damt.config.validate import build
from damt.targets.csv_import import CsvImportError, import_targets, read_target_csv


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_values_presence_and_report(tmp_path: Path):
    csv = _write(tmp_path / "nfeats_global.csv",
                 ",subject_id,vol_a,thick_b,site\n"
                 "0,sub-01,1.5,2.5,A\n"
                 "1, sub-02 ,,abc,B\n"
                 "2,sub-03,3.5,1e400,A\n"
                 "3,sub-99,9,9,C\n")
    got = read_target_csv(csv, "subject_id", ["sub-01", "sub-02", "sub-03", "sub-04"])
    assert got.names == ["nfeats_global.vol_a", "nfeats_global.thick_b"]
    assert got.values.dtype == np.float32 and got.present.dtype == bool
    assert got.values.shape == (4, 2)
    assert got.present.tolist() == [[True, True], [False, False], [True, False], [False, False]]
    assert got.values[0].tolist() == [1.5, 2.5] and got.values[2, 0] == 3.5
    assert (got.values[~got.present] == 0).all()
    key = str(csv)
    assert got.report.unmatched_rows == {key: ["sub-99"]}
    assert got.report.subjects_without_row == {key: ["sub-04"]}
    assert got.report.dropped_columns == {key: ["Unnamed: 0", "site"]}
    assert "1 rows match no subject, 1 subjects have no row" in got.report.summary()


def test_errors(tmp_path: Path):
    dup = _write(tmp_path / "d.csv", "id,x\na,1\na,2\n")
    with pytest.raises(CsvImportError, match="more than one row: \\['a'\\]"):
        read_target_csv(dup, "id", ["a"])
    with pytest.raises(CsvImportError, match="no subject-id column 'subject_id'.*id_column"):
        read_target_csv(dup, "subject_id", ["a"])
    with pytest.raises(CsvImportError, match="no such file"):
        read_target_csv(tmp_path / "missing.csv", "id", ["a"])
    with pytest.raises(CsvImportError, match="not a readable CSV"):
        read_target_csv(_write(tmp_path / "e.csv", ""), "id", ["a"])


@pytest.mark.parametrize("text", ["id,x,y\n", "id\na\nb\n", "id,site\na,A\n"])
def test_a_csv_without_a_usable_column_is_refused(tmp_path: Path, text: str):
    """Header only, only the id column, or only text: no target vector of 0 columns (issue 12)."""
    with pytest.raises(CsvImportError, match="no usable target column"):
        read_target_csv(_write(tmp_path / "t.csv", text), "id", ["a"])


def test_import_by_kind_combines_files_in_order(tmp_path: Path):
    _write(tmp_path / "nfeats_global.csv", "subject_id,g1,g2\n007,1,2\n008,3,4\n")
    _write(tmp_path / "nfeats_local.csv", "sid,age,l1\n008,70,5\n")
    _write(tmp_path / "radiomics_texture.csv", "subject_id,t1\n007,0.5\n")
    cfg = build(CsvImportConfig, {"files": [
        {"path": "nfeats_global.csv", "kind": "morphometry"},
        {"path": "radiomics_texture.csv", "kind": "texture"},
        {"path": "nfeats_local.csv", "kind": "morphometry", "id_column": "sid"}],
        "drop_columns": ["age"]})
    morph = import_targets(cfg, "morphometry", ["007", "008"], base_dir=tmp_path)
    assert morph.names == ["nfeats_global.g1", "nfeats_global.g2", "nfeats_local.l1"]
    assert morph.values.tolist() == [[1, 2, 0], [3, 4, 5]]       # ids with leading zeros kept
    assert morph.present.tolist() == [[True, True, False], [True, True, True]]
    assert morph.report.subjects_without_row[str(tmp_path / "nfeats_local.csv")] == ["007"]
    assert morph.report.dropped_columns[str(tmp_path / "nfeats_local.csv")] == ["age"]
    tex = import_targets(cfg, "texture", ["007", "008"], base_dir=tmp_path)
    assert tex.names == ["radiomics_texture.t1"] and tex.present.tolist() == [[True], [False]]
    assert import_targets(build(CsvImportConfig, {}), "texture", ["007"]) is None
