"""damt.probe against closed forms, brute force and hand computations: ridge (fixed alpha and its
leave-one-out selection), logistic regression (optimality conditions, a 1-D case solved by hand),
the metrics, the subject folds and the comparison report."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq

from damt.probe import (
    ProbeError,
    Scaler,
    classification_metrics,
    cross_validate,
    format_table,
    logistic_fit,
    probe_compare,
    regression_metrics,
    ridge_fit,
    ridge_loo_mse,
    roc_auc,
    subject_folds,
)


def _ridge_with_intercept(z: np.ndarray, y: np.ndarray, alpha: float) -> tuple[float, np.ndarray]:
    """The textbook solution: least squares on [1, z] with penalty diag(0, alpha, ..., alpha)."""
    a = np.column_stack([np.ones(len(y)), z])
    penalty = alpha * np.eye(a.shape[1])
    penalty[0, 0] = 0.0
    beta = np.linalg.solve(a.T @ a + penalty, a.T @ y)
    return beta[0], beta[1:]


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(30, 6)) * np.array([1, 10, 0.1, 5, 2, 1]) + 4
    y = x @ np.array([1.0, -0.2, 3.0, 0.5, 0.0, 0.0]) + rng.normal(0, 0.5, 30)
    return x, y


def test_ridge_fixed_alpha_is_the_closed_form(data):
    x, y = data
    model = ridge_fit(x, y, alpha=2.5)
    z = (x - x.mean(0)) / x.std(0)
    b, w = _ridge_with_intercept(z, y, 2.5)
    np.testing.assert_allclose(model.coef, w, rtol=1e-9, atol=1e-12)
    x_new = np.random.default_rng(4).normal(size=(5, 6))
    np.testing.assert_allclose(model.predict(x_new), b + ((x_new - x.mean(0)) / x.std(0)) @ w, rtol=1e-9)


def test_ridge_loo_formula_equals_brute_force_refits(data):
    x, y = data
    z = Scaler.fit(x)(x)
    alphas = [0.01, 1.0, 30.0]
    brute = []
    for a in alphas:
        errors = []
        for i in range(len(y)):
            rest = np.arange(len(y)) != i
            b, w = _ridge_with_intercept(z[rest], y[rest], a)
            errors.append(y[i] - (b + z[i] @ w))
        brute.append(np.mean(np.square(errors)))
    np.testing.assert_allclose(ridge_loo_mse(z, y, alphas), brute, rtol=1e-9)


def test_ridge_picks_the_grid_alpha_with_the_least_leave_one_out_error(data):
    x, y = data
    grid = [1e-3, 1e-1, 1.0, 10.0, 1e3]
    model = ridge_fit(x, y, grid=grid)
    z = Scaler.fit(x)(x)
    s = np.linalg.svd(z - z.mean(0), compute_uv=False)
    unit = float((s[s > s.max() * 1e-10] ** 2).mean())
    loo = ridge_loo_mse(z, y, [g * unit for g in grid])
    assert model.alpha == pytest.approx(grid[int(np.argmin(loo))] * unit)
    assert model.loo_mse == pytest.approx(loo.min())


def test_ridge_with_more_features_than_subjects_and_constant_features():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(6, 50))
    x[:, :10] = 7.0  # constant: must be ignored, never a division by zero
    y = rng.normal(size=6)
    model = ridge_fit(x, y)
    assert np.isfinite(model.coef).all() and np.abs(model.coef[:10]).max() < 1e-12
    assert np.isfinite(model.predict(rng.normal(size=(3, 50)))).all()
    b, w = _ridge_with_intercept(Scaler.fit(x)(x), y, model.alpha)
    np.testing.assert_allclose(model.coef, w, atol=1e-9)
    with pytest.raises(ProbeError, match="at least 3"):
        ridge_fit(x[:2], y[:2])


def test_logistic_meets_its_optimality_conditions():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 5))
    y = np.digitize(x[:, 0] + 0.5 * rng.normal(size=40), [-0.5, 0.5])  # 3 overlapping classes
    assert set(y) == {0, 1, 2}
    model = logistic_fit(x, y, n_classes=3, alpha=0.7)
    z = Scaler.fit(x)(x)
    p = model.predict_proba(x)
    onehot = np.eye(3)[y]
    # gradient of sum CE + alpha/2 ||W||^2: z'(P - Y) + alpha W = 0 and sum(P - Y) = 0
    np.testing.assert_allclose(z.T @ (p - onehot) + 0.7 * model.weight, 0, atol=1e-6)
    np.testing.assert_allclose((p - onehot).sum(0), 0, atol=1e-6)
    np.testing.assert_allclose(p.sum(1), 1)


def test_logistic_one_feature_two_points_solved_by_hand():
    # x = -1, +1 (standardised already), y = 0, 1. By symmetry the intercepts are equal and
    # w1 = -w0 = v/2 with v the logit difference: minimise 2 log(1 + exp(-v)) + alpha v^2 / 4,
    # i.e. solve -2 sigmoid(-v) + alpha v / 2 = 0.
    alpha = 0.5
    v = brentq(lambda v: -2 / (1 + math.exp(v)) + alpha * v / 2, 0, 50)
    model = logistic_fit(np.array([[-1.0], [1.0]]), np.array([0, 1]), n_classes=2, alpha=alpha)
    assert model.weight[0, 1] - model.weight[0, 0] == pytest.approx(v, rel=1e-6)
    p = model.predict_proba(np.array([[1.0]]))
    assert p[0, 1] == pytest.approx(1 / (1 + math.exp(-v)), rel=1e-6)


def test_logistic_gives_absent_classes_zero_probability():
    x = np.array([[0.0], [1.0], [2.0], [3.0]])
    model = logistic_fit(x, np.array([0, 0, 2, 2]), n_classes=3)
    p = model.predict_proba(x)
    assert np.all(p[:, 1] == 0) and np.allclose(p.sum(1), 1)
    with pytest.raises(ProbeError, match="single class"):
        logistic_fit(x, np.zeros(4, int), n_classes=2)


def test_logistic_is_deterministic_and_leaves_torch_rng_alone():
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(20, 4)), rng.integers(0, 2, 20)
    state = torch.get_rng_state()
    a, b = logistic_fit(x, y, 2), logistic_fit(x, y, 2)
    assert np.array_equal(a.weight, b.weight) and torch.equal(state, torch.get_rng_state())


def test_roc_auc_by_pair_counting():
    rng = np.random.default_rng(5)
    for _ in range(20):
        pos = rng.integers(0, 2, 15).astype(bool)
        score = rng.integers(0, 5, 15).astype(float)  # many ties
        if pos.all() or not pos.any():
            continue
        pairs = [(1.0 if s1 > s0 else 0.5 if s1 == s0 else 0.0)
                 for s1, s0 in itertools.product(score[pos], score[~pos])]
        assert roc_auc(pos, score) == pytest.approx(np.mean(pairs))
    assert roc_auc(np.array([0, 0, 1, 1], bool), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0
    assert roc_auc(np.array([1, 1, 0, 0], bool), np.array([0.1, 0.2, 0.3, 0.4])) == 0.0
    assert math.isnan(roc_auc(np.ones(3, bool), np.arange(3.0)))


def test_metrics_by_hand():
    m = regression_metrics(np.array([1.0, 2.0, 3.0, 4.0]), np.array([1.5, 2.0, 2.0, 5.0]))
    # SS_res = .25 + 0 + 1 + 1 = 2.25; SS_tot = 5
    assert m == {"r2": pytest.approx(1 - 2.25 / 5), "mae": pytest.approx(2.5 / 4)}
    y = np.array([0, 0, 0, 1, 1])
    proba = np.array([[.9, .1], [.6, .4], [.3, .7], [.2, .8], [.7, .3]])
    m = classification_metrics(y, proba)
    # predicted 0,0,1,1,0: accuracy 3/5; recalls 2/3 and 1/2; positive scores .8,.3 vs .1,.4,.7
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert m["auc"] == pytest.approx((3 + 1) / 6)


def test_subject_folds_keep_subjects_together_and_are_seeded():
    groups = ["a", "a", "b", "c", "c", "c", "d", "e", "f", "g"]
    f = subject_folds(groups, 3, seed=0)
    for g in set(groups):
        assert len({f[i] for i, h in enumerate(groups) if h == g}) == 1
    assert sorted(np.bincount([f[groups.index(g)] for g in sorted(set(groups))])) == [2, 2, 3]
    assert np.array_equal(f, subject_folds(groups, 3, seed=0))
    assert any(not np.array_equal(subject_folds(groups, 3, seed=s), f) for s in range(1, 5))
    assert subject_folds(["x", "y", "z"], 10, seed=0).max() == 2  # k capped at the subjects
    with pytest.raises(ProbeError, match="at least 2 subjects"):
        subject_folds(["x", "x"], 5, seed=0)


def test_stratified_folds_spread_every_class():
    labels = [0] * 6 + [1] * 4
    f = subject_folds([f"s{i}" for i in range(10)], 2, seed=1, strata=labels)
    for fold in (0, 1):
        got = [labels[i] for i in range(10) if f[i] == fold]
        assert got.count(0) == 3 and got.count(1) == 2


def test_cross_validate_baseline_predicts_the_training_mean():
    y = np.array([1.0, 2.0, 3.0, 10.0])
    folds = np.array([0, 0, 1, 1])
    res = cross_validate(None, y, folds, "regression")
    np.testing.assert_allclose(res["predictions"], [6.5, 6.5, 1.5, 1.5])


def test_probe_compare_ranks_informative_features_first():
    rng = np.random.default_rng(7)
    n = 60
    y = rng.normal(size=n)
    informative = np.column_stack([y + 0.1 * rng.normal(size=n), rng.normal(size=(n, 20))])
    noise = rng.normal(size=(n, 21))
    ids = [f"s{i // 2}" for i in range(n)]  # two rows per subject: they must share a fold
    rep = probe_compare({"pretrained": informative, "random_init": noise}, y, ids, "regression",
                        folds=5, seed=0)
    assert rep["cv"] == {"folds": 5, "seed": 0, "by": "subject", "stratified": False,
                         "n_subjects": 30, "subjects_per_fold": [6] * 5}
    assert all(rep["fold_of_row"][2 * i] == rep["fold_of_row"][2 * i + 1] for i in range(30))
    good, bad = rep["results"]["pretrained"]["metrics"], rep["results"]["random_init"]["metrics"]
    assert good["r2"] > 0.9 and bad["r2"] < 0.2
    assert rep["delta"]["r2"] == pytest.approx(good["r2"] - bad["r2"])
    assert rep["delta"]["compared"] == ["pretrained", "random_init"]
    np.testing.assert_allclose(good["r2"], regression_metrics(
        y, np.array(rep["results"]["pretrained"]["predictions"]))["r2"])
    table = format_table(rep).splitlines()
    assert len(table) == 4 and table[0].split() == ["encoder", "r2", "mae"]
    assert table[1].split()[0] == "pretrained"
    assert float(table[1].split()[1]) == pytest.approx(good["r2"], rel=1e-3)


def test_probe_compare_classification_needs_two_subjects_per_class():
    x = np.random.default_rng(0).normal(size=(5, 3))
    with pytest.raises(ProbeError, match="2\\+ subjects"):
        probe_compare({"a": x}, np.array([0, 0, 0, 0, 1]), list("abcde"), "classification",
                      class_names=["no", "yes"])
    rep = probe_compare({"a": x, "b": x[::-1]}, np.array([0, 0, 0, 1, 1]), list("abcde"),
                        "classification", folds=2, class_names=["no", "yes"])
    assert rep["primary_metric"] == "balanced_accuracy" and rep["classes"] == ["no", "yes"]
    assert set(rep["results"]["a"]["metrics"]) == {"accuracy", "balanced_accuracy", "auc"}
    # the no-feature baseline predicts each training fold's class frequencies
    base = np.array(rep["results"]["no_features"]["predictions"])
    y = np.array([0, 0, 0, 1, 1])
    for row, fold in enumerate(rep["fold_of_row"]):
        train = np.array(rep["fold_of_row"]) != fold
        np.testing.assert_allclose(base[row], np.bincount(y[train], minlength=2) / train.sum())
