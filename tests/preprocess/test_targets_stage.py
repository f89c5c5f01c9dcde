"""Regression targets written by `damt preprocess`: store arrays, targets.json statistics,
parcellation fallback, CSV import, and refits that rewrite no subject store."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from original_recipe import dkt_from_desikan, recipe

from damt.cache import CacheTargets, open_subject, read_manifest
from damt.cli import main
from damt.config import load_config
from preprocess.run import run_preprocess


def _cfg(*inputs, extra=()):
    return load_config(None, [f"data.inputs={list(map(str, inputs))}", *extra])


def _stores(cache):
    return {str(p): p.stat().st_mtime_ns for p in (cache / "subjects").rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def cohort(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort") / "c"
    shutil.copytree(data_dir / "fs_bert" / "bert", root / "bert")
    for sid in ("sub-02", "sub-03", "sub-04"):
        shutil.copytree(data_dir / "fs_training_data" / sid, root / sid)
    return root


@pytest.fixture(scope="module")
def built(cohort, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    run_preprocess(_cfg(cohort), cache, workers=0, progress=False)
    return cache, read_manifest(cache).set_index("subject_id")


def _arrays(cache, man, sid):
    g = open_subject(cache / man.loc[sid, "store"])
    return {k: g[k][...] for k in ("morphometry", "morphometry_present", "radiomics", "radiomics_present")}


def test_store_holds_targets_checked_against_the_stats_files(built, data_dir):
    cache, man = built
    t = CacheTargets.load(cache)
    names = t.names["morphometry"]
    a = _arrays(cache, man, "bert")
    assert a["morphometry"].dtype == np.float32 and a["morphometry"].shape == (len(names),)
    assert a["radiomics"].shape == (72,) and a["radiomics_present"].all()
    assert np.isfinite(a["morphometry"]).all() and np.isfinite(a["radiomics"]).all()
    text = (data_dir / "fs_bert/bert/stats/aseg.stats").read_text()
    etiv = next(float(line.split(",")[3]) for line in text.splitlines() if "EstimatedTotalIntraCranialVol" in line)
    hit = [names.index("aseg.measure.eTIV")]
    assert hit and a["morphometry"][hit[0]] == pytest.approx(etiv, rel=1e-5)
    assert a["morphometry_present"].all()          # bert has aseg and both aparc files


def test_missing_aparc_stats_fall_back_to_the_parcellation(built):
    cache, man = built
    names = CacheTargets.load(cache).names["morphometry"]
    a = _arrays(cache, man, "sub-02")                # aseg.stats only, like every fs_training_data subject
    present = dict(zip(names, a["morphometry_present"]))
    thick = [n for n in names if n.endswith("ThickAvg")]
    grayvol = [n for n in names if n.endswith("GrayVol") and n.startswith(("lh.", "rh."))]
    assert thick and not any(present[n] for n in thick)      # needs a surface: not present
    assert grayvol and all(present[n] for n in grayvol)      # voxel counts of the parcellation
    assert (a["morphometry"][~a["morphometry_present"]] == 0).all()


def test_targets_json_statistics_are_sane(built):
    cache, man = built
    t = CacheTargets.load(cache)
    doc = json.loads((cache / "targets.json").read_text())
    assert doc["n_subjects"] == 4 and doc["radiomics"]["source"] == "pyradiomics-glcm"
    for kind in ("morphometry", "radiomics"):
        raw = np.stack([_arrays(cache, man, s)[kind] for s in man.index])
        pres = np.stack([_arrays(cache, man, s)[f"{kind}_present"] for s in man.index])
        z = t.normalise(kind, raw, pres)
        assert np.isfinite(z).all() and (z[~pres] == 0).all()
        assert 0.1 < np.abs(z[pres]).mean() < 3.0


def test_random_head_loss_is_of_order_one(built):
    """At step 0 an untrained regression head gives an L1 of order 1 on normalised targets (the
    original's untreated texture loss started at ~252)."""
    cache, man = built
    t = CacheTargets.load(cache)
    torch.manual_seed(0)
    for kind in ("morphometry", "radiomics"):
        raw = np.stack([_arrays(cache, man, s)[kind] for s in man.index])
        pres = np.stack([_arrays(cache, man, s)[f"{kind}_present"] for s in man.index])
        target = torch.from_numpy(t.normalise(kind, raw, pres))
        head = torch.nn.Linear(768, raw.shape[1])
        pred = head(torch.randn(len(raw), 768))
        loss = (pred - target).abs()[torch.from_numpy(pres)].mean().item()
        assert 0.1 < loss < 5.0, (kind, loss)


def test_new_cohort_refits_statistics_without_rewriting_stores(built, cohort, data_dir, tmp_path):
    cache = tmp_path / "cache"
    shutil.copytree(built[0], cache)
    before = _stores(cache)
    old = json.loads((cache / "targets.json").read_text())
    extra = tmp_path / "more"
    shutil.copytree(data_dir / "fs_training_data" / "sub-06", extra / "sub-06")
    s = run_preprocess(_cfg(cohort, extra), cache, workers=0, progress=False)
    new = json.loads((cache / "targets.json").read_text())
    assert s.processed == 1 and s.targets_written and new["n_subjects"] == 5
    assert new["radiomics"]["normalisation"] != old["radiomics"]["normalisation"]
    after = _stores(cache)
    assert {k: v for k, v in after.items() if k in before} == before
    # a normalisation setting change refits targets.json and rewrites no store
    s = run_preprocess(_cfg(cohort, extra, extra=["targets.normalise.method=standard"]), cache, workers=0,
                       progress=False)
    assert s.processed == 0 and s.targets_written and _stores(cache) == after


def test_csv_import_matches_by_id_and_reports(built, cohort, tmp_path):
    csv = tmp_path / "nfeats_global.csv"
    csv.write_text("subject_id,age,icv\nbert,61,1500.5\nsub-02,70,\nghost,1,2\nsub-03,55,1400\n")
    cfg = _cfg(cohort, extra=[f"targets.csv_import.files=[{{path: '{csv}', kind: morphometry}}]"])
    cache = tmp_path / "cache"
    run_preprocess(cfg, cache, workers=0, progress=False)
    man = read_manifest(cache).set_index("subject_id")
    doc = json.loads((cache / "targets.json").read_text())
    assert doc["morphometry"]["names"] == ["nfeats_global.age", "nfeats_global.icv"]
    assert doc["morphometry"]["source"] == "csv"
    report = doc["csv_report"]["morphometry"]
    assert list(report["unmatched_rows"].values()) == [["ghost"]]
    assert list(report["subjects_without_row"].values()) == [["sub-04"]]
    a = _arrays(cache, man, "sub-02")
    assert a["morphometry"].tolist() == [70.0, 0.0] and a["morphometry_present"].tolist() == [True, False]
    assert not _arrays(cache, man, "sub-04")["morphometry_present"].any()
    # changing one subject's row rebuilds that subject only
    before = _stores(cache)
    csv.write_text("subject_id,age,icv\nbert,61,1500.5\nsub-02,71,\nghost,1,2\nsub-03,55,1400\n")
    s = run_preprocess(cfg, cache, workers=0, progress=False)
    after = _stores(cache)
    changed = {k.split("/subjects/")[1].split("/")[0] for k in after if after[k] != before.get(k)}
    assert s.processed == 1 and changed == {"sub-02.zarr"}


def test_malformed_stats_file_is_a_typed_failure(cohort, tmp_path):
    root = tmp_path / "c"
    shutil.copytree(cohort / "sub-03", root / "sub-03")
    (root / "sub-03/stats/aseg.stats").write_text("# ColHeaders Index SegId\n1 2 3 4 5\n")
    run_preprocess(_cfg(root), tmp_path / "cache", workers=0, progress=False)
    row = read_manifest(tmp_path / "cache").iloc[0]
    assert row["status"] == "failed" and row["reason"] == "corrupt_stats" and "aseg.stats" in row["message"]


def test_targets_are_deterministic(built, cohort, tmp_path):
    cache, man = built
    run_preprocess(_cfg(cohort), tmp_path / "again", workers=0, progress=False)
    man2 = read_manifest(tmp_path / "again").set_index("subject_id")
    for sid in man.index:
        a, b = _arrays(cache, man, sid), _arrays(tmp_path / "again", man2, sid)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])
    assert (cache / "targets.json").read_text() == (tmp_path / "again" / "targets.json").read_text()


