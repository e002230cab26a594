"""Survival estimators with the scikit-learn / scikit-survival API.

All estimators take ``y`` as a scikit-survival structured array ``(event, time)`` (time in
days), and offer:

- ``predict(X)``: a risk score, higher = worse prognosis (what concordance indices expect);
- ``predict_survival_function(X, return_array=False)``: survival curves (StepFunctions, or an
  array on ``event_times_``);
- ``predict_days(X)``: predicted survival in days, for the BraTS challenge metrics. It is the
  median of the predicted survival curve (the first time the curve reaches 0.5); where a curve
  stays above 0.5 over the training follow-up it is capped at the last training event time.
  For the AFT model it is the median of the predicted log-time distribution (uncapped).
- ``score(X, y)``: Harrell's concordance index.

Fitted state is numpy arrays and plain Python values only (xgboost boosters as their own JSON
bytes), so a fitted pipeline is saved with :func:`save_model` through ``skops.io`` and loaded
with :func:`load_model`, which refuses any type outside radsurv / scikit-learn /
scikit-survival / numpy instead of unpickling blindly.

Estimators
----------
- :class:`CoxPH`: lifelines' CoxPHFitter with elastic net (``penalizer``, ``l1_ratio``); on a
  convergence failure (singular Hessian with many correlated features) it retries with a 10x
  larger penalizer, logged, instead of crashing.
- :class:`XGBCox`: XGBoost ``survival:cox`` plus a Breslow baseline hazard for curves.
- :class:`XGBAFT`: XGBoost ``survival:aft`` (``normal``, ``logistic``, ``extreme``); censored
  cases are interval labels ``[time, +inf)``.
- :class:`RSF`: scikit-survival's random survival forest (plus ``predict_days``).
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted, validate_data
from sksurv.ensemble import RandomSurvivalForest

from radsurv.clinical import event_and_time
from radsurv.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

#: Model names accepted by :func:`make_model` and ``radsurv survival --model``.
MODEL_NAMES: tuple[str, ...] = (
    "cox",
    "xgb-cox",
    "xgb-aft",
    "xgb-aft-logistic",
    "xgb-aft-extreme",
    "rsf",
)


def _check_target(y: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a structured survival array; return (event, time)."""
    event, time = event_and_time(y, error=ModelError)
    if event.shape[0] != n:
        raise ModelError(f"X has {n} rows but y has {event.shape[0]}")
    if not np.all(np.isfinite(time)):
        raise ModelError("y holds NaN/inf survival times; drop those cases before fitting")
    if (time < 0).any():
        raise ModelError("y holds negative survival times")
    if not event.any():
        raise ModelError(
            f"all {n} training cases are censored: a survival model needs events; "
            "use fewer folds or more data"
        )
    return event, time


def _breslow(lp: np.ndarray, event: np.ndarray, time: np.ndarray) -> tuple[np.ndarray, ...]:
    """Breslow baseline survival at the unique event times (via scikit-survival)."""
    from sksurv.linear_model.coxph import BreslowEstimator

    br = BreslowEstimator().fit(lp, event, time)
    s0 = br.baseline_survival_
    return np.asarray(s0.x, dtype=float), np.asarray(s0.y, dtype=float)


def _median_from_curves(times: np.ndarray, surv: np.ndarray) -> np.ndarray:
    """First time each curve reaches <= 0.5; the last time where it never does."""
    below = surv <= 0.5
    first = np.argmax(below, axis=1)
    out = times[first].astype(float)
    out[~below.any(axis=1)] = times[-1]
    return out


class SurvivalMixin:
    """Curves, predicted days and Harrell's C from ``_survival_matrix(X) -> (times, S)``."""

    def _survival_matrix(self, X: Any) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def predict_survival_function(self, X: Any, return_array: bool = False) -> np.ndarray:
        """Survival curves: StepFunctions, or (n_samples, n_times) array on ``event_times_``."""
        from sksurv.functions import StepFunction

        times, surv = self._survival_matrix(X)
        if return_array:
            return surv
        return np.array([StepFunction(times, s) for s in surv], dtype=object)

    def predict_days(self, X: Any) -> np.ndarray:
        """Predicted survival in days: the median of each survival curve (see module doc)."""
        times, surv = self._survival_matrix(X)
        return _median_from_curves(times, surv)

    def score(self, X: Any, y: Any) -> float:
        """Harrell's concordance index of ``predict(X)`` against ``y``."""
        from sksurv.metrics import concordance_index_censored

        event, time = _check_target(y, len(y))
        return float(concordance_index_censored(event, time, self.predict(X))[0])


