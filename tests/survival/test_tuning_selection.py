"""Nested inner-CV hyper-parameter search and penalised (Coxnet) selection inside the folds."""

from __future__ import annotations

import numpy as np
import pytest

from radsurv.errors import ConfigError
from radsurv.evaluation.cv import make_folds, survival_strata
from radsurv.evaluation.survival_metrics import cross_validate_survival
from radsurv.models.survival import make_model
from radsurv.models.survival_selection import CoxnetSelector
from radsurv.models.survival_tuning import (
    PARAM_GRIDS,
    SurvivalStratifiedKFold,
    make_tuned_model,
    unwrap_search,
)

from .conftest import simulate


def test_every_model_has_a_small_documented_grid() -> None:
    from radsurv.models.survival import MODEL_NAMES, make_estimator

    assert set(PARAM_GRIDS) == set(MODEL_NAMES)
    for name, grid in PARAM_GRIDS.items():
        est = make_estimator(name)
        assert set(grid) <= set(est.get_params()), name  # real estimator parameters
        assert 2 <= np.prod([len(v) for v in grid.values()]) <= 6


def test_inner_split_is_stratified_and_seeded(sim) -> None:
    X, y = sim
    a = list(SurvivalStratifiedKFold(3, random_state=4).split(X, y))
    b = list(SurvivalStratifiedKFold(3, random_state=4).split(X, y))
    assert all(np.array_equal(t1, t2) for (_, t1), (_, t2) in zip(a, b, strict=True))
    assert np.array_equal(np.sort(np.concatenate([t for _, t in a])), np.arange(len(y)))
    shares = [y["event"][t].mean() for _, t in a]
    assert max(shares) - min(shares) < 0.05
    with pytest.raises(ConfigError, match="needs the survival target"):
        next(SurvivalStratifiedKFold(3).split(X))


@pytest.mark.slow
def test_nested_cv_records_choices_per_fold_and_is_deterministic() -> None:
    X, y = simulate(n=90, p=8, seed=3)
    grid = {"penalizer": [0.01, 3.0]}
    folds = make_folds(survival_strata(y["event"], y["time"]), 3, 1, seed=1)

    def run(seed: int):
        tuned = make_tuned_model(
            "cox", make_model("cox", k=4, forced=["age"]), inner_folds=2, seed=seed, grid=grid
        )
        return cross_validate_survival({"cox": tuned}, X, y, folds)

    first, second = run(0), run(0)
    chosen = first.chosen_params()["cox"]
    assert [(c["repeat"], c["fold"]) for c in chosen] == [(0, 0), (0, 1), (0, 2)]
    assert all(c["params"]["penalizer"] in grid["penalizer"] for c in chosen)
    assert second.chosen_params() == first.chosen_params()
    assert second.fold_table()["harrell_c"].tolist() == first.fold_table()["harrell_c"].tolist()
    # strong signal, few features: the weak penalty wins the inner CV somewhere
    assert any(c["params"]["penalizer"] == 0.01 for c in chosen)
    assert first.summaries["cox"]["harrell_c"]["mean"] > 0.65
    # a refit on all data is a plain fitted pipeline plus its choice
    model, params = unwrap_search(
        make_tuned_model("cox", make_model("cox", k=4), grid=grid).fit(X, y)
    )
    assert params["penalizer"] in grid["penalizer"]
    assert model[-1].penalizer == params["penalizer"]


def test_penalised_selection_keeps_forced_and_finds_the_signal(sim) -> None:
    X, y = sim
    pipe = make_model("cox", k=3, forced=["age"], selection="penalised").fit(X[:150], y[:150])
    names = list(pipe[:-1].get_feature_names_out())
    assert "age" in names and len(names) == 4
    assert {"f0", "f1"} <= set(names)
    sel = pipe[0].named_steps["select"]
    assert isinstance(sel, CoxnetSelector)
    assert np.isinf(sel.entry_alpha_[list(sel.feature_names_in_).index("age")])
    # k larger than what ever enters the path: only entered columns are kept
    all_in = CoxnetSelector(k=None).fit(X.to_numpy()[:150], y[:150])
    assert 0 < all_in.support_.sum() <= X.shape[1]
    with pytest.raises(ConfigError, match="choose from"):
        make_model("cox", selection="lasso")


@pytest.mark.slow
def test_penalised_selection_runs_inside_the_folds() -> None:
    """Pure noise: the Coxnet path fitted per training fold gives chance C (no leakage)."""
    X, y = simulate(n=120, p=300, seed=8, signal=0.0)
    X = X.drop(columns=["age"])
    folds = make_folds(survival_strata(y["event"], y["time"]), 4, 2, seed=0)
    model = make_model("cox", k=8, selection="penalised")
    res = cross_validate_survival({"cox": model}, X, y, folds)
    c = res.summaries["cox"]["harrell_c"]["mean"]
    assert "failed_folds" not in res.summaries["cox"]
    assert abs(c - 0.5) < 0.07, c
    # selected on all cases first (outside the folds), the same pipeline looks better than chance
    sel = make_model("cox", k=8, selection="penalised")[0].fit(X, y)
    leaked = list(sel.get_feature_names_out())
    res2 = cross_validate_survival({"cox": make_model("cox", k=None)}, X[leaked], y, folds)
    assert res2.summaries["cox"]["harrell_c"]["mean"] > c + 0.05
