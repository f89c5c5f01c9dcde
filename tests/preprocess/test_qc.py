"""``damt qc`` on a real cache: real FreeSurfer subjects, synthetic bad cases and injected outliers.

Three cohorts: ``real`` (bert, sub-01, sub-02 and sub-05, which has no parcellation), ``synth``
(8 ordinary synthetic subjects plus 3 with one injected anomaly each) and ``bad`` (bad input cases,
one of them ok). The tests score within each cohort with ``qc.min_subjects`` lowered to 8: ``real``
has fewer ok subjects and is not scored, so its real-vs-synthetic differences flag nothing.
"""

from __future__ import annotations

import base64
import html
import io
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

from damt.cache import read_manifest
from damt.cli import main
from damt.config import DamtConfig, load_config
from damt.labels import class_colours, load_label_table
from damt.qc import mid_slices
from damt.synth import bad_subject_id, make_bad_case, make_subject
from preprocess.qc import REPORT_HTML, run_qc, verify_cache
from preprocess.run import cache_lock, run_preprocess

REAL = ("fs_bert/bert", "fs_training_data/sub-01", "fs_training_data/sub-02", "fs_training_data/sub-05")
BAD = ("truncated_nii", "not_an_image", "grid_mismatch", "nonfinite", "empty", "unknown_labels")
NORMAL = tuple(f"synth-{i:02d}" for i in range(8))
#: injected outlier -> the metric it must be flagged on
OUTLIERS = {"out-big": "brain_volume_ml", "out-bright": "intensity.p_high",
            "out-hippo": "morphometry.aseg.Left-Hippocampus.Volume_mm3"}
#: the synth cohort (11 ok) is scored below the default qc.min_subjects (20): the report warns
QC_SET = ["qc.z_scope=cohort", "qc.min_subjects=8"]


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
    assert DamtConfig().qc.min_subjects == 20  # the default the no-flags test relies on
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


def _figures(page: str) -> dict[str, tuple[bool, str]]:
    """subject id -> (flagged frame, figure markup) of each montage."""
    out = {}
    for flag, body in re.findall(r'<figure id="m-\d+" class="(flag)?">(.*?)</figure>', page, re.S):
        sid = re.search(r'<figcaption><b><a href="#s-\d+"[^>]*>[^/]*/ ([^<]*)</a>', body).group(1)
        out[html.unescape(sid)] = (bool(flag), body)
    return out


def _png_of(figure: str, kind: str, plane: int = 0) -> Image.Image:
    uris = re.findall(rf'<img class="{kind}" src="data:image/png;base64,([^"]+)"', figure)
    return Image.open(io.BytesIO(base64.b64decode(uris[plane])))


def test_montage_shows_flagged_subjects_and_a_sample(report, built):
    result, _, _, page = report
    figures = _figures(page)
    flagged = {sid for sid, (flag, _) in figures.items() if flag}
    unflagged = result.n_ok - len(result.flagged)
    assert flagged == set(result.flagged)
    assert len(figures) - len(flagged) == min(built[0].qc.montage_sample, unflagged)
    for flag, body in figures.values():
        assert body.count('class="plane"') == 3 and ("random sample (mid-planes)" in body) != flag


def test_flagged_montage_is_sliced_through_the_flagged_structure(report, built):
    """out-hippo is flagged on its Left-Hippocampus stats row: its planes go through that structure
    (the labels PNG holds the class, the outline marks it); a mid-plane montage of the same store
    does not reach the hippocampus in the axial plane."""
    cfg, cache, _ = built
    table = load_label_table(cfg.labels.table)
    hippo = table.class_names.index("Left-Hippocampus")
    _, body = _figures(report[3])["out-hippo"]
    assert "planes through Left-Hippocampus (morphometry.aseg.Left-Hippocampus.Volume_mm3" in body
    colours = class_colours(cfg.labels.table, table)
    for plane in range(3):
        labels = np.asarray(_png_of(body, "lab", plane))  # paletted: pixel value = class id
        assert (labels == hippo).any(), plane
        assert np.asarray(_png_of(body, "lab", plane).convert("RGB"))[labels == hippo][0].tolist() == \
            colours[hippo].tolist()  # the FreeSurfer LUT colour of the class
        assert (np.asarray(_png_of(body, "focus", plane)) > 0).any()
    g = zarr.open_group(str(cache / "subjects" / "out-hippo.zarr"), mode="r")
    assert not (mid_slices(g["atlas"], g.attrs["axcodes"])[0] == hippo).any()
    # a sample subject: mid-planes, no outline
    sample = next(b for sid, (f, b) in _figures(report[3]).items() if not f)
    assert 'class="focus"' not in sample


def test_few_subjects_give_a_warning_with_n_and_no_flags(built, tmp_path):
    """Default qc.min_subjects (20): the 11 synthetic subjects are not scored; the report says so with n."""
    cfg, cache, _ = built
    default = load_config(None, ["qc.z_scope=cohort"])
    result = run_qc(default, cache, out=tmp_path / "qc")
    page = result.html.read_text()
    assert result.flagged == [] and not pd.read_csv(result.outliers_csv).shape[0]
    assert any("cohort 'synth': n = 11, fewer than qc.min_subjects = 20" in w for w in result.warnings)
    assert any("cohort 'real': n = 3" in w for w in result.warnings)
    assert 'class="warnbox"' in page and "cohort &#x27;synth&#x27;: n = 11" in page


