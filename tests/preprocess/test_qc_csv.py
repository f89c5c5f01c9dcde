"""``damt qc`` writes CSVs whose cells cannot run as spreadsheet formulas (issue 12, item 10)."""

from __future__ import annotations

import csv

from damt.cache import manifest_row, to_frame, write_manifest
from damt.config import load_config
from preprocess.qc import run_qc

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def test_qc_csvs_neutralise_formulas(tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    rows = [manifest_row("sub-1", "c", reason="not_an_image", message='=HYPERLINK("http://evil","click")'),
            manifest_row("sub-2", "c", reason="corrupt_file", message="-x/sub-2/mri/brainmask.mgz: truncated"),
            manifest_row("sub-3", "c", reason="missing_image", message="@cmd|' /C calc'!A0")]
    write_manifest(cache, to_frame(rows))
    result = run_qc(load_config(None), cache)
    for path in (result.subjects_csv, result.outliers_csv):
        with open(path, newline="") as f:
            cells = [c for row in csv.reader(f) for c in row]
        assert not [c for c in cells if c.startswith(TRIGGERS)], path
    assert "'=HYPERLINK" in result.subjects_csv.read_text()
