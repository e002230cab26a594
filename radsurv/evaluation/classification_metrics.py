"""Binary classification metrics: discrimination, thresholds, calibration, bootstrap CIs.

Discrimination and probability scores come from scikit-learn (``roc_auc_score``,
``average_precision_score``, ``brier_score_loss``, ``roc_curve``, ``calibration_curve``); this
module adds what scikit-learn lacks: the Youden threshold, sensitivity/specificity at a given
threshold, the logistic calibration slope and intercept, the expected calibration error, and a
case-level bootstrap over repeated out-of-fold predictions.

Example
-------
>>> t = youden_threshold(y_train, p_train)          # chosen on training data only
>>> metrics = binary_metrics(y_test, p_test, predicted=p_test >= t)
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    roc_auc_score,
    roc_curve,
)

logger = logging.getLogger(__name__)

#: Metrics computed by :func:`binary_metrics`, in report order.
METRIC_NAMES: tuple[str, ...] = (
    "roc_auc",
    "pr_auc",
    "balanced_accuracy",
    "sensitivity",
    "specificity",
    "brier",
    "calibration_slope",
    "calibration_intercept",
    "ece",
)

_EPS = 1e-6


def youden_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold maximising Youden's J = sensitivity + specificity - 1.

    Predict positive when ``p >= threshold``. Ties in J are broken towards the threshold
    closest to the middle of the tied range (less sensitive to a single case).

    Parameters
    ----------
    y
        0/1 labels (both classes present).
    p
        Predicted probabilities of class 1.
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    if np.unique(y).size < 2:
        return 0.5
    fpr, tpr, thr = roc_curve(y, p)
    thr = np.minimum(thr, 1.0)  # sklearn's first threshold is +inf (nobody positive)
    j = tpr - fpr
    best = np.flatnonzero(np.isclose(j, j.max()))
    return float(thr[best[len(best) // 2]])


def confusion_counts(y: np.ndarray, predicted: np.ndarray) -> dict[str, int]:
    """True/false positives/negatives of 0/1 predictions."""
    y = np.asarray(y).astype(bool)
    predicted = np.asarray(predicted).astype(bool)
    return {
        "tp": int(np.sum(y & predicted)),
        "fp": int(np.sum(~y & predicted)),
        "tn": int(np.sum(~y & ~predicted)),
        "fn": int(np.sum(y & ~predicted)),
    }


def calibration_slope_intercept(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Logistic recalibration: slope of ``logit(p)`` and calibration-in-the-large.

    The slope is the coefficient of ``logit(p)`` in ``logit P(y=1) = a + b logit(p)`` (1 is
    ideal; < 1 means over-confident predictions). The intercept is ``a`` in
    ``logit P(y=1) = a + logit(p)`` with the slope fixed at 1 (0 is ideal; > 0 means risks are
    under-estimated). Both are maximum-likelihood fits by Newton's method.

    Returns
    -------
    (slope, intercept)
        NaN when undefined (one class, constant predictions, no convergence).
    """
    y = np.asarray(y, dtype=float)
    p = np.clip(np.asarray(p, dtype=float), _EPS, 1 - _EPS)
    lp = np.log(p / (1 - p))
    if np.unique(y).size < 2:
        return math.nan, math.nan
    slope = math.nan
    if np.ptp(lp) > 1e-9:
        beta = _newton_logistic(np.column_stack([np.ones_like(lp), lp]), y, np.zeros_like(lp))
        slope = float(beta[1]) if beta is not None else math.nan
    beta0 = _newton_logistic(np.ones((len(y), 1)), y, lp)
    intercept = float(beta0[0]) if beta0 is not None else math.nan
    return slope, intercept


def _newton_logistic(
    X: np.ndarray, y: np.ndarray, offset: np.ndarray, iters: int = 50
) -> np.ndarray | None:
    """Unpenalised logistic regression with an offset; None when it does not converge."""
    beta = np.zeros(X.shape[1])
    for _ in range(iters):
        eta = np.clip(offset + X @ beta, -30, 30)
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1 - mu)
        hess = X.T @ (X * w[:, None])
        grad = X.T @ (y - mu)
        try:
            step = np.linalg.solve(hess + 1e-10 * np.eye(X.shape[1]), grad)
        except np.linalg.LinAlgError:
            return None
        beta = beta + step
        if np.max(np.abs(step)) < 1e-8:
            return beta if np.all(np.abs(beta) < 1e3) else None
    return None  # separation: the estimate diverges


