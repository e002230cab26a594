"""Classifiers: imbalance handling from the training labels, pipelines, safe saving."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.base import clone

from radsurv.errors import ConfigError, ModelError
from radsurv.models.classifiers import (
    BalancedXGBClassifier,
    ClassifierError,
    feature_weights,
    load_classifier,
    make_baseline_pipeline,
    make_classifier_pipeline,
    save_classifier,
)


def test_xgb_weight_comes_from_the_training_labels(design):
    X, y = design
    est = BalancedXGBClassifier(n_estimators=20).fit(X.to_numpy(), y.to_numpy())
    neg, pos = int((y == 0).sum()), int(y.sum())
    assert est.scale_pos_weight_ == pytest.approx(neg / pos)
    assert est.model_.get_params()["scale_pos_weight"] == pytest.approx(neg / pos)
    sub = np.r_[np.flatnonzero(y == 1)[:5], np.flatnonzero(y == 0)]
    est2 = clone(est).fit(X.to_numpy()[sub], y.to_numpy()[sub])
    assert est2.scale_pos_weight_ == pytest.approx(neg / 5)
    proba = est2.predict_proba(X.to_numpy())
    assert proba.shape == (len(y), 2) and np.allclose(proba.sum(axis=1), 1)
    with pytest.raises(ModelError, match="two classes"):
        clone(est).fit(X.to_numpy()[:5], np.zeros(5, dtype=int))


@pytest.mark.parametrize("name", ["logreg", "rf"])
def test_pipelines_keep_forced_covariates_and_rank_the_signal(design, name):
    X, y = design
    X = X.assign(age=np.linspace(30, 80, len(X)))
    pipe = make_classifier_pipeline(name, k=3, forced=["age"]).fit(X, y)
    weights = feature_weights(pipe)
    assert "age" in weights and len(weights) == 4
    top = max((f for f in weights if f != "age"), key=lambda f: abs(weights[f]))
    assert top in X.columns[:2]  # the two signal columns


def test_unknown_model_is_a_config_error():
    with pytest.raises(ConfigError, match="logreg"):
        make_classifier_pipeline("svm")


def test_prevalence_baseline_predicts_the_training_rate(design):
    X, y = design
    base = make_baseline_pipeline().fit(X.iloc[:, :1], y)
    assert np.allclose(base.predict_proba(X.iloc[:, :1])[:, 1], y.mean())


def test_save_and_load_round_trip_without_pickle(design, tmp_path):
    X, y = design
    pipe = make_classifier_pipeline("xgb", k=5).set_params(model__n_estimators=30).fit(X, y)
    path = save_classifier(pipe, tmp_path / "m.skops")
    loaded = load_classifier(path)
    assert np.allclose(loaded.predict_proba(X)[:, 1], pipe.predict_proba(X)[:, 1])


class NotTrusted:
    """A type outside radsurv/sklearn/xgboost: loading must refuse it."""


def test_load_refuses_untrusted_types(tmp_path):
    import skops.io as sio

    path = tmp_path / "evil.skops"
    sio.dump({"x": NotTrusted()}, path)
    with pytest.raises(ClassifierError, match="refusing"):
        load_classifier(path)
