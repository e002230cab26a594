"""Nested (inner) cross-validation of survival hyper-parameters.

:func:`make_tuned_model` wraps a model pipeline from :func:`radsurv.models.survival.make_model`
in scikit-learn's :class:`~sklearn.model_selection.GridSearchCV`: on each outer training fold an
inner K-fold (stratified on event x time tertile like the outer folds, seeded) scores every
combination of a small grid by Harrell's C (the estimators' ``score``), and the best combination
is refitted on the whole outer training fold. Ties go to the first combination of the grid, so a
run is deterministic for a given seed.

The grids (:data:`PARAM_GRIDS`, parameters of the final estimator) are deliberately small: each
combination costs ``inner_folds`` fits per outer fold.

========================  ==================================================
model                     grid
========================  ==================================================
``cox``                   penalizer {0.01, 0.1, 1} x l1_ratio {0, 0.5}
``xgb-cox``, ``xgb-aft*`` max_depth {1, 2, 3} x learning_rate {0.02, 0.1}
``rsf``                   min_samples_leaf {3, 8, 15}
========================  ==================================================
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.model_selection import BaseCrossValidator, GridSearchCV

from radsurv.errors import ConfigError

log = logging.getLogger(__name__)

_XGB_GRID: dict[str, list[Any]] = {"max_depth": [1, 2, 3], "learning_rate": [0.02, 0.1]}

#: Hyper-parameter grid per model name (parameters of the estimator, not the pipeline).
PARAM_GRIDS: dict[str, dict[str, list[Any]]] = {
    "cox": {"penalizer": [0.01, 0.1, 1.0], "l1_ratio": [0.0, 0.5]},
    "xgb-cox": _XGB_GRID,
    "xgb-aft": _XGB_GRID,
    "xgb-aft-logistic": _XGB_GRID,
    "xgb-aft-extreme": _XGB_GRID,
    "rsf": {"min_samples_leaf": [3, 8, 15]},
}

DEFAULT_INNER_FOLDS = 3


class SurvivalStratifiedKFold(BaseCrossValidator):
    """K-fold split stratified on event x time tertile of a survival target (seeded).

    The same plan as the outer folds (:func:`radsurv.evaluation.cv.make_folds` with one
    repeat), usable as ``cv=`` of scikit-learn's searches: ``y`` must be a scikit-survival
    structured array.
    """

    def __init__(self, n_splits: int = DEFAULT_INNER_FOLDS, random_state: int = 0) -> None:
        self.n_splits = n_splits
        self.random_state = random_state

    def get_n_splits(self, X: Any = None, y: Any = None, groups: Any = None) -> int:
        return self.n_splits

    def split(
        self, X: Any, y: Any = None, groups: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        from radsurv.clinical import event_and_time
        from radsurv.evaluation.cv import make_folds, survival_strata, survival_stratum_label

        if y is None:
            raise ConfigError("the inner survival CV needs the survival target y to stratify")
        event, time = event_and_time(y)
        plan = make_folds(
            survival_strata(event, time), self.n_splits, 1, self.random_state,
            describe=survival_stratum_label, context="nested tuning, inner CV",
        )  # fmt: skip
        for fold in plan:
            yield fold.train, fold.test

    def _iter_test_indices(self, X: Any = None, y: Any = None, groups: Any = None):  # noqa: D102
        for _, test in self.split(X, y, groups):
            yield test


def param_grid(name: str) -> dict[str, list[Any]]:
    """The documented grid of a model name (estimator parameters)."""
    if name not in PARAM_GRIDS:
        raise ConfigError(f"no hyper-parameter grid for model {name!r}")
    return {k: list(v) for k, v in PARAM_GRIDS[name].items()}


def make_tuned_model(
    name: str,
    pipeline: Any,
    *,
    inner_folds: int = DEFAULT_INNER_FOLDS,
    seed: int = 0,
    grid: Mapping[str, Sequence[Any]] | None = None,
) -> GridSearchCV:
    """Wrap a ``make_model`` pipeline (last step ``model``) in an inner-CV grid search.

    Parameters
    ----------
    name
        Model name (picks the grid from :data:`PARAM_GRIDS` when ``grid`` is None).
    pipeline
        Unfitted pipeline whose last step is named ``model``.
    inner_folds
        Folds of the inner CV (at least 2).
    seed
        Seed of the inner fold plan.
    grid
        Estimator parameter grid overriding the documented one.

    Returns
    -------
    sklearn.model_selection.GridSearchCV
        Scored by the estimator's Harrell's C, refitted on the whole training data; a failing
        combination scores NaN and ranks last.
    """
    if inner_folds < 2:
        raise ConfigError(f"the inner CV needs at least 2 folds, got {inner_folds}")
    grid = param_grid(name) if grid is None else {k: list(v) for k, v in grid.items()}
    return GridSearchCV(
        pipeline,
        {f"model__{k}": v for k, v in grid.items()},
        cv=SurvivalStratifiedKFold(inner_folds, random_state=seed),
        refit=True,
        error_score=np.nan,
        n_jobs=1,
    )


def unwrap_search(model: Any) -> tuple[Any, dict[str, Any] | None]:
    """(fitted pipeline, chosen estimator parameters) of a fitted search; (model, None) else."""
    best = getattr(model, "best_estimator_", None)
    if best is None:
        return model, None
    params = {k.removeprefix("model__"): _plain(v) for k, v in model.best_params_.items()}
    return best, params


def _plain(value: Any) -> Any:
    """numpy scalars -> Python values (JSON-able)."""
    return value.item() if isinstance(value, np.generic) else value


def format_params(params: Mapping[str, Any] | None) -> str:
    """``penalizer=0.1, l1_ratio=0.5`` (empty for None)."""
    if not params:
        return ""
    return ", ".join(
        f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )
