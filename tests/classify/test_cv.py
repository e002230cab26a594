"""Cross-validated classification: signal is found, shuffled labels are not, bad input errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radsurv.evaluation.classify import (
    ClassificationCVError,
    ClassificationInputError,
    ClassifySettings,
    covariate_frame,
    read_feature_table,
    run_classification,
)

FAST = {"cv": "4x2", "permutations": 0, "n_boot": 200}


def test_signal_gives_auc_well_above_chance_and_beats_the_baseline(design):
    X, y = design
    X = X.assign(age=np.random.default_rng(5).normal(60, 10, len(X)))
    res = run_classification(X, y, ClassifySettings(**FAST), covariates=["age"])
    auc = res.metrics["models"]["logreg"]["roc_auc"]
    assert auc["mean"] > 0.8
    assert auc["ci95"][0] > 0.6 and auc["ci95"][0] < auc["mean"] < auc["ci95"][1]
    base = res.metrics["baselines"]["clinical"]["roc_auc"]["mean"]
    assert base < auc["mean"] - 0.2  # age is pure noise here
    assert res.metrics["n"] == len(y) and res.metrics["positives"] == int(y.sum())
    # predictions: one row per case, repeat and model/baseline, thresholds from training folds
    p = res.predictions
    assert len(p) == len(y) * 2 * 2
    assert set(p.columns) >= {"case_id", "repeat", "fold", "probability", "threshold", "label"}
    assert p.groupby(["model", "repeat"])["case_id"].nunique().eq(len(y)).all()
    assert p["probability"].between(0, 1).all() and p["threshold"].notna().all()
    assert res.selection_frequency["logreg"].index[:2].isin(X.columns[:2]).all()


def test_shuffled_labels_give_auc_near_chance(design):
    X, y = design
    shuffled = pd.Series(np.random.default_rng(11).permutation(y.to_numpy()), index=y.index)
    res = run_classification(X, shuffled, ClassifySettings(**FAST))
    assert abs(res.metrics["models"]["logreg"]["roc_auc"]["mean"] - 0.5) < 0.15
    prevalence = res.metrics["baselines"]["prevalence"]
    # constant within each fold: exactly no discrimination, not an artefact of pooled folds
    assert prevalence["roc_auc"]["mean"] == 0.5 and prevalence["roc_auc"]["sd"] == 0
    assert prevalence["roc_auc"]["ci95"] == [0.5, 0.5]
    assert prevalence["pr_auc"]["mean"] == pytest.approx(float(shuffled.mean()))
    assert np.isnan(prevalence["calibration_slope"]["mean"])


@pytest.mark.slow
def test_same_seed_same_numbers_and_jobs_do_not_matter(design):
    X, y = design
    settings = ClassifySettings(cv="3x1", permutations=0, n_boot=50)
    a = run_classification(X, y, settings)
    b = run_classification(X, y, ClassifySettings(cv="3x1", permutations=0, n_boot=50, n_jobs=2))
    pd.testing.assert_frame_equal(a.predictions, b.predictions)


@pytest.mark.slow
def test_permutation_test_reruns_the_pipeline(design):
    X, y = design
    res = run_classification(X, y, ClassifySettings(cv="4x1", permutations=4, n_boot=50))
    perm = res.metrics["models"]["logreg"]["permutation_test"]
    assert perm["n_permutations"] == 4 and perm["resolution"] == pytest.approx(1 / 5)
    assert perm["p_value"] == pytest.approx(1 / 5)  # the strong signal beats every permutation
    assert max(perm["permuted"]) < perm["observed"]
    assert np.mean(perm["permuted"]) < 0.7


@pytest.mark.slow
def test_xgb_and_rf_find_the_signal(design_factory):
    X, y = design_factory(n=60, n_features=10, signal=3.0)
    settings = ClassifySettings(models=("xgb", "rf"), cv="3x1", permutations=0, n_boot=50)
    res = run_classification(X, y, settings)
    for m in ("xgb", "rf"):
        assert res.metrics["models"][m]["roc_auc"]["mean"] > 0.75, m
    assert set(res.final_models) == {"xgb", "rf", "prevalence"}


def test_fewer_positives_than_folds_is_a_clear_error(design):
    X, y = design
    y = y.copy()
    y[:] = 0
    y.iloc[:3] = 1
    with pytest.raises(ClassificationCVError, match="3 positive .* cannot fill 5"):
        run_classification(X, y, ClassifySettings(cv="5x1", permutations=0))


def test_single_class_and_nan_labels_are_clear_errors(design):
    X, y = design
    with pytest.raises(ClassificationCVError, match="single class"):
        run_classification(X, y * 0, ClassifySettings(cv="3x1", permutations=0))
    y_nan = y.astype(float)
    y_nan.iloc[[2, 7]] = np.nan
    with pytest.raises(ClassificationInputError, match="2 missing .*BraTS20_Training_003"):
        run_classification(X, y_nan, ClassifySettings(cv="3x1", permutations=0))


def test_bad_design_inputs(design):
    X, y = design
    with pytest.raises(ClassificationInputError, match="non-numeric"):
        run_classification(X.assign(site="a"), y, ClassifySettings(permutations=0))
    with pytest.raises(ClassificationInputError, match="covariates"):
        run_classification(X, y, ClassifySettings(permutations=0), covariates=["age"])
    with pytest.raises(ClassificationInputError, match="aligned"):
        run_classification(X, y.iloc[::-1], ClassifySettings(permutations=0))


def test_feature_table_reader_and_covariates(cohort_files):
    feats = read_feature_table(cohort_files["features"])
    assert feats.index.name == "case_id" and "diagnostics_Versions" not in feats.columns
    assert feats.shape == (60, 20)
    from radsurv.clinical import read_survival_table

    table = read_survival_table(cohort_files["clinical"])
    cov = covariate_frame(["age", "resection"], table)
    # the one encoder of every study: STR is the reference level, unknown has an indicator
    assert list(cov.columns) == ["age", "resection_GTR", "resection_missing"]
    unknown = table["resection"].isna().to_numpy()
    assert (cov.loc[unknown, "resection_GTR"] == 0).all()
    assert (cov.loc[unknown, "resection_missing"] == 1).all()
    with pytest.raises(ClassificationInputError, match="kps"):
        covariate_frame(["kps"], table)


@pytest.mark.slow
def test_nested_cv_tunes_inside_the_training_folds(design):
    from radsurv.models.classifiers import PARAM_GRIDS

    X, y = design
    res = run_classification(
        X, y, ClassifySettings(cv="3x1", nested=True, permutations=0, n_boot=50)
    )
    assert res.metrics["models"]["logreg"]["roc_auc"]["mean"] > 0.75
    search = res.final_models["logreg"]
    assert search.best_params_["model__C"] in PARAM_GRIDS["logreg"]["model__C"]
    assert res.final_weights["logreg"]  # unwrapped from the grid search
