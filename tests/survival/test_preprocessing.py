"""In-fold preprocessing transformers: sklearn checks, forced covariates, the Cox score."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.feature_selection import f_classif
from sklearn.utils.estimator_checks import check_estimator

from radsurv.errors import ConfigError
from radsurv.models.preprocessing import (
    CorrelationFilter,
    NearConstantFilter,
    SelectKBestScored,
    make_preprocessor,
    univariate_cox_score,
)


@pytest.mark.parametrize(
    "est",
    [NearConstantFilter(), CorrelationFilter(), SelectKBestScored(k=2, scorer=f_classif)],
    ids=lambda e: type(e).__name__,
)
def test_sklearn_estimator_checks(est) -> None:
    check_estimator(est)


def test_filters_keep_forced_and_drop_what_they_should(sim) -> None:
    X, y = sim
    X = X.copy()
    X["const"] = 1.0
    X["mostly_zero"] = 0.0
    X.iloc[:3, X.columns.get_loc("mostly_zero")] = 1.0
    X["f0_copy"] = X["f0"] * 2 + 0.01
    X.iloc[5, 3] = np.nan
    prep = make_preprocessor(k=1, forced=["age", "const"])
    out = prep.fit_transform(X, y)
    cols = list(out.columns)
    assert "age" in cols and "const" in cols  # forced in, even though constant
    assert "mostly_zero" not in cols and "f0_copy" not in cols
    assert "f0" in cols  # the strongest predictor is the one best feature
    assert len(cols) == 3 and not out.isna().any().any()


def test_univariate_cox_score_matches_lifelines(sim) -> None:
    from lifelines import CoxPHFitter

    X, y = sim
    cols = ["f0", "f1", "f2", "age"]
    scores = univariate_cox_score(X[cols].to_numpy(), y)
    lrt = []
    for c in cols:
        df = pd.DataFrame({"x": X[c], "T": y["time"], "E": y["event"]})
        lrt.append(CoxPHFitter().fit(df, "T", "E").log_likelihood_ratio_test().test_statistic)
    # score and likelihood-ratio tests agree asymptotically; the ranking must match
    assert np.argsort(scores).tolist() == np.argsort(lrt).tolist()
    np.testing.assert_allclose(scores, lrt, rtol=0.25, atol=1.0)


def test_forced_name_errors() -> None:
    X = pd.DataFrame({"a": [1.0, 2, 3], "b": [3.0, 1, 2]})
    with pytest.raises(ConfigError, match="'age' is not among"):
        NearConstantFilter(forced=["age"]).fit(X)
    with pytest.raises(ConfigError, match="no column names"):
        NearConstantFilter(forced=["a"]).fit(X.to_numpy())
