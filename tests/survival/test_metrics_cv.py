"""Fold metrics against the libraries, undefined metrics, CV plans, leakage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from lifelines.utils import concordance_index
from sksurv.util import Surv

from radsurv.errors import ConfigError
from radsurv.evaluation.cv import make_folds, parse_cv_spec, survival_strata
from radsurv.evaluation.report import summarise_metric
from radsurv.evaluation.survival_metrics import brats_class, cross_validate_survival, fold_metrics
from radsurv.models.survival import make_model

from .conftest import simulate


def test_parse_cv_spec() -> None:
    assert parse_cv_spec("5x5") == (5, 5)
    assert parse_cv_spec("10") == (10, 1)
    for bad in ("5x", "1x3", "five"):
        with pytest.raises(ConfigError):
            parse_cv_spec(bad)


def test_folds_are_deterministic_stratified_and_partition(sim) -> None:
    _, y = sim
    strata = survival_strata(y["event"], y["time"])
    a = make_folds(strata, 5, 2, seed=7)
    b = make_folds(strata, 5, 2, seed=7)
    assert all(np.array_equal(f.test, g.test) for f, g in zip(a, b, strict=True))
    for r in range(2):
        tests = np.concatenate([f.test for f in a if f.repeat == r])
        assert np.array_equal(np.sort(tests), np.arange(len(y)))
    ev_share = [y["event"][f.test].mean() for f in a]
    assert max(ev_share) - min(ev_share) < 0.1


def test_fold_metrics_match_library_values(sim) -> None:
    _, y = sim
    rng = np.random.default_rng(0)
    risk = -np.log(y["time"]) + rng.normal(0, 1, len(y))
    days = y["time"] * np.exp(rng.normal(0, 0.3, len(y)))
    tr, te = np.arange(100), np.arange(100, 200)
    m, undefined = fold_metrics(y[tr], y[te], risk[te], days[te], None)
    # lifelines: higher score = longer survival, so pass -risk
    lifelines_c = concordance_index(y["time"][te], -risk[te], y["event"][te])
    assert m["harrell_c"] == pytest.approx(lifelines_c, abs=1e-9)
    ev = y["event"][te]
    expected_acc = np.mean(brats_class(y["time"][te][ev]) == brats_class(days[te][ev]))
    assert m["brats_accuracy"] == pytest.approx(expected_acc)
    assert m["mse"] == pytest.approx(np.mean((y["time"][te][ev] - days[te][ev]) ** 2))
    assert math.isnan(m["ibs"]) and "ibs" in undefined


def test_undefined_metrics_are_nan_with_reasons() -> None:
    y_train = Surv.from_arrays([True, False, True, True, False], [10.0, 20, 30, 40, 50])
    y_test = Surv.from_arrays([False, False], [15.0, 25])  # no deaths, short follow-up
    m, why = fold_metrics(y_train, y_test, np.array([1.0, 2.0]), np.array([5.0, 6.0]), None)
    assert math.isnan(m["harrell_c"]) and "harrell_c" in why
    assert math.isnan(m["td_auc_24m"]) and "td_auc_24m" in why
    assert math.isnan(m["brats_accuracy"]) and "no observed deaths" in why["brats_accuracy"]


def test_summarise_metric() -> None:
    s = summarise_metric([0.6, 0.7, float("nan"), 0.65], rng=0)
    assert s["mean"] == pytest.approx(0.65) and s["n"] == 3 and s["n_undefined"] == 1
    assert s["ci95"][0] <= 0.65 <= s["ci95"][1]
    assert s == summarise_metric([0.6, 0.7, float("nan"), 0.65], rng=0)


@pytest.mark.slow
def test_selection_inside_folds_gives_chance_c_on_noise() -> None:
    """Pure-noise features: in-fold selection must not leak (C near 0.5)."""
    X, y = simulate(n=150, p=400, seed=5, signal=0.0)
    X = X.drop(columns=["age"])
    folds = make_folds(survival_strata(y["event"], y["time"]), 5, 2, seed=0)
    res = cross_validate_survival({"cox": make_model("cox", k=10)}, X, y, folds, n_jobs=1)
    c = res.summaries["cox"]["harrell_c"]["mean"]
    assert abs(c - 0.5) < 0.06, c
    # the same selection done on all data first leaks and looks (falsely) good
    from radsurv.models.preprocessing import SelectKBestScored

    leaked = SelectKBestScored(k=10).fit(X, y).get_feature_names_out()
    res2 = cross_validate_survival(
        {"cox": make_model("cox", k=None)}, X[list(leaked)], y, folds, n_jobs=1
    )
    assert res2.summaries["cox"]["harrell_c"]["mean"] > c + 0.05


def test_merged_strata_warning_says_what_and_why(caplog) -> None:
    import logging

    from radsurv.evaluation.cv import make_folds, survival_stratum_label

    strata = np.array([4] * 20 + [1])  # one censored case in the 2nd time tertile
    with caplog.at_level(logging.WARNING, logger="radsurv.evaluation.cv"):
        make_folds(strata, 5, describe=survival_stratum_label, context="survival study, outer CV")
    text = caplog.text
    assert "survival study, outer CV, 5 folds" in text
    assert "stratum 1 (censored, 2nd time tertile) with 1 case" in text
    assert "merged into the largest, stratum 4 (deaths, 2nd time tertile)" in text