class CoxPH(SurvivalMixin, BaseEstimator):
    """Cox proportional hazards via lifelines, with an elastic-net penalty.

    Parameters
    ----------
    penalizer
        Overall penalty strength (lifelines ``penalizer``).
    l1_ratio
        Share of L1 in the penalty (0 = ridge, 1 = lasso; lifelines ``l1_ratio``).
    max_steps
        Newton-Raphson iterations.
    max_retries
        On a convergence failure, refit up to this many times with a 10x larger penalizer.

    Attributes
    ----------
    coef_
        Log hazard ratios per input column.
    penalizer_
        The penalizer actually used (larger than ``penalizer`` after retries).
    event_times_, baseline_survival_
        Breslow baseline survival.
    """

    def __init__(
        self,
        penalizer: float = 0.1,
        l1_ratio: float = 0.0,
        max_steps: int = 200,
        max_retries: int = 4,
    ) -> None:
        self.penalizer = penalizer
        self.l1_ratio = l1_ratio
        self.max_steps = max_steps
        self.max_retries = max_retries

    def fit(self, X: Any, y: Any) -> CoxPH:
        import pandas as pd
        from lifelines import CoxPHFitter
        from lifelines.exceptions import ConvergenceError, ConvergenceWarning

        X = validate_data(self, X, dtype=np.float64)
        event, time = _check_target(y, X.shape[0])
        cols = [f"x{i}" for i in range(X.shape[1])]
        df = pd.DataFrame(X, columns=cols)
        df["_time"], df["_event"] = np.maximum(time, 1e-6), event
        penalizer = float(self.penalizer)
        last_error: Exception | None = None
        for _attempt in range(self.max_retries + 1):
            cph = CoxPHFitter(penalizer=penalizer, l1_ratio=self.l1_ratio)
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    warnings.simplefilter("ignore", RuntimeWarning)
                    cph.fit(
                        df,
                        duration_col="_time",
                        event_col="_event",
                        fit_options={"max_steps": self.max_steps},
                    )
                coef = cph.params_.to_numpy(dtype=float)
                if np.all(np.isfinite(coef)):
                    break
                last_error = ConvergenceError("non-finite coefficients")
            except (ConvergenceError, np.linalg.LinAlgError, ValueError) as exc:
                last_error = exc
            log.warning(
                "Cox fit with penalizer %.3g failed (%s); retrying with %.3g",
                penalizer,
                str(last_error).splitlines()[0][:120],
                penalizer * 10,
            )
            penalizer = penalizer * 10 if penalizer > 0 else 0.01
        else:
            raise ModelError(
                f"Cox model did not converge on {X.shape[0]} cases x {X.shape[1]} features even "
                f"with penalizer {penalizer / 10:.3g} ({last_error}); select fewer features (-k) "
                "or remove collinear ones"
            )
        self.coef_ = coef
        self.penalizer_ = penalizer
        self.event_times_, self.baseline_survival_ = _breslow(X @ coef, event, time)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Linear predictor (log partial hazard): higher = worse."""
        check_is_fitted(self, "coef_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return X @ self.coef_

    def _survival_matrix(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        lp = self.predict(X)
        return self.event_times_, self.baseline_survival_[None, :] ** np.exp(lp)[:, None]

    @property
    def feature_importances_(self) -> np.ndarray:
        """Absolute coefficients (on standardised inputs these are comparable)."""
        return np.abs(self.coef_)


class _XGBBase(SurvivalMixin, BaseEstimator):
    """Shared fitting of the XGBoost survival objectives; the booster is kept as JSON bytes."""

    def _params(self) -> dict[str, Any]:
        return {
            "eta": self.learning_rate,
            "max_depth": self.max_depth,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "min_child_weight": self.min_child_weight,
            "lambda": self.reg_lambda,
            "alpha": self.reg_alpha,
            "seed": self.random_state,
            "nthread": self.n_jobs,
            "verbosity": 0,
        }

    def _train(self, dtrain: Any, params: dict[str, Any]) -> Any:
        import xgboost as xgb

        try:
            booster = xgb.train(params, dtrain, num_boost_round=self.n_estimators)
        except xgb.core.XGBoostError as exc:
            raise ModelError(f"XGBoost ({params['objective']}) failed: {exc}") from exc
        self.booster_json_ = bytes(booster.save_raw(raw_format="json"))
        return booster

    def _booster(self) -> Any:
        import xgboost as xgb

        check_is_fitted(self, "booster_json_")
        cached = getattr(self, "_booster_cache", None)
        if cached is None or cached[0] is not self.booster_json_:
            booster = xgb.Booster(params={"nthread": self.n_jobs})
            booster.load_model(bytearray(self.booster_json_))
            self._booster_cache = (self.booster_json_, booster)
        return self._booster_cache[1]

    def _margin(self, X: Any) -> np.ndarray:
        import xgboost as xgb

        X = validate_data(self, X, dtype=np.float64, reset=False, ensure_all_finite="allow-nan")
        return self._booster().predict(xgb.DMatrix(X), output_margin=True).astype(float)

    @property
    def feature_importances_(self) -> np.ndarray:
        """Total gain per input column (0 for unused columns)."""
        scores = self._booster().get_score(importance_type="total_gain")
        out = np.zeros(self.n_features_in_)
        for key, value in scores.items():
            out[int(key[1:])] = value  # keys are f0, f1, ...
        return out

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_booster_cache", None)
        return state


class XGBCox(_XGBBase):
    """XGBoost ``survival:cox`` with a Breslow baseline hazard (so it also gives curves).

    Parameters mirror XGBoost's (``n_estimators`` boosting rounds, ``learning_rate`` = eta, ...).
    Times of 0 days are set to 0.5 days: XGBoost's Cox label encodes censoring by the sign.
    """

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        max_depth: int = 2,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        reg_alpha: float = 0.0,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any) -> XGBCox:
        import xgboost as xgb

        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        event, time = _check_target(y, X.shape[0])
        t = np.where(time > 0, time, 0.5)
        dtrain = xgb.DMatrix(X, label=np.where(event, t, -t))
        params = {**self._params(), "objective": "survival:cox", "eval_metric": "cox-nloglik"}
        booster = self._train(dtrain, params)
        lp = booster.predict(dtrain, output_margin=True).astype(float)
        self.event_times_, self.baseline_survival_ = _breslow(lp, event, time)
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Log hazard ratio (margin): higher = worse."""
        return self._margin(X)

    def _survival_matrix(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        lp = self.predict(X)
        return self.event_times_, self.baseline_survival_[None, :] ** np.exp(lp)[:, None]


_AFT_MEDIAN_Z = {"normal": 0.0, "logistic": 0.0, "extreme": float(np.log(np.log(2.0)))}


class XGBAFT(_XGBBase):
    """XGBoost ``survival:aft``: log T = f(x) + sigma * Z, censored cases as ``[time, inf)``.

    Parameters
    ----------
    distribution
        ``normal``, ``logistic`` or ``extreme`` (XGBoost's ``aft_loss_distribution``).
    sigma
        Scale of the noise distribution (``aft_loss_distribution_scale``).
    Other parameters mirror XGBoost's.
    """

    def __init__(
        self,
        distribution: str = "normal",
        sigma: float = 1.0,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        max_depth: int = 2,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        reg_alpha: float = 0.0,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.distribution = distribution
        self.sigma = sigma
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.reg_alpha = reg_alpha
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any) -> XGBAFT:
        import xgboost as xgb

        if self.distribution not in _AFT_MEDIAN_Z:
            raise ConfigError(
                f"AFT distribution {self.distribution!r}: use one of {sorted(_AFT_MEDIAN_Z)}"
            )
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        event, time = _check_target(y, X.shape[0])
        t = np.where(time > 0, time, 0.5)
        dtrain = xgb.DMatrix(X)
        dtrain.set_float_info("label_lower_bound", t)
        dtrain.set_float_info("label_upper_bound", np.where(event, t, np.inf))
        params = {
            **self._params(),
            "objective": "survival:aft",
            "eval_metric": "aft-nloglik",
            "aft_loss_distribution": self.distribution,
            "aft_loss_distribution_scale": self.sigma,
        }
        self._train(dtrain, params)
        self.event_times_ = np.unique(time[event])
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Risk = minus the predicted log survival time: higher = worse."""
        return -self._margin(X)

    def predict_days(self, X: Any) -> np.ndarray:
        """Median of the predicted survival-time distribution, in days."""
        return np.exp(self._margin(X) + self.sigma * _AFT_MEDIAN_Z[self.distribution])

    def _survival_matrix(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        from scipy import stats

        dist = {"normal": stats.norm, "logistic": stats.logistic, "extreme": stats.gumbel_l}[
            self.distribution
        ]
        mu = self._margin(X)
        z = (np.log(self.event_times_)[None, :] - mu[:, None]) / self.sigma
        return self.event_times_, dist.sf(z)


class RSF(RandomSurvivalForest, SurvivalMixin):
    """scikit-survival's RandomSurvivalForest with ``predict_days`` (median of the curve)."""

    def _survival_matrix(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        surv = RandomSurvivalForest.predict_survival_function(self, X, return_array=True)
        return np.asarray(self.unique_times_, dtype=float), surv


def make_estimator(name: str, random_state: int = 0, n_jobs: int = 1) -> BaseEstimator:
    """A default-configured survival estimator by name (see :data:`MODEL_NAMES`)."""
    if name == "cox":
        return CoxPH(penalizer=0.1, l1_ratio=0.5)
    if name == "xgb-cox":
        return XGBCox(random_state=random_state, n_jobs=n_jobs)
    if name.startswith("xgb-aft"):
        dist = name.removeprefix("xgb-aft").lstrip("-") or "normal"
        return XGBAFT(distribution=dist, random_state=random_state, n_jobs=n_jobs)
    if name == "rsf":
        return RSF(
            n_estimators=200,
            min_samples_leaf=5,
            max_features="sqrt",
            random_state=random_state,
            n_jobs=n_jobs,
        )
    raise ConfigError(f"unknown survival model {name!r}; choose from {', '.join(MODEL_NAMES)}")


def make_model(
    name: str,
    *,
    k: int | None = 20,
    forced: Sequence[str] = (),
    corr_threshold: float | None = 0.95,
    random_state: int = 0,
    n_jobs: int = 1,
    selection: str = "univariate",
) -> Pipeline:
    """Preprocessing (fitted in-fold) + a survival estimator, as one Pipeline.

    Parameters
    ----------
    name
        One of :data:`MODEL_NAMES`.
    k
        Non-forced features kept by the in-fold selection (``None``: all, no selection).
    forced
        Clinical covariates kept whatever the filters say (e.g. ``["age"]``).
    corr_threshold
        |r| above which later correlated features are dropped (``None``: no filter).
    selection
        ``univariate``: the k best univariate Cox score tests
        (:func:`~radsurv.models.preprocessing.univariate_cox_score`); ``penalised``: the first k
        columns to enter the elastic-net Cox path, adjusted for the forced covariates
        (:class:`~radsurv.models.survival_selection.CoxnetSelector`).
    """
    from radsurv.models.preprocessing import make_preprocessor, univariate_cox_score
    from radsurv.models.survival_selection import SELECTION_METHODS, CoxnetSelector

    if selection not in SELECTION_METHODS:
        raise ConfigError(f"--selection {selection!r}: choose from {', '.join(SELECTION_METHODS)}")
    penalised = selection == "penalised" and k is not None
    prep = make_preprocessor(
        k=None if penalised else k,
        scorer=univariate_cox_score,
        forced=forced,
        corr_threshold=corr_threshold,
    )
    if penalised:
        steps = [*prep.steps, ("select", CoxnetSelector(k=k, forced=list(forced)))]
        prep = Pipeline(steps).set_output(transform="pandas")
    return Pipeline(
        [("prep", prep), ("model", make_estimator(name, random_state=random_state, n_jobs=n_jobs))]
    )


def predict_days(model: Any, X: Any) -> np.ndarray:
    """``predict_days`` of an estimator or of a Pipeline ending in one."""
    if isinstance(model, Pipeline):
        Xt = X
        for _, step in model.steps[:-1]:
            Xt = step.transform(Xt)
        return model.steps[-1][1].predict_days(Xt)
    return model.predict_days(X)


def selected_features(model: Pipeline) -> list[str]:
    """Column names that reach the final estimator of a fitted pipeline."""
    names = model[:-1].get_feature_names_out()
    return [str(n) for n in names]


def feature_importance(model: Pipeline) -> dict[str, float]:
    """Final-model coefficients (Cox) or importances (XGBoost gain, RSF: none) by feature name."""
    est = model.steps[-1][1]
    names = selected_features(model)
    if isinstance(est, CoxPH):
        values = est.coef_
    elif isinstance(est, _XGBBase):
        values = est.feature_importances_
    else:
        return {}
    return {n: float(v) for n, v in zip(names, values, strict=True)}


def save_model(model: Any, path: str | Path) -> Path:
    """Save a fitted model/pipeline (skops; :func:`radsurv.models.io.save_estimator`)."""
    from radsurv.models.io import save_estimator

    return save_estimator(model, path)


def load_model(path: str | Path) -> Any:
    """Load a model saved by :func:`save_model` (:func:`radsurv.models.io.load_estimator`).

    Raises
    ------
    ModelError
        When the file references a type outside :data:`radsurv.models.io.TRUSTED_PREFIXES`.
    """
    from radsurv.models.io import load_estimator

    return load_estimator(path)
