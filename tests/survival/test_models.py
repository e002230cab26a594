"""Survival estimators: sklearn API, prediction quality, curves, safe saving, many features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from radsurv.errors import ModelError
from radsurv.models.survival import (
    MODEL_NAMES,
    CoxPH,
    XGBCox,
    load_model,
    make_model,
    predict_days,
    save_model,
)

from .conftest import simulate


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_models_learn_the_signal_and_round_trip(name: str, sim, tmp_path: Path) -> None:
    X, y = sim
    model = make_model(name, k=5, forced=["age"]).fit(X[:140], y[:140])
    assert model.score(X[140:], y[140:]) > 0.65  # true model: f0, f1 and age
    risk = model.predict(X[140:])
    days = predict_days(model, X[140:])
    assert np.all(days > 0) and np.isfinite(days).all()
    # higher risk, shorter predicted survival
    assert np.corrcoef(risk, np.log(days))[0, 1] < -0.5
    curves = model.predict_survival_function(X[140:143])
    s = curves[0](curves[0].x)
    assert np.all(np.diff(s) <= 1e-12) and s.min() >= 0 and s.max() <= 1
    path = save_model(model, tmp_path / f"{name}.skops")
    again = load_model(path)
    np.testing.assert_allclose(again.predict(X[140:]), risk)
    cloned = clone(model)
    assert cloned.get_params()["model"].get_params() == model[-1].get_params()


def test_cox_retries_with_larger_penalty_on_collinear_features(caplog) -> None:
    X, y = simulate(n=60, p=3, seed=1)
    Xc = X.to_numpy()
    Xc = np.column_stack([Xc, Xc[:, 0], Xc[:, 0] * 1.0000001])  # exact duplicates: singular
    model = CoxPH(penalizer=0.0).fit(Xc, y)
    assert model.penalizer_ > 0 and np.isfinite(model.coef_).all()


def test_all_censored_and_nan_targets_are_clear_errors(sim) -> None:
    from sksurv.util import Surv

    X, y = sim
    censored = Surv.from_arrays(np.zeros(len(y), bool), y["time"])
    with pytest.raises(ModelError, match="all 200 training cases are censored"):
        XGBCox().fit(X, censored)
    bad = Surv.from_arrays(y["event"], np.where(np.arange(len(y)) == 3, np.nan, y["time"]))
    with pytest.raises(ModelError, match="NaN"):
        CoxPH().fit(X, bad)


@pytest.mark.slow
def test_two_thousand_features_three_hundred_patients() -> None:
    X, y = simulate(n=300, p=2000, seed=2)
    for name in ("cox", "xgb-cox"):
        model = make_model(name, k=20, forced=["age"]).fit(X[:240], y[:240])
        assert model.score(X[240:], y[240:]) > 0.6