def expected_calibration_error(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: bin-size-weighted |observed rate - mean prediction|.

    Equal-width bins over [0, 1] (the same bins as the report's calibration curve).
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    bins = np.clip((p * n_bins).astype(int), 0, n_bins - 1)
    total = 0.0
    for b in np.unique(bins):
        sel = bins == b
        total += sel.sum() * abs(y[sel].mean() - p[sel].mean())
    return float(total / len(y))


def constant_within(p: np.ndarray, groups: np.ndarray | None) -> bool:
    """Whether predictions are constant within each group (e.g. each test fold).

    Such a model (the ``prevalence`` baseline) cannot rank cases: pooled over folds its
    per-fold constants would still give an AUC away from 0.5, an artefact of which fold a case
    fell in (folds with more positives in training have fewer in test).
    """
    if groups is None:
        return bool(np.ptp(p) == 0) if len(p) else False
    frame = pd.DataFrame({"p": p, "g": np.asarray(groups)})
    return bool((frame.groupby("g")["p"].agg(np.ptp) == 0).all())


def binary_metrics(
    y: np.ndarray,
    p: np.ndarray,
    predicted: np.ndarray | None = None,
    groups: np.ndarray | None = None,
) -> dict[str, float]:
    """All metrics of :data:`METRIC_NAMES` for one set of predictions.

    Parameters
    ----------
    y
        0/1 labels.
    p
        Predicted probabilities of class 1.
    predicted
        0/1 class predictions (e.g. ``p >= threshold`` with a threshold chosen in the training
        folds); threshold metrics are NaN when omitted.
    groups
        The test fold of each prediction when ``p`` pools several folds. Predictions constant
        within every fold carry no ranking: ROC AUC is then exactly 0.5, PR AUC the
        prevalence, and the calibration slope undefined (NaN).

    Returns
    -------
    dict
        Metric name -> value (NaN where undefined, e.g. AUC with one class).
    """
    y = np.asarray(y).astype(int)
    p = np.asarray(p, dtype=float)
    out = dict.fromkeys(METRIC_NAMES, math.nan)
    two_classes = np.unique(y).size == 2
    no_ranking = constant_within(p, groups)
    if two_classes:
        out["roc_auc"] = 0.5 if no_ranking else float(roc_auc_score(y, p))
        out["pr_auc"] = float(y.mean()) if no_ranking else float(average_precision_score(y, p))
    out["brier"] = float(brier_score_loss(y, p, labels=[0, 1]))
    out["ece"] = expected_calibration_error(y, p)
    out["calibration_slope"], out["calibration_intercept"] = calibration_slope_intercept(y, p)
    if no_ranking:
        out["calibration_slope"] = math.nan  # no spread of predictions to recalibrate
    if predicted is not None:
        c = confusion_counts(y, predicted)
        sens = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else math.nan
        spec = c["tn"] / (c["tn"] + c["fp"]) if c["tn"] + c["fp"] else math.nan
        out["sensitivity"], out["specificity"] = sens, spec
        out["balanced_accuracy"] = (sens + spec) / 2
    return out


def _auc_rows(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of (n_boot, n) labels/probabilities (Mann-Whitney, ties averaged)."""
    from scipy.stats import rankdata

    ranks = rankdata(p, axis=1)
    n1 = y.sum(axis=1)
    n0 = y.shape[1] - n1
    return ((ranks * y).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * n0)


#: Metrics the bootstrap computes for every resample (vectorised); the rest use at most
#: :data:`SLOW_BOOTSTRAP` resamples.
FAST_METRICS: frozenset[str] = frozenset(
    {"roc_auc", "brier", "sensitivity", "specificity", "balanced_accuracy"}
)
SLOW_BOOTSTRAP = 200


def bootstrap_cis(
    y: np.ndarray,
    p_repeats: Sequence[np.ndarray],
    predicted_repeats: Sequence[np.ndarray] | None = None,
    *,
    n_boot: int = 1000,
    seed: int = 0,
    no_ranking: bool = False,
) -> dict[str, tuple[float, float]]:
    """Case-level bootstrap 95 % CIs of every metric averaged over CV repeats.

    Each resample draws cases with replacement, stratified by class (both classes always
    present), computes the metric on every repeat's out-of-fold predictions of those cases and
    averages over repeats. This CI reflects the sampling variation of the cohort, which the
    spread over repeats (a reshuffle of the same cases into folds) does not. ROC AUC, Brier and
    the threshold metrics use all ``n_boot`` resamples (vectorised); PR AUC and the calibration
    metrics the first :data:`SLOW_BOOTSTRAP`.

    Parameters
    ----------
    y
        0/1 labels of the cases.
    p_repeats
        One array of out-of-fold probabilities per repeat, aligned with ``y``.
    predicted_repeats
        0/1 out-of-fold class predictions per repeat (for the threshold metrics).
    n_boot
        Bootstrap resamples.
    seed
        Seed of the resampling.
    no_ranking
        The predictions are constant within each test fold (see :func:`binary_metrics`): ROC AUC
        is 0.5 and PR AUC the prevalence in every resample, the calibration slope undefined.

    Returns
    -------
    dict
        Metric name -> (lo, hi) percentile interval; NaN where fewer than 10 resamples give
        a defined value.
    """
    y = np.asarray(y).astype(int)
    nan = (math.nan, math.nan)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    if pos.size == 0 or neg.size == 0 or n_boot < 10:
        return dict.fromkeys(METRIC_NAMES, nan)
    rng = np.random.default_rng(seed)
    idx = np.concatenate(
        [rng.choice(pos, (n_boot, pos.size)), rng.choice(neg, (n_boot, neg.size))], axis=1
    )
    yb = y[idx]
    samples: dict[str, list[np.ndarray]] = {m: [] for m in METRIC_NAMES}
    n_slow = min(n_boot, SLOW_BOOTSTRAP)
    for r, p in enumerate(p_repeats):
        pb = np.asarray(p, dtype=float)[idx]
        samples["roc_auc"].append(_auc_rows(yb, pb))
        samples["brier"].append(np.mean((pb - yb) ** 2, axis=1))
        if predicted_repeats is not None:
            qb = np.asarray(predicted_repeats[r]).astype(int)[idx]
            sens = (qb * yb).sum(axis=1) / yb.sum(axis=1)
            spec = ((1 - qb) * (1 - yb)).sum(axis=1) / (1 - yb).sum(axis=1)
            samples["sensitivity"].append(sens)
            samples["specificity"].append(spec)
            samples["balanced_accuracy"].append((sens + spec) / 2)
        slow = np.full((4, n_slow), np.nan)
        for b in range(n_slow):
            slow[0, b] = average_precision_score(yb[b], pb[b])
            slow[1, b], slow[2, b] = calibration_slope_intercept(yb[b], pb[b])
            slow[3, b] = expected_calibration_error(yb[b], pb[b])
        for i, name in enumerate(("pr_auc", "calibration_slope", "calibration_intercept", "ece")):
            samples[name].append(slow[i])
    if no_ranking:
        # a class-stratified resample keeps the prevalence, and constant scores rank nothing
        samples["roc_auc"] = [np.full(n_boot, 0.5)]
        samples["pr_auc"] = [np.full(n_boot, float(y.mean()))]
        samples["calibration_slope"] = []
    out: dict[str, tuple[float, float]] = {}
    for name in METRIC_NAMES:
        if not samples[name]:
            out[name] = nan
            continue
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN resamples
            values = np.nanmean(np.vstack(samples[name]), axis=0)
        ok = values[~np.isnan(values)]
        if ok.size < 10:
            out[name] = nan
            continue
        lo, hi = np.percentile(ok, [2.5, 97.5])
        out[name] = (float(lo), float(hi))
    return out


def roc_band(
    y: np.ndarray,
    p_repeats: Sequence[np.ndarray],
    *,
    grid: int = 101,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Mean ROC curve over repeats and its case-bootstrap 95 % band on a common FPR grid.

    Returns
    -------
    dict
        ``fpr`` (grid), ``tpr`` (mean over repeats), ``lo``/``hi`` (band), all lists.
    """
    y = np.asarray(y).astype(int)
    fpr_grid = np.linspace(0, 1, grid)

    def mean_tpr(idx: np.ndarray) -> np.ndarray:
        curves = []
        for p in p_repeats:
            fpr, tpr, _ = roc_curve(y[idx], np.asarray(p)[idx])
            curves.append(np.interp(fpr_grid, fpr, tpr))
        return np.mean(curves, axis=0)

    everyone = np.arange(len(y))
    centre = mean_tpr(everyone)
    rng = np.random.default_rng(seed)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    boots = np.array(
        [
            mean_tpr(np.concatenate([rng.choice(pos, pos.size), rng.choice(neg, neg.size)]))
            for _ in range(n_boot)
        ]
    )
    lo, hi = np.percentile(boots, [2.5, 97.5], axis=0)
    centre[0], lo[0], hi[0] = 0.0, 0.0, 0.0
    return {"fpr": fpr_grid.tolist(), "tpr": centre.tolist(), "lo": lo.tolist(), "hi": hi.tolist()}


def permutation_p_value(observed: float, permuted: Sequence[float]) -> float:
    """One-sided permutation p-value ``(1 + #{permuted >= observed}) / (1 + n)``.

    Its resolution is ``1 / (n + 1)``: with 20 permutations the smallest possible value is
    1/21 = 0.048. NaN permuted values are left out; NaN when none remain.
    """
    vals = np.asarray(list(permuted), dtype=float)
    vals = vals[~np.isnan(vals)]
    if vals.size == 0 or math.isnan(observed):
        return math.nan
    return float((1 + np.sum(vals >= observed)) / (1 + vals.size))
