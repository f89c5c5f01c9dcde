"""``damt qc`` on a real cache: real FreeSurfer subjects, synthetic bad cases and injected outliers.

Three cohorts: ``real`` (bert, sub-01, sub-02 and sub-05, which has no parcellation), ``synth``
(8 ordinary synthetic subjects plus 3 with one injected anomaly each) and ``bad`` (bad input cases,
one of them ok). The tests score within each cohort: ``real`` has fewer ok subjects than
``qc.min_subjects`` and is not scored, so its real-vs-synthetic differences flag nothing.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import zarr
from PIL import Image

from damt.cli import main
from damt.config import load_config
from damt.synth import bad_subject_id, make_bad_case, make_subject
from preprocess.manifest import read_manifest
from preprocess.qc import REPORT_HTML, run_qc, verify_cache
from preprocess.run import cache_lock, run_preprocess

REAL = ("fs_bert/bert", "fs_training_data/sub-01", "fs_training_data/sub-02", "fs_training_data/sub-05")
BAD = ("truncated_nii", "not_an_image", "grid_mismatch", "nonfinite", "empty", "unknown_labels")
NORMAL = tuple(f"synth-{i:02d}" for i in range(8))
#: injected outlier -> the metric it must be flagged on
OUTLIERS = {"out-big": "brain_volume_ml", "out-bright": "intensity.p_high",
            "out-hippo": "morphometry.aseg.Left-Hippocampus.Volume_mm3"}
QC_SET = ["qc.z_scope=cohort"]


def _scale_image(subject, factor: float) -> None:
    """Multiply a subject's T1 intensities (a scanner with another gain)."""
    path = subject / "mri" / "brainmask.mgz"
    img = nib.load(path)
    nib.save(nib.MGHImage(np.asarray(img.dataobj, np.float32) * factor, img.affine), path)


def _inflate_stat(subject, structure: str, factor: int) -> None:
    """Multiply one structure's NVoxels and Volume_mm3 in aseg.stats (a corrupted stats table)."""
    path = subject / "stats" / "aseg.stats"
    lines = path.read_text().splitlines(keepends=True)
    for i, line in enumerate(lines):
        f = line.split()
        if not line.startswith("#") and len(f) > 4 and f[4] == structure:
            f[2], f[3] = str(int(f[2]) * factor), f"{float(f[3]) * factor:.1f}"
            lines[i] = " ".join(f) + "\n"
    path.write_text("".join(lines))