@pytest.fixture(scope="module")
def original_cohort(data_dir, tmp_path_factory):
    """Two cohort roots: bert (Desikan tables, plus DKT tables written from them) and sub-02
    (aseg.stats only)."""
    root = tmp_path_factory.mktemp("original")
    shutil.copytree(data_dir / "fs_bert" / "bert", root / "a" / "bert")
    stats = root / "a" / "bert" / "stats"
    for hemi in ("lh", "rh"):
        desikan = (stats / f"{hemi}.aparc.stats").read_text()
        (stats / f"{hemi}.aparc.DKTatlas.stats").write_text(dkt_from_desikan(desikan))
    shutil.copytree(data_dir / "fs_training_data" / "sub-02", root / "b" / "sub-02")
    return root


@pytest.mark.parametrize("schema, table, n, cohorts", [("original-desikan", "aparc", 620, ("a", "b")),
                                                       ("original-dkt", "aparc.DKTatlas", 566, ("a",))])
def test_original_schemas_through_the_cli(original_cohort, tmp_path, schema, table, n, cohorts):
    """`damt preprocess --set targets.morphometry.schema=...` writes the original's named columns:
    bert's equal its stats cells (x20 for the local curvature), sub-02's are not present (never 0-filled)."""
    cache = tmp_path / "cache"
    inputs = [a for c in cohorts for a in ("--input", str(original_cohort / c))]
    assert main(["preprocess", *inputs, "--cache", str(cache), "--workers", "0", "--quiet",
                 "--set", f"targets.morphometry.schema={schema}", "--set", "targets.radiomics.enabled=false"]) == 0
    man = read_manifest(cache).set_index("subject_id")
    doc = json.loads((cache / "targets.json").read_text())
    names = doc["morphometry"]["names"]
    assert len(names) == n and doc["morphometry"]["source"] == f"freesurfer:{schema}"
    stats = original_cohort / "a" / "bert" / "stats"
    expected_names, expected = recipe((stats / f"lh.{table}.stats").read_text(),
                                      (stats / f"rh.{table}.stats").read_text())
    assert names == expected_names
    bert = _arrays(cache, man, "bert")
    assert bert["morphometry_present"].all()
    np.testing.assert_array_equal(bert["morphometry"], expected.astype(np.float32))
    assert CacheTargets.load(cache).size("morphometry") == n   # the head size follows the schema
    if "b" in cohorts:
        sub02 = _arrays(cache, man, "sub-02")
        assert not sub02["morphometry_present"].any() and (sub02["morphometry"] == 0).all()
        assert doc["morphometry"]["present_fraction"] == [0.5] * n
        # the QC report's target table: the schema's present fraction over the ok subjects
        assert main(["qc", "--cache", str(cache), "--out", str(tmp_path / "qc")]) == 0
        page = (tmp_path / "qc" / "qc_report.html").read_text()
        table = re.search(r'<table id="targets">.*?</table>', page, re.S).group(0)
        row = re.search(r"<tr><td>morphometry</td>(.*?)</tr>", table).group(1)
        assert row == (f'<td>freesurfer:{schema}</td><td class="num">{n}</td><td class="num">2</td>'
                       '<td class="num">0.5</td><td class="num">1</td><td class="num">1</td>')
