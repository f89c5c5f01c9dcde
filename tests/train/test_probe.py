"""`damt embed` and `damt probe` end to end on the real subjects with a briefly trained tiny model.

The report is checked against independent computations: target values parsed from the subjects'
own aseg.stats, embeddings recomputed with MONAI's SwinTransformer on centre crops read by hand,
ridge predictions re-solved from the normal equations per fold, metrics recomputed from the
out-of-fold predictions, and the printed table."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest
import torch
import zarr
from monai.networks.nets import SwinUNETR

from damt.cache import ok_subjects
from damt.cli import main
from damt.model import MaskedSwinEncoder
from damt.probe import ProbeError
from train.embed import build_encoder, embed, read_embeddings
from train.loop import Trainer
from train.probe import resolve_task

pytestmark = pytest.mark.slow
TARGET = "aseg.Left-Hippocampus.Volume_mm3"


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run  # the session's briefly trained tiny run (tests/train/conftest.py)


def _stats(run, sid: str) -> str:
    return (run.root / sid / "stats" / "aseg.stats").read_text()


def _aseg_volume(text: str, structure: str) -> float:
    """Volume_mm3 (4th column) of a structure row of aseg.stats."""
    rows = [line.split() for line in text.splitlines() if line and not line.startswith("#")]
    return next(float(r[3]) for r in rows if r[4] == structure)


def _aseg_measure(text: str, short: str) -> float:
    """A '# Measure <long>, <short>, <description>, <value>, <unit>' line of aseg.stats."""
    for line in text.splitlines():
        parts = [p.strip() for p in line[len("# Measure "):].split(",")]
        if line.startswith("# Measure ") and parts[1] == short:
            return float(parts[3])
    raise KeyError(short)


def _hand_embeddings(run, encoder_of_x) -> np.ndarray:
    """Mean of x4 over space for the centred global crop of every ok subject, crops read by hand."""
    edge = run.cfg.views.global_crop_vox
    crops = []
    for store in ok_subjects(run.cache)["store"]:
        image = zarr.open_group(str(run.cache / store), mode="r")["image"]
        lo = [(s - edge) // 2 for s in image.shape]
        crops.append(np.asarray(image[lo[0]:lo[0] + edge, lo[1]:lo[1] + edge, lo[2]:lo[2] + edge]))
    x = torch.from_numpy(np.stack(crops).astype(np.float32))[:, None]
    with torch.no_grad():  # all subjects in one pass
        return encoder_of_x(x)[-1].mean(dim=(2, 3, 4)).numpy()


def _ridge_oof(x: np.ndarray, y: np.ndarray, folds: np.ndarray, alphas: dict[int, float]) -> np.ndarray:
    """Out-of-fold ridge predictions from the normal equations (unpenalised intercept, features
    standardised on the training fold, constant ones left at 0)."""
    pred = np.zeros(len(y))
    for f, alpha in alphas.items():
        tr, te = folds != f, folds == f
        mu, sd = x[tr].mean(0), x[tr].std(0)
        sd = np.where(sd > 1e-12, sd, 1.0)
        a = np.column_stack([np.ones(tr.sum()), (x[tr] - mu) / sd])
        pen = alpha * np.eye(a.shape[1])
        pen[0, 0] = 0
        beta = np.linalg.lstsq(a.T @ a + pen, a.T @ y[tr], rcond=None)[0]
        pred[te] = beta[0] + ((x[te] - mu) / sd) @ beta[1:]
    return pred


@pytest.fixture(scope="module")
def embedded(run, tmp_path_factory):
    out = tmp_path_factory.mktemp("embed") / "emb.parquet"
    assert main(["embed", str(run.run_dir), "--out", str(out)]) == 0  # cache from the run's config
    return read_embeddings(out)


def test_embed_writes_one_row_per_subject_deterministically(run, embedded, tmp_path):
    frame, meta = embedded
    ids = ok_subjects(run.cache)["subject_id"].tolist()
    assert frame["subject_id"].tolist() == ids and len(ids) == 9
    assert list(frame.columns[2:]) == [f"emb_{i:04d}" for i in range(192)]
    assert meta["step"] == 2 and meta["crop"] == {"edge_vox": 64, "position": "centre"}
    assert meta["embedding_dim"] == 192 and meta["preprocess_mismatch"] == []
    _, again = embed(run.run_dir, tmp_path / "again.parquet", cache=run.cache, batch=4)
    np.testing.assert_allclose(again.iloc[:, 2:].to_numpy(), frame.iloc[:, 2:].to_numpy(), atol=1e-5)


def test_embeddings_equal_monai_swin_on_hand_read_centre_crops(run, embedded):
    from train.checkpoint import latest_checkpoint, load_checkpoint  # noqa: PLC0415

    state = load_checkpoint(latest_checkpoint(run.run_dir / "checkpoints"))["model"]
    m = run.cfg.model
    net = SwinUNETR(in_channels=1, out_channels=2, feature_size=m.embed_dim, depths=m.depths,
                    num_heads=m.num_heads, window_size=m.window_size_vox).eval()
    net.swinViT.load_state_dict({k[len("encoder.swinViT."):]: v for k, v in state.items()
                                 if k.startswith("encoder.swinViT.")}, strict=True)
    want = _hand_embeddings(run, lambda x: net.swinViT(x, normalize=True))
    np.testing.assert_allclose(embedded[0].iloc[:, 2:].to_numpy(), want, rtol=1e-4, atol=1e-5)


def test_probe_morphometry_report_is_correct(run, embedded, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["probe", str(run.run_dir), "--target", TARGET, "--folds", "3", "--out", str(out),
                 "--allow-pretraining-target"]) == 0
    printed = capsys.readouterr().out
    rep = json.loads(out.read_text())
    ids = ok_subjects(run.cache)["subject_id"].tolist()
    assert rep["subjects"] == ids and rep["task"] == "regression"
    y = np.array([_aseg_volume(_stats(run, sid), "Left-Hippocampus") for sid in ids])
    np.testing.assert_allclose(rep["target_values"], y, rtol=1e-6)  # the cache stores float32
    y = np.asarray(rep["target_values"])
    assert rep["target"] | {"mean": 0, "std": 0} == {
        "source": "cache:morphometry", "column": TARGET, "pretraining_target": True, "n_subjects": 9,
        "subjects_without_value": 0, "rows_not_in_cache": 0, "mean": 0, "std": 0}
    folds = np.asarray(rep["fold_of_row"])
    assert rep["cv"]["folds"] == 3 and sorted(np.bincount(folds)) == [3, 3, 3]
    # pretrained embeddings from `damt embed`; random init: a fresh encoder from the run's seed
    torch.manual_seed(run.cfg.train.seed)
    random_encoder = MaskedSwinEncoder(run.cfg.model).eval()
    features = {"pretrained": embedded[0].iloc[:, 2:].to_numpy(np.float64),
                "random_init": _hand_embeddings(run, random_encoder).astype(np.float64)}
    for name, x in features.items():
        res = rep["results"][name]
        alphas = {f["fold"]: f["alpha"] for f in res["folds"]}
        np.testing.assert_allclose(res["predictions"], _ridge_oof(x, y, folds, alphas), rtol=1e-5)
    base = rep["results"]["no_features"]["predictions"]
    np.testing.assert_allclose(base, [y[folds != folds[i]].mean() for i in range(9)])
    for res in rep["results"].values():
        pred = np.asarray(res["predictions"])
        r2 = 1 - ((y - pred) ** 2).sum() / ((y - y.mean()) ** 2).sum()
        assert res["metrics"]["r2"] == pytest.approx(r2) and res["metrics"]["mae"] == pytest.approx(
            np.abs(y - pred).mean())
    assert rep["delta"]["r2"] == pytest.approx(rep["results"]["pretrained"]["metrics"]["r2"]
                                               - rep["results"]["random_init"]["metrics"]["r2"])
    rows = {line[:15].strip(): line[15:].split() for line in printed.splitlines()[2:5]}
    assert list(rows) == ["pretrained", "random init", "no features"]
    assert float(rows["pretrained"][0]) == pytest.approx(rep["results"]["pretrained"]["metrics"]["r2"],
                                                        rel=1e-3, abs=1e-4)


def test_probe_csv_classification(run, tmp_path):
    ids = ok_subjects(run.cache)["subject_id"].tolist()
    etiv = {sid: _aseg_measure(_stats(run, sid), "eTIV") for sid in ids}
    median = float(np.median(list(etiv.values())))
    rows = [{"subject_id": sid, "etiv_group": "large" if v > median else "small"} for sid, v in etiv.items()]
    rows[0]["etiv_group"] = None  # no value: left out, never filled
    rows.append({"subject_id": "sub-99", "etiv_group": "large"})  # not in the cache
    csv = tmp_path / "groups.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    out = tmp_path / "report.json"
    assert main(["probe", str(run.run_dir), "--csv", str(csv), "--target", "etiv_group",
                 "--folds", "2", "--out", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert rep["task"] == "classification" and rep["classes"] == ["large", "small"]
    t = rep["target"]
    assert (t["n_subjects"], t["subjects_without_value"], t["rows_not_in_cache"]) == (8, 1, 1)
    assert t["pretraining_target"] is False
    assert rep["subjects"] == ids[1:]
    labels = np.array([rep["classes"].index(v) for v in rep["target_values"]])
    assert rep["target_values"] == [r["etiv_group"] for r in rows[1:9]]
    folds = np.asarray(rep["fold_of_row"])
    for f in (0, 1):  # stratified: both classes in both folds
        assert set(labels[folds == f]) == {0, 1}
    for res in rep["results"].values():
        proba = np.asarray(res["predictions"])
        np.testing.assert_allclose(proba.sum(1), 1)
        pred = proba.argmax(1)
        recall = [np.mean(pred[labels == c] == c) for c in (0, 1)]
        pairs = [1.0 if a > b else 0.5 if a == b else 0.0 for a, b in
                 itertools.product(proba[labels == 1, 1], proba[labels == 0, 1])]
        assert res["metrics"] == pytest.approx({"accuracy": np.mean(pred == labels),
                                                "balanced_accuracy": np.mean(recall),
                                                "auc": np.mean(pairs)})


def test_random_init_is_the_runs_initialisation(run, tmp_path):
    """The baseline encoder is exactly where the trained run started (same seed, same init order)."""
    trainer = Trainer(run.cfg, run.cache, tmp_path / "fresh", progress=False)
    try:
        want = trainer.model.encoder.state_dict()
        got = build_encoder(run.cfg, seed=run.cfg.train.seed).state_dict()
        assert set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want)
    finally:
        trainer.logger.close()


def test_probe_refuses_a_pretraining_target(run, tmp_path, capsys):
    out = tmp_path / "r.json"
    assert main(["probe", str(run.run_dir), "--target", TARGET, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "pretrained to regress (tasks.morphometry" in err
    assert "--allow-pretraining-target" in err and not out.exists()
    # the same column brought in by a CSV named like the cache's column prefix is refused too
    csv = tmp_path / "aseg.csv"
    pd.DataFrame({"subject_id": ["sub-01"], "Left-Hippocampus.Volume_mm3": [4000.0]}).to_csv(csv, index=False)
    assert main(["probe", str(run.run_dir), "--csv", str(csv), "--target", "Left-Hippocampus.Volume_mm3",
                 "--out", str(out)]) == 2
    assert "pretrained to regress" in capsys.readouterr().err
    # a run that did not train the morphometry task may probe its columns
    from dataclasses import replace  # noqa: PLC0415

    from train.probe import pretraining_target  # noqa: PLC0415

    off = replace(run.cfg, tasks=replace(run.cfg.tasks, morphometry=replace(run.cfg.tasks.morphometry,
                                                                             enabled=False)))
    assert pretraining_target(off, run.cache, TARGET, None) is None
    assert pretraining_target(run.cfg, run.cache, TARGET, None) is not None


def test_probe_input_errors(run, tmp_path, capsys):
    out = str(tmp_path / "r.json")
    assert main(["probe", str(run.run_dir), "--target", "aseg.Left-Hippocampus.Volume", "--out", out]) == 2
    assert f"close matches: {TARGET}" in capsys.readouterr().err
    csv = tmp_path / "dup.csv"
    csv.write_text("subject_id,age\nsub-01,30\nsub-01,31\nsub-02,40\n")
    assert main(["probe", str(run.run_dir), "--csv", str(csv), "--target", "age", "--out", out]) == 2
    assert "more than once" in capsys.readouterr().err
    assert resolve_task(pd.Series([30.0, 41.5, 52.0]), "auto") == "regression"
    assert resolve_task(pd.Series([0, 1, 1]), "auto") == "classification"
    assert resolve_task(pd.Series(["AD", "CN", "MCI"]), "auto") == "classification"
    with pytest.raises(ProbeError, match="not numeric"):
        resolve_task(pd.Series(["AD", "CN"], name="dx"), "regression")