def test_warning_when_scored_below_twenty(report):
    result = report[0]
    assert any("cohort 'synth': n = 11: outliers are flagged (qc.min_subjects = 8) but" in w for w in result.warnings)


def test_stratify_by_a_column_of_a_user_table(built, tmp_path, capsys):
    """damt qc --csv FILE --by site: a per-site table and plots, the site in the subject CSV, and
    with qc.z_scope=by the outliers scored within each site."""
    cfg, cache, root = built
    man = read_manifest(cache)
    sites = dict(zip(man["subject_id"], np.where(man["cohort"] == "synth", "north", "south")))
    del sites["synth-07"]  # a subject the table does not list; north keeps 10 ok subjects, enough to score
    table = tmp_path / "sites.csv"
    table.write_text("subject_id,site,age\n" + "".join(f"{s},{v},{30 + i}\n" for i, (s, v) in enumerate(sites.items())))
    out = tmp_path / "qc"
    code = main(["qc", "--cache", str(cache), "--out", str(out), "--csv", str(table), "--by", "site",
                 "--set", "qc.z_scope=by", "--set", "qc.min_subjects=8"])
    err = capsys.readouterr().err
    assert code == 0 and f"1 of {len(man)} subjects have no row" in err
    assert "site 'north': n = 10: outliers are flagged" in err
    subjects = pd.read_csv(out / "qc_subjects.csv", dtype={"subject_id": str}).set_index("subject_id")
    assert subjects.loc["synth-07", "site"] == "(not in table)" and subjects.loc["synth-00", "site"] == "north"
    page = (out / REPORT_HTML).read_text()
    per_site = page.split("<h3>Per site (--csv sites.csv)</h3>", 1)[1].split("</table>", 1)[0]
    for site in ("north", "south", "(not in table)"):
        found = sum(subjects["site"] == site)
        assert re.search(rf"<td>{re.escape(html.escape(site))}</td><td class=\"num\">{found}</td>", per_site)
    assert "Distributions per site" in page and "within each site stratum" in page
    assert "south (n=" in page and "north (n=" in page  # plot rows are sites
    # the 3.4x brain is flagged within its site too
    outliers = pd.read_csv(out / "qc_outliers.csv")
    assert ((outliers["subject_id"] == "out-big") & (outliers["metric"] == "brain_volume_ml")).any()
    # a numeric column is cut into ordered groups
    assert main(["qc", "--cache", str(cache), "--out", str(tmp_path / "qc-age"), "--csv", str(table),
                 "--by", "age"]) == 0
    assert "cut into 5 groups" in capsys.readouterr().err
    # bad use: one line, exit 2
    assert main(["qc", "--cache", str(cache), "--out", str(out), "--csv", str(table), "--by", "scanner"]) == 2
    assert "not a covariate column" in capsys.readouterr().err
    assert main(["qc", "--cache", str(cache), "--out", str(out), "--set", "qc.z_scope=by"]) == 2
    assert "qc.z_scope" in capsys.readouterr().err
    assert main(["qc", "--cache", str(cache), "--out", str(out), "--by", "site"]) == 2
    assert "go together" in capsys.readouterr().err


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


#: run after the page's own script: measure the montage, the letters, the table and every in-page link,
#: open and close the enlarged view, and leave the numbers in the DOM for --dump-dom
MEASURE = """<script>(function(){
const box=e=>{const b=e.getBoundingClientRect();return [b.left+scrollX,b.top+scrollY,b.width,b.height];};
const out={figures:[...document.querySelectorAll('.montage figure')].map(f=>({id:f.id,planes:
 [...f.querySelectorAll('.plane')].map(p=>({name:p.dataset.plane,box:box(p),img:box(p.querySelector('img.img')),
 letters:[...p.querySelectorAll('.ol')].map(o=>[o.textContent,box(o)])}))}))};
out.links=[...document.querySelectorAll('a[href^="#"]')].map(a=>[a.getAttribute('href'),
 !!document.getElementById(a.getAttribute('href').slice(1))]);
const t=document.getElementById('subjects'),wrap=t.parentElement;
out.table={cols:t.tHead.rows[0].cells.length,rows:t.tBodies[0].rows.length,over:wrap.scrollWidth>wrap.clientWidth};
document.getElementById('allcols').click();
out.table.allCols=t.tHead.rows[0].cells.length;out.table.allOver=wrap.scrollWidth>wrap.clientWidth;
document.getElementById('keycols').click();
const lb=document.getElementById('lightbox');document.querySelector('.montage .planes').click();
out.lightbox={open:!lb.hidden,plane:box(lb.querySelector('.plane')),letters:lb.querySelectorAll('.ol').length};
lb.click();out.lightbox.closed=lb.hidden;
const a=document.querySelector('#flagged a[href^="#s-"]');a.click();window.dispatchEvent(new HashChangeEvent('hashchange'));
out.pin={href:a.getAttribute('href'),rows:[...t.tBodies[0].rows].map(r=>[r.id,r.className])};
const pre=document.createElement('pre');pre.id='measure';pre.textContent=JSON.stringify(out);document.body.appendChild(pre);
})();</script>"""


