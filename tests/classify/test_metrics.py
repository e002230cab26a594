"""Classification metrics against scikit-learn and against known calibration truths."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from radsurv.evaluation.classification_metrics import (
    binary_metrics,
    bootstrap_cis,
    calibration_slope_intercept,
    expected_calibration_error,
    permutation_p_value,
    roc_band,
    youden_threshold,
)


@pytest.fixture
def scores():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.25 * y + rng.uniform(0, 0.75, 300), 0, 1).round(2)  # with ties
    return y, p


def test_youden_threshold_separates_a_separable_sample():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])
    t = youden_threshold(y, p)
    assert 0.3 < t <= 0.6
    m = binary_metrics(y, p, p >= t)
    assert m["sensitivity"] == 1.0 and m["specificity"] == 1.0


def test_metrics_match_sklearn(scores):
    y, p = scores
    m = binary_metrics(y, p, p >= 0.5)
    assert m["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["pr_auc"] == pytest.approx(average_precision_score(y, p))
    assert m["brier"] == pytest.approx(np.mean((p - y) ** 2))
    tp = np.sum((p >= 0.5) & (y == 1))
    assert m["sensitivity"] == pytest.approx(tp / y.sum())
    assert m["balanced_accuracy"] == pytest.approx((m["sensitivity"] + m["specificity"]) / 2)


def test_calibration_of_calibrated_and_overconfident_predictions():
    rng = np.random.default_rng(1)
    q = rng.uniform(0.05, 0.95, 20000)
    y = (rng.uniform(size=q.size) < q).astype(int)
    slope, intercept = calibration_slope_intercept(y, q)
    assert slope == pytest.approx(1.0, abs=0.08) and intercept == pytest.approx(0.0, abs=0.06)
    assert expected_calibration_error(y, q) < 0.03
    logit = np.log(q / (1 - q))
    over = 1 / (1 + np.exp(-2 * logit))  # twice the log-odds: slope 1/2
    slope2, _ = calibration_slope_intercept(y, over)
    assert slope2 == pytest.approx(0.5, abs=0.05)
    shifted = 1 / (1 + np.exp(-(logit - 1)))  # risks too low: intercept +1
    assert calibration_slope_intercept(y, shifted)[1] == pytest.approx(1.0, abs=0.08)


def test_bootstrap_cis_cover_the_estimate_and_are_deterministic(scores):
    y, p = scores
    pred = p >= youden_threshold(y, p)
    ci = bootstrap_cis(y, [p, p], [pred, pred], n_boot=300, seed=3)
    auc = roc_auc_score(y, p)
    assert ci["roc_auc"][0] < auc < ci["roc_auc"][1]
    assert ci["roc_auc"][1] - ci["roc_auc"][0] < 0.2
    m = binary_metrics(y, p, pred)
    for name in ("brier", "sensitivity", "specificity", "pr_auc", "ece"):
        assert ci[name][0] <= m[name] <= ci[name][1], name
    assert bootstrap_cis(y, [p], [pred], n_boot=100, seed=3) == bootstrap_cis(
        y, [p], [pred], n_boot=100, seed=3
    )


def test_roc_band_brackets_the_mean_curve(scores):
    y, p = scores
    band = roc_band(y, [p], n_boot=50)
    tpr, lo, hi = (np.array(band[k]) for k in ("tpr", "lo", "hi"))
    assert np.all(lo <= tpr + 1e-9) and np.all(tpr <= hi + 1e-9)
    assert np.trapezoid(tpr, band["fpr"]) == pytest.approx(roc_auc_score(y, p), abs=0.01)


def test_permutation_p_value_and_its_resolution():
    assert permutation_p_value(0.9, [0.5] * 20) == pytest.approx(1 / 21)
    assert permutation_p_value(0.5, [0.6, 0.4, 0.5, 0.55]) == pytest.approx(4 / 5)
    assert math.isnan(permutation_p_value(0.7, []))


def test_undefined_metrics_are_nan_not_errors():
    m = binary_metrics(np.ones(5, dtype=int), np.linspace(0.1, 0.9, 5))
    assert math.isnan(m["roc_auc"]) and math.isnan(m["sensitivity"])


def test_per_fold_constant_predictions_rank_nothing() -> None:
    from radsurv.evaluation.classification_metrics import binary_metrics

    # two folds, each predicting its training prevalence: pooled, sklearn would give 0 here
    y = np.array([1, 1, 0, 0, 0, 1, 0, 0])
    p = np.array([0.2, 0.2, 0.2, 0.2, 0.6, 0.6, 0.6, 0.6])
    folds = np.array([1, 1, 1, 1, 2, 2, 2, 2])
    m = binary_metrics(y, p, groups=folds)
    assert m["roc_auc"] == 0.5 and m["pr_auc"] == pytest.approx(3 / 8)
    assert np.isnan(m["calibration_slope"])
    assert binary_metrics(y, p)["roc_auc"] != 0.5  # without the folds it cannot know


def test_estimates_print_fixed_significant_digits() -> None:
    from radsurv.evaluation.report import format_estimate

    assert format_estimate(0.459, 6.8e-17, [0.459, 0.459]) == "0.459 ± 0 [0.459, 0.459]"
    assert format_estimate(-3.793, 5.77e-15) == "-3.79 ± 0"
    assert format_estimate(100123.4, 1221.3, [77924.1, 100456.0]) == "100123 ± 1221 [77924, 100456]"
    assert format_estimate(0.715, 0.0094, [0.70, 0.73]) == "0.715 ± 0.009 [0.700, 0.730]"
    assert format_estimate(0.715, 0.0001) == "0.715 ± <0.001"
    assert format_estimate(float("nan"), 0.1) == "n/a"
