"""Linear probes on frozen embeddings: ridge and logistic regression, k-fold CV by subject.

Pure numpy/torch (scikit-learn is not a dependency). Features are standardised with the training
fold's statistics only. Metrics are computed once on the pooled out-of-fold predictions, so they
stay defined with folds of one or two subjects (small cohorts); per-fold details are kept too.

* Ridge: closed form through the SVD of the standardised features, unpenalised intercept. Unless
  ``alpha`` is given, it is chosen per training fold by the exact leave-one-out error of a linear
  smoother (``e_i / (1 - H_ii)``) over a grid scaled to the features' mean eigenvalue, so there is
  no inner CV loop and the test fold is never seen.
* Logistic: multinomial (softmax; two classes for binary), L2 on the weights, not the intercepts,
  objective ``sum of cross-entropies + alpha/2 * ||W||²`` (scikit-learn's ``C = 1/alpha``), fitted
  by L-BFGS in float64 to a tight tolerance. A class absent from a training fold gets probability 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from scipy.stats import rankdata

PROBE_FORMAT = "damt-probe-v1"
TASKS = ("regression", "classification")
#: ridge alphas, in units of the mean non-zero eigenvalue of the standardised Gram matrix
RIDGE_GRID = np.logspace(-4, 3, 15)
_SD_FLOOR = 1e-12


class ProbeError(ValueError):
    """The probe cannot run on these data (too few subjects, a class with one subject, ...)."""


@dataclass(frozen=True)
class Scaler:
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray) -> "Scaler":
        sd = x.std(axis=0)
        # a constant feature (common in a random-init encoder) is centred to 0, never divided by 0
        return cls(x.mean(axis=0), np.where(sd > _SD_FLOOR, sd, 1.0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mean) / self.scale


@dataclass(frozen=True)
class Ridge:
    scaler: Scaler
    coef: np.ndarray        # [p] on standardised features
    intercept: float
    alpha: float
    loo_mse: float          # leave-one-out MSE on the training data at ``alpha``

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.scaler(np.asarray(x, np.float64)) @ self.coef + self.intercept


def _centred_svd(z: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of the column-centred ``z`` without its null space (p > n, constant features)."""
    u, s, vt = np.linalg.svd(z - z.mean(axis=0), full_matrices=False)
    keep = s > s.max(initial=0.0) * 1e-10
    return u[:, keep], s[keep], vt[keep]