@pytest.fixture(scope="module")
def built(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("qc")
    for rel in REAL:  # a tmp copy: the shared data is read-only and stores record source paths
        src = data_dir / rel
        for sub in ("mri", "stats"):
            if (src / sub).is_dir():
                shutil.copytree(src / sub, root / "real" / src.name / sub)
    synth = root / "synth"
    for i, sid in enumerate(NORMAL):
        make_subject(synth, sid, seed=100 + i, shape=(96, 96, 96))
    make_subject(synth, "out-big", seed=200, shape=(144, 144, 144))   # 3.4x the brain volume
    _scale_image(make_subject(synth, "out-bright", seed=201, shape=(96, 96, 96)), 4.0)
    _inflate_stat(make_subject(synth, "out-hippo", seed=202, shape=(96, 96, 96)), "Left-Hippocampus", 20)
    for kind in BAD:
        make_bad_case(root / "bad", kind)
    inputs = [str(root / c) for c in ("real", "synth", "bad")]
    # raw chunks (codec none), so the tamper test can edit a chunk file byte-wise
    cfg = load_config(None, [f"data.inputs={json.dumps(inputs)}", "preprocess.codec=none", *QC_SET])
    run_preprocess(cfg, root / "cache", workers=0, progress=False)
    return cfg, root / "cache", root


@pytest.fixture(scope="module")
def report(built):
    cfg, cache, root = built
    result = run_qc(cfg, cache, out=root / "qc", verify=True)
    subjects = pd.read_csv(result.subjects_csv, dtype={"subject_id": str}).set_index("subject_id")
    outliers = pd.read_csv(result.outliers_csv)
    return result, subjects, outliers, result.html.read_text()


def test_cohort_summary_counts(built, report):
    result, subjects, _, page = report
    man = read_manifest(built[1])
    assert result.n_subjects == len(man) == len(subjects) == len(REAL) + len(NORMAL) + len(OUTLIERS) + len(BAD)
    assert result.n_failed == int((man["status"] != "ok").sum()) == len(REAL) - 3 + len(BAD) - 1
    for reason, n in man.loc[man["status"] != "ok", "reason"].value_counts().items():
        assert f"<td>{reason}</td><td class=\"num\">{n}</td>" in page


def test_every_failed_subject_appears_with_its_reason(built, report):
    _, subjects, _, page = report
    man = read_manifest(built[1])
    failed = man[man["status"] != "ok"]
    assert {"sub-05", *(bad_subject_id(k) for k in BAD if k != "unknown_labels")} == set(failed["subject_id"])
    for r in failed.itertuples():
        assert subjects.loc[r.subject_id, "status"] == "failed"
        assert subjects.loc[r.subject_id, "reason"] == r.reason and subjects.loc[r.subject_id, "message"] == r.message
        assert f"<td>{r.subject_id}</td><td>{r.reason}</td><td>{html.escape(r.message)}</td>" in page
    assert subjects.loc["sub-05", "reason"] == "missing_parcellation"


def test_every_injected_outlier_is_flagged(report):
    result, subjects, outliers, page = report
    for sid, metric in OUTLIERS.items():
        hit = outliers[(outliers["subject_id"] == sid) & (outliers["metric"] == metric)]
        assert len(hit) == 1 and abs(hit["z"].iloc[0]) > 6, (sid, metric, outliers[outliers["subject_id"] == sid])
        assert subjects.loc[sid, "flagged"] and metric in page
        assert sid in result.flagged
        # the injected anomaly stands far above anything an ordinary subject scores on that metric
        normal = outliers[outliers["subject_id"].isin(NORMAL) & (outliers["metric"] == metric)]
        assert normal.empty or normal["z"].abs().max() < abs(hit["z"].iloc[0]) / 4
    assert not outliers["cohort"].eq("real").any()  # 3 ok subjects < qc.min_subjects: not scored
    assert not outliers["subject_id"].isin(["out-bright", "out-hippo"]).sum() > 4  # one anomaly, few flags


def test_subject_table_holds_the_metrics(report):
    _, subjects, _, _ = report
    bert, sub01 = subjects.loc["bert"], subjects.loc["sub-01"]
    assert bert["shape"] == "x".join(str(n) for n in zarr_shape(report, "bert"))
    assert bert["brain_voxels"] > bert["labelled_voxels"] > 0
    assert bert["brain_volume_ml"] == pytest.approx(bert["brain_voxels"] * 1.25 ** 3 / 1000)
    assert 1000 < bert["brain_volume_ml"] < 2500 and bert["intensity.p_low"] < bert["intensity.p_high"]
    assert 5 < bert["volume_ml.Hippocampus"] < 12  # both sides, ml
    # bert has aparc stats; sub-01 only aseg.stats, so fewer morphometry columns are present
    assert bert["morphometry_present"] == bert["morphometry_columns"] > sub01["morphometry_present"] > 0
    unknown = subjects.loc[bad_subject_id("unknown_labels")]
    assert unknown["status"] == "ok" and "9999" in unknown["unknown_ids"] and unknown["unknown_label_voxels"] > 0
    assert subjects.loc["synth-00", "classes_absent"] >= 0 and pd.isna(subjects.loc["sub-05", "brain_voxels"])


def zarr_shape(report, sid):
    result = report[0]
    cache = result.html.parents[1] / "cache"
    return zarr.open_group(str(cache / "subjects" / f"{sid}.zarr"), mode="r")["image"].shape


def test_montage_shows_flagged_subjects_and_a_sample(report, built):
    result, _, _, page = report
    figures = re.findall(r'<figure class="(flag)?"><img src="data:image/png;base64,', page)
    flagged = sum(1 for f in figures if f)
    unflagged = result.n_ok - len(result.flagged)
    assert flagged == len(result.flagged) and len(figures) - flagged == min(built[0].qc.montage_sample, unflagged)


def test_clean_cache_verifies(built, report, capsys):
    cfg, cache, root = built
    assert report[0].problems == []
    assert "match the contract" in report[3]
    code = main(["qc", "--cache", str(cache), "--out", str(root / "qc-cli"), "--verify",
                 *(a for s in QC_SET for a in ("--set", s))])
    assert code == 0 and "every ok store matches" in capsys.readouterr().out


def test_verify_catches_stores_tampered_after_the_build(built, tmp_path, capsys):
    cfg, cache, _ = built
    copy = tmp_path / "cache"
    shutil.copytree(cache, copy)
    subjects = copy / "subjects"
    # the largest chunk file (a slab at the volume's edge may be all padding, and then is not written)
    chunk = max((p for p in (subjects / "synth-00.zarr" / "image" / "c").rglob("*") if p.is_file()),
                key=lambda p: p.stat().st_size)
    raw = bytearray(chunk.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 64] = b"\x00\x3c" * 32  # 32 voxels set to 1.0 on disk (uncompressed)
    chunk.write_bytes(bytes(raw))
    g = zarr.open_group(str(subjects / "synth-01.zarr"), mode="r+")
    g["atlas"][40, 40, 40] = 250                          # not a class
    g = zarr.open_group(str(subjects / "synth-02.zarr"), mode="r+")
    g["morphometry"][0] = g["morphometry"][0] + 1.0       # a target edited in place
    meta = subjects / "synth-03.zarr" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["status"] = "writing"
    meta.write_text(json.dumps(doc))
    meta = subjects / "synth-04.zarr" / "zarr.json"
    doc = json.loads(meta.read_text())
    doc["attributes"]["config_hash"] = "0000"
    meta.write_text(json.dumps(doc))
    shutil.copytree(subjects / "synth-05.zarr", subjects / "ghost.zarr")

    problems, checked = verify_cache(cfg, copy)
    by_id: dict[str, list[str]] = {}
    for p in problems:
        by_id.setdefault(p.subject_id, []).append(p.message)
    assert checked == 15
    assert any("image sha256" in m for m in by_id["synth-00"])
    assert any("atlas sha256" in m for m in by_id["synth-01"]) and any("class 250" in m for m in by_id["synth-01"])
    assert any("morphometry sha256" in m for m in by_id["synth-02"])
    assert any("completion marker" in m for m in by_id["synth-03"])
    assert any("config_hash" in m for m in by_id["synth-04"])
    assert any("not referenced" in m for m in by_id["ghost"])
    assert set(by_id) == {"synth-00", "synth-01", "synth-02", "synth-03", "synth-04", "ghost"}

    code = main(["qc", "--cache", str(copy), "--out", str(tmp_path / "qc"), "--verify", "--set", QC_SET[0]])
    out = capsys.readouterr().out
    assert code == 1 and out.count("MISMATCH") == len(problems) and "synth-01" in out
    # the report lists the store that no longer reads as complete instead of failing on it
    assert "synth-03" in (tmp_path / "qc" / REPORT_HTML).read_text()

    (copy / "targets.json").unlink()  # without the schema: report without target scores, verify says so
    result = run_qc(cfg, copy, out=tmp_path / "qc2", verify=True)
    assert any("target columns not scored" in n for n in result.notes)
    assert any(p.store == "targets.json" for p in result.problems)


def test_report_of_a_cache_without_ok_subjects(tmp_path):
    for kind in ("not_an_image", "empty"):
        make_bad_case(tmp_path / "bad", kind)
    cfg = load_config(None, [f"data.inputs=['{tmp_path / 'bad'}']"])
    run_preprocess(cfg, tmp_path / "cache", workers=0, progress=False)
    result = run_qc(cfg, tmp_path / "cache", verify=True)
    page = result.html.read_text()
    assert result.html.parent == tmp_path / "cache" / "qc" and result.n_ok == 0 and result.problems == []
    assert "<td>bad-empty</td><td>empty_foreground</td>" in page and "not_an_image" in page
    with cache_lock(tmp_path / "cache"):  # a preprocess run holding the cache: qc warns
        assert any("writing this cache" in n for n in run_qc(cfg, tmp_path / "cache").notes)


def test_qc_without_a_cache_says_what_to_do(tmp_path, capsys):
    assert main(["qc", "--cache", str(tmp_path / "nothing")]) == 2
    assert "run `damt preprocess`" in capsys.readouterr().err


@pytest.fixture(scope="module")
def chromium() -> str:
    """The browser, looked up before the cache is built (module scope, requested first), so a skip is quick."""
    for name in ("chromium", "chromium-browser"):
        if shutil.which(name):
            return shutil.which(name)
    msg = "chromium not installed (bash scripts/setup.sh installs Debian's chromium)"
    if os.environ.get("CI"):
        pytest.fail(msg + " -- required in CI")
    pytest.skip(msg)


def test_html_renders_in_headless_chromium(chromium, report, tmp_path):
    browser = chromium
    page = report[0].html
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    png = tmp_path / "shot.png"
    subprocess.run([*flags, f"--screenshot={png}", "--window-size=1280,2000", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    pixels = np.asarray(Image.open(png).convert("RGB"))
    assert pixels.shape[:2] == (2000, 1280)
    assert pixels.std() > 20 and len(np.unique(pixels.reshape(-1, 3), axis=0)) > 200, "blank screenshot"
    # the subject table is drawn by the page's script: after it ran, the rows are in the DOM
    dom = subprocess.run([*flags, "--dump-dom", page.as_uri()], check=True, capture_output=True, text=True,
                         timeout=120).stdout
    body = dom.split('<table id="subjects">', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr") == 1 + report[0].n_subjects and "out-hippo" in body