def test_html_renders_in_headless_chromium(chromium, report, tmp_path):
    """The report in a real browser: not blank; montage planes of >= 256 px with the L/R, A/P, S/I
    letters on their edges (DOM and screenshot); every in-page link has its target; a link to a
    subject row shows that row; the compact table fits the window; a click enlarges a montage.
    Two browser runs: the DOM after a measuring script, and one screenshot."""
    page = tmp_path / "measured.html"  # the measuring script follows a link: screenshots use the report itself
    page.write_text(report[3].replace("</body>", MEASURE + "</body>"))
    flags = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--window-size=1280,2000", f"--user-data-dir={tmp_path / 'profile'}"]

    def dom(url: str) -> str:
        return subprocess.run([*flags, "--dump-dom", url], check=True, capture_output=True, text=True,
                              timeout=120).stdout

    def shot(height: int) -> np.ndarray:
        png = tmp_path / f"shot{height}.png"
        subprocess.run([*flags, f"--window-size=1280,{height}", f"--screenshot={png}", report[0].html.as_uri()],
                       check=True, capture_output=True, timeout=120)
        return np.asarray(Image.open(png).convert("RGB"))

    text = dom(page.as_uri())
    m = json.loads(html.unescape(re.search(r'<pre id="measure">(.*?)</pre>', text, re.S).group(1)))
    # the subject table is drawn by the page's script: after it ran, every row was in the DOM (the
    # dump shows the state after the measuring script followed a link: that one row)
    assert m["table"]["rows"] == report[0].n_subjects
    body = text.split('<table id="subjects">', 1)[1].split("</table>", 1)[0]
    assert body.count("<tr") == 2 and "out-hippo" in body  # the largest |z|: first in the flagged table

    # montage: three planes of at least 256 px, each with its four edge letters on the right edges
    expected = {"axial": "LRAP", "coronal": "LRSI", "sagittal": "PASI"}
    assert len(m["figures"]) >= len(report[0].flagged) > 0
    for fig in m["figures"]:
        assert [p["name"] for p in fig["planes"]] == ["axial", "coronal", "sagittal"]
        for p in fig["planes"]:
            x, y, w, h = p["box"]
            assert w >= 256 and h >= 256 and p["img"][2:] == [w, h], p
            letters = {t: (lx + lw / 2 - x, ly + lh / 2 - y) for t, (lx, ly, lw, lh) in p["letters"]}
            assert "".join(letters) == expected[p["name"]]
            left, right, top, bottom = (letters[c] for c in expected[p["name"]])
            assert left[0] < w * 0.1 and right[0] > w * 0.9 and top[1] < h * 0.1 and bottom[1] > h * 0.9
            assert abs(left[1] - h / 2) < 5 and abs(top[0] - w / 2) < 5
    # click to enlarge: a bigger copy with its letters, closed by a click
    assert m["lightbox"]["open"] and m["lightbox"]["plane"][2] > 1.3 * 256 and m["lightbox"]["letters"] == 12
    assert m["lightbox"]["closed"]
    # every in-page link has a target: outlier rows -> table rows (#s-) and montages (#m-), and back
    hrefs = {h for h, _ in m["links"]}
    assert all(ok for _, ok in m["links"]), [h for h, ok in m["links"] if not ok]
    rows = {int(h[3:]) for h in hrefs if h.startswith("#s-")}
    assert any(h.startswith("#m-") for h in hrefs) and len(rows) >= len(report[0].flagged)
    # the compact table fits 1280 px; all columns are one click away (and would not fit)
    assert not m["table"]["over"] and m["table"]["allOver"] and m["table"]["allCols"] > m["table"]["cols"] >= 8

    # following an outlier's subject link shows that row, whatever the filters, and marks it
    assert m["pin"]["rows"] == [[m["pin"]["href"][1:], "ok flag target"]]

    # the screenshot: not blank, and the first plane where the DOM says, at that size, letters drawn on it
    x, y, w, h = (round(v) for v in m["figures"][0]["planes"][0]["box"])
    pixels = shot(y + h + 40)
    top = pixels[:2000]
    assert top.std() > 20 and len(np.unique(top.reshape(-1, 3), axis=0)) > 200, "blank screenshot"
    plane = pixels[y:y + h, x:x + w].astype(int)
    assert (plane[2:6, 2:6] < 10).all() and (pixels[y + 2, x - 4] > 200).all()  # black box, white frame
    assert (plane[:, :, 0] - plane[:, :, 2] > 80).sum() > 20            # yellow letters
    assert (np.abs(plane[:, :, 0] - plane[:, :, 1]) > 40).sum() > 500    # coloured overlay
    grey = (np.abs(plane - plane.mean(axis=2, keepdims=True)).max(axis=2) < 6) & (plane.mean(axis=2) > 60)
    assert grey.sum() > 2000                                             # the T1 itself