def ridge_loo_mse(z: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> np.ndarray:
    """Exact leave-one-out MSE of ridge with an unpenalised intercept on features ``z``, per alpha.

    For a linear smoother ``y_hat = H y`` the leave-one-out residual is ``(y_i - y_hat_i) /
    (1 - H_ii)``; with ``z`` centred, ``H = 11'/n + U diag(s^2 / (s^2 + alpha)) U'``.
    """
    z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
    u, s, _ = _centred_svd(z)
    ym = y.mean()
    uty = u.T @ (y - ym)
    out = []
    for a in alphas:
        d = s ** 2 / (s ** 2 + a)
        fitted = u @ (d * uty) + ym
        lev = (u ** 2) @ d + 1.0 / len(y)
        out.append(float(np.mean(((y - fitted) / (1.0 - lev)) ** 2)))
    return np.asarray(out)


def ridge_fit(x: np.ndarray, y: np.ndarray, alpha: float | None = None,
              grid: Sequence[float] = tuple(RIDGE_GRID)) -> Ridge:
    """Ridge regression with intercept on standardised ``x``; ``alpha=None`` picks it from
    ``grid`` (in units of the mean non-zero eigenvalue of z'z) by exact leave-one-out error."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(y) < 3:
        raise ProbeError(f"ridge needs at least 3 training subjects, got {len(y)}")
    scaler = Scaler.fit(x)
    z = scaler(x)
    u, s, vt = _centred_svd(z)
    if alpha is not None:
        alphas = [float(alpha)]
    else:
        unit = float((s ** 2).mean()) if len(s) else 1.0
        alphas = [float(a) * unit for a in grid]
    loo = ridge_loo_mse(z, y, alphas)
    best = int(np.argmin(loo))  # the first (smallest) alpha among equal errors
    a, ym = alphas[best], float(y.mean())
    coef = vt.T @ (s / (s ** 2 + a) * (u.T @ (y - ym)))
    # z is centred by the scaler up to rounding; the intercept absorbs what remains
    return Ridge(scaler, coef, ym - float(z.mean(axis=0) @ coef), a, float(loo[best]))


@dataclass(frozen=True)
class Logistic:
    scaler: Scaler
    weight: np.ndarray      # [p, k_train]
    bias: np.ndarray        # [k_train]
    classes: np.ndarray     # global class indices of the columns
    n_classes: int
    alpha: float

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        logits = self.scaler(np.asarray(x, np.float64)) @ self.weight + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        out = np.zeros((len(p), self.n_classes))
        out[:, self.classes] = p
        return out


def logistic_fit(x: np.ndarray, y: np.ndarray, n_classes: int, alpha: float = 1.0,
                 max_iter: int = 500) -> Logistic:
    """L2-regularised multinomial logistic regression; ``y`` holds class indices 0..n_classes-1."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.int64)
    classes = np.unique(y)
    if len(classes) < 2:
        raise ProbeError("a training fold holds a single class: cannot fit a classifier")
    scaler = Scaler.fit(x)
    z = torch.from_numpy(scaler(x))
    target = torch.from_numpy(np.searchsorted(classes, y))
    w = torch.zeros(z.shape[1], len(classes), dtype=torch.float64, requires_grad=True)
    b = torch.zeros(len(classes), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=max_iter, tolerance_grad=1e-10,
                            tolerance_change=1e-14, history_size=20, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(z @ w + b, target, reduction="sum")
        loss = loss + 0.5 * alpha * (w ** 2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return Logistic(scaler, w.detach().numpy().copy(), b.detach().numpy().copy(), classes,
                    n_classes, float(alpha))


def roc_auc(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with average ranks for ties); NaN if one class."""
    positive = np.asarray(positive, bool)
    n1, n0 = int(positive.sum()), int((~positive).sum())
    if n1 == 0 or n0 == 0:
        return math.nan
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    y, pred = np.asarray(y, np.float64), np.asarray(pred, np.float64)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss_tot if ss_tot > 0 else math.nan
    return {"r2": r2, "mae": float(np.abs(y - pred).mean())}


def classification_metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """accuracy, balanced accuracy (mean recall over the classes present) and AUC: ROC AUC of the
    last class for two classes, the macro one-vs-rest mean for more."""
    y = np.asarray(y, np.int64)
    pred = proba.argmax(axis=1)
    present = np.unique(y)
    recalls = [float((pred[y == c] == c).mean()) for c in present]
    if proba.shape[1] == 2:
        auc = roc_auc(y == 1, proba[:, 1])
    else:
        aucs = [roc_auc(y == c, proba[:, c]) for c in present]
        aucs = [a for a in aucs if not math.isnan(a)]
        auc = float(np.mean(aucs)) if aucs else math.nan
    return {"accuracy": float((pred == y).mean()), "balanced_accuracy": float(np.mean(recalls)),
            "auc": auc}


def subject_folds(groups: Sequence[Any], k: int, seed: int, strata: Sequence[Any] | None = None
                  ) -> np.ndarray:
    """Fold index per row; all rows of one subject (group) share a fold. With ``strata`` (one
    label per row, taken from each subject's first row), subjects are dealt to the folds class by
    class, so each fold holds every class in proportion. Fixed ``seed``: the same folds always."""
    groups = np.asarray([str(g) for g in groups])
    subjects, first = np.unique(groups, return_index=True)
    k = min(int(k), len(subjects))
    if k < 2:
        raise ProbeError(f"cross-validation needs at least 2 subjects, got {len(subjects)}")
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([int(seed), 0x9B0BE])))
    order: list[int] = []
    if strata is None:
        order = list(rng.permutation(len(subjects)))
    else:
        labels = np.asarray(strata, dtype=object)[first]
        for c in sorted(set(labels.tolist()), key=str):
            members = np.flatnonzero(labels == c)
            order += list(members[rng.permutation(len(members))])
    fold_of_subject = np.empty(len(subjects), np.int64)
    fold_of_subject[np.asarray(order, np.int64)] = np.arange(len(order)) % k
    return fold_of_subject[np.searchsorted(subjects, groups)]


def cross_validate(x: np.ndarray | None, y: np.ndarray, folds: np.ndarray, task: str,
                   n_classes: int = 0, alpha: float | None = None) -> dict[str, Any]:
    """Out-of-fold predictions and pooled metrics. ``x=None`` is the no-feature baseline: the
    training fold's mean (regression) or class frequencies (classification)."""
    if task not in TASKS:
        raise ProbeError(f"task must be one of {TASKS}, got {task!r}")
    n = len(y)
    oof = np.zeros(n) if task == "regression" else np.zeros((n, n_classes))
    per_fold = []
    for f in np.unique(folds):
        test, train = folds == f, folds != f
        info: dict[str, Any] = {"fold": int(f), "n_train": int(train.sum()), "n_test": int(test.sum())}
        if task == "regression":
            if x is None:
                oof[test] = y[train].mean()
            else:
                model = ridge_fit(x[train], y[train], alpha)
                oof[test] = model.predict(x[test])
                info["alpha"] = model.alpha
        elif x is None:
            oof[test] = np.bincount(y[train], minlength=n_classes) / train.sum()
        else:
            model = logistic_fit(x[train], y[train], n_classes, 1.0 if alpha is None else alpha)
            oof[test] = model.predict_proba(x[test])
            info["alpha"] = model.alpha
        per_fold.append(info)
    metrics = regression_metrics(y, oof) if task == "regression" else classification_metrics(y, oof)
    return {"metrics": metrics, "folds": per_fold, "predictions": oof}


def probe_compare(features: Mapping[str, np.ndarray], y: np.ndarray, groups: Sequence[Any],
                  task: str, folds: int = 5, seed: int = 0, alpha: float | None = None,
                  class_names: Sequence[str] = ()) -> dict[str, Any]:
    """Probe every feature set on the same folds, plus the no-feature baseline.

    ``y``: float targets (regression) or class indices into ``class_names`` (classification).
    Returns the report body: task, model, cv, the fold of each row, results per feature set
    (pooled metrics, per-fold details, out-of-fold predictions per row: a value for regression,
    class probabilities for classification) and the deltas of the first feature set against the
    second (pretrained against random init).
    """
    y = np.asarray(y, np.float64 if task == "regression" else np.int64)
    n_classes = len(class_names)
    if task == "classification":
        counts = np.bincount(y, minlength=n_classes)
        if (counts[counts > 0] < 2).any() or (counts > 0).sum() < 2:
            raise ProbeError(f"classification needs at least 2 classes with 2+ subjects each; "
                             f"counts {dict(zip(class_names, counts.tolist()))}")
    fold = subject_folds(groups, folds, seed, strata=y if task == "classification" else None)
    results = {name: cross_validate(np.asarray(x, np.float64), y, fold, task, n_classes, alpha)
               for name, x in features.items()}
    results["no_features"] = cross_validate(None, y, fold, task, n_classes)
    primary = "r2" if task == "regression" else "balanced_accuracy"
    names = list(features)
    delta = {}
    if len(names) >= 2:
        a, b = results[names[0]]["metrics"], results[names[1]]["metrics"]
        delta = {m: a[m] - b[m] for m in a}
    model = ({"kind": "ridge", "alpha": alpha if alpha is not None else "leave-one-out per fold",
              "intercept": "unpenalised", "features": "standardised per training fold"}
             if task == "regression" else
             {"kind": "logistic", "alpha": 1.0 if alpha is None else alpha,
              "objective": "sum cross-entropy + alpha/2 ||W||^2",
              "features": "standardised per training fold"})
    return {
        "format": PROBE_FORMAT, "task": task, "primary_metric": primary, "model": model,
        "cv": {"folds": int(fold.max()) + 1, "seed": int(seed), "by": "subject",
               "stratified": task == "classification", "n_subjects": int(len(set(map(str, groups)))),
               "subjects_per_fold": [len({str(g) for g, f in zip(groups, fold) if f == k})
                                     for k in range(int(fold.max()) + 1)]},
        "classes": list(class_names) if task == "classification" else None,
        "fold_of_row": fold.tolist(),
        "results": {k: {"metrics": v["metrics"], "folds": v["folds"],
                        "predictions": v["predictions"].tolist()} for k, v in results.items()},
        "delta": {"compared": names[:2], **delta} if delta else {},
    }


def format_table(report: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """A small plain-text table of the pooled metrics, one row per feature set."""
    labels = labels or {}
    rows = report["results"]
    metrics = list(next(iter(rows.values()))["metrics"])
    names = [labels.get(k, k) for k in rows]
    width = max(len(n) for n in names + ["encoder"]) + 2
    lines = ["encoder".ljust(width) + "".join(f"{m:>19}" for m in metrics)]
    for name, res in zip(names, rows.values()):
        lines.append(name.ljust(width) + "".join(f"{res['metrics'][m]:>19.4g}" for m in metrics))
    return "\n".join(lines)
