"""The manifest follows the cohort roots and the summary says what failed and where to look:
rows of renamed or removed subjects are dropped (so a followed "rename one" leaves no stale
duplicate row), failed subjects are named with their reason and fix, and discovery failures of a
first run are not counted as "skipped (unchanged)"."""

from __future__ import annotations

import json

from damt.cache import read_manifest
from damt.config import load_config
from damt.synth import make_subject
from preprocess.run import run_preprocess

SHAPE = (64, 64, 64)


def _run(cache, *inputs):
    cfg = load_config(None, [f"data.inputs={[str(i) for i in inputs]}"])
    return run_preprocess(cfg, cache, workers=0, progress=False)


def _rows(cache):
    man = read_manifest(cache)
    cols = man[["cohort", "subject_id", "status", "reason"]]
    return {(c, s): (st, r) for c, s, st, r in cols.itertuples(index=False)}


def _two_cohorts_sharing_x(tmp_path):
    a, b = tmp_path / "A", tmp_path / "B"
    make_subject(a, "X", seed=1, shape=SHAPE)
    make_subject(b, "X", seed=2, shape=SHAPE)
    cache = tmp_path / "cache"
    s = _run(cache, f"A={a}", f"B={b}")
    assert s.failed == 1 and s.by_reason == {"duplicate_subject_id": 1}
    return a, b, cache


def test_renaming_the_duplicate_drops_its_stale_row(tmp_path):
    a, b, cache = _two_cohorts_sharing_x(tmp_path)
    (b / "X").rename(b / "X2")                      # the error's own advice: rename one
    s = _run(cache, f"A={a}", f"B={b}")
    assert _rows(cache) == {("A", "X"): ("ok", ""), ("B", "X2"): ("ok", "")}
    assert s.failed == 0 and s.dropped == [("B", "X")]
    assert "dropped 1 manifest row(s) of subjects no longer in their cohort root (B/X)" in s.table()


def test_renaming_the_owner_frees_the_id(tmp_path):
    a, b, cache = _two_cohorts_sharing_x(tmp_path)
    (a / "X").rename(a / "X3")
    s = _run(cache, f"A={a}", f"B={b}")
    assert _rows(cache) == {("A", "X3"): ("ok", ""), ("B", "X"): ("ok", "")}
    assert s.failed == 0 and s.dropped == [("A", "X")]
    attrs = json.loads((cache / "subjects" / "X.zarr" / "zarr.json").read_text())["attributes"]
    assert attrs["cohort"] == "B"                   # the gone subject's store now holds B's X


def test_rows_of_cohorts_not_given_are_kept(tmp_path):
    a, b, cache = _two_cohorts_sharing_x(tmp_path)
    s = _run(cache, f"B={b}")
    assert s.dropped == [] and ("A", "X") in _rows(cache)
    assert "manifest: 2 rows of all cohorts (1 ok, 1 failed)" in s.table()


def test_summary_names_failed_subjects_and_where_the_rest_is(tmp_path):
    root = tmp_path / "c"
    for i in range(12):
        (root / f"m{i:02d}" / "mri").mkdir(parents=True)      # missing_image
    (root / "bad id" / "mri").mkdir(parents=True)             # bad_subject_id (a discovery failure)
    make_subject(root, "good", seed=3, shape=SHAPE)
    cache = tmp_path / "cache"
    s = _run(cache, root)
    table = s.table()
    assert s.failed == 13 and "failed subjects (the first 10 of 13):" in table
    listed = [line for line in table.splitlines() if line.startswith("  c/")]
    assert len(listed) == 10 and listed[0].startswith("  c/bad id  bad_subject_id: ")
    assert "missing_image: " in listed[1] and "is this a finished FreeSurfer subject?" in listed[1]
    assert f"all rows: {cache / 'manifest.parquet'}; report: damt qc --cache {cache}" in table
    assert s.processed == 14 and s.skipped == 0       # a first run skips nothing, discovery rows included
    again = _run(cache, root)
    assert again.processed == 0 and again.skipped == 14 and not again.manifest_written
