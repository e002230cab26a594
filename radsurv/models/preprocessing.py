"""In-fold feature preprocessing: scikit-learn transformers for survival and classification.

Every step is fitted on the training fold only (put them in a :class:`~sklearn.pipeline.Pipeline`
in front of the model). The steps are generic: the target ``y`` is only used by
:class:`SelectKBestScored`, whose scorer is pluggable (:func:`univariate_cox_score` for a
survival target, e.g. :func:`sklearn.feature_selection.f_classif` for a binary label).

Forced-in covariates (e.g. ``age``, ``resection_GTR``) are given by column name (when the input
is a DataFrame) or by integer position; every filter keeps them whatever their statistics.

Example
-------
>>> from radsurv.models.preprocessing import make_preprocessor, univariate_cox_score
>>> prep = make_preprocessor(k=20, scorer=univariate_cox_score, forced=["age"])
>>> # Pipeline([("prep", prep), ("model", CoxPH())]).fit(X_train_df, y_train)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted, validate_data

from radsurv.clinical import event_and_time
from radsurv.errors import ConfigError

log = logging.getLogger(__name__)

Scorer = Callable[[np.ndarray, Any], Any]


def _forced_mask(est: BaseEstimator, forced: Sequence[str | int], n_features: int) -> np.ndarray:
    """Boolean mask of the forced-in columns, resolved by name or position."""
    mask = np.zeros(n_features, dtype=bool)
    names = getattr(est, "feature_names_in_", None)
    for item in forced or ():
        if isinstance(item, (int, np.integer)):
            if not 0 <= int(item) < n_features:
                raise ConfigError(
                    f"forced column index {item} is out of range for {n_features} features"
                )
            mask[int(item)] = True
            continue
        if names is None:
            raise ConfigError(
                f"forced column {item!r} is given by name but the input has no column names; "
                "pass a DataFrame or give positions"
            )
        hits = np.flatnonzero(np.asarray(names) == item)
        if hits.size == 0:
            raise ConfigError(
                f"forced column {item!r} is not among the {n_features} input columns; "
                "check the covariate names"
            )
        mask[hits] = True
    return mask


class _SupportSelector(TransformerMixin, BaseEstimator):
    """Base of the column filters: subclasses set ``support_`` (bool mask) in ``fit``."""

    _allow_nan = True

    def transform(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "support_")
        finite = "allow-nan" if self._allow_nan else True
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite=finite)
        return X[:, self.support_]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "support_")
        if input_features is None:
            input_features = getattr(
                self, "feature_names_in_", np.array([f"x{i}" for i in range(self.n_features_in_)])
            )
        return np.asarray(input_features, dtype=object)[self.support_]

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self._allow_nan
        return tags


class NearConstantFilter(_SupportSelector):
    """Drop near-constant columns.

    A column is dropped when its standard deviation is below ``min_std`` or when its most
    frequent value covers at least ``max_mode_fraction`` of the rows (e.g. a shape feature that
    is 0 for 97 % of cases carries almost no information and destabilises Cox fits).

    Parameters
    ----------
    min_std
        Columns with a (NaN-ignoring) standard deviation below this are dropped.
    max_mode_fraction
        Columns whose most frequent value has at least this share of the rows are dropped.
        Set to 1.0 to disable.
    forced
        Column names or positions that are always kept.
    """

    def __init__(
        self,
        min_std: float = 1e-8,
        max_mode_fraction: float = 0.95,
        forced: Sequence[str | int] = (),
    ) -> None:
        self.min_std = min_std
        self.max_mode_fraction = max_mode_fraction
        self.forced = forced

    def fit(self, X: Any, y: Any = None) -> NearConstantFilter:
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        with np.errstate(invalid="ignore"), _quiet_nan_warnings():
            std = np.nanstd(X, axis=0)
        std = np.nan_to_num(std, nan=0.0)
        keep = std >= self.min_std
        if self.max_mode_fraction < 1.0:
            n = X.shape[0]
            for j in np.flatnonzero(keep):
                col = X[:, j]
                col = col[~np.isnan(col)]
                if col.size == 0:
                    keep[j] = False
                    continue
                _, counts = np.unique(col, return_counts=True)
                if counts.max() >= self.max_mode_fraction * n:
                    keep[j] = False
        keep |= _forced_mask(self, self.forced, X.shape[1])
        self.support_ = keep
        log.debug("near-constant filter keeps %d of %d columns", keep.sum(), keep.size)
        return self


class CorrelationFilter(_SupportSelector):
    """Drop columns highly correlated with an earlier kept column (greedy, |Pearson r|).

    Columns are visited forced ones first, then in input order; a column is kept when its
    absolute correlation with every kept column is below ``threshold``. NaNs are ignored by
    treating them as the column mean (impute before this step for best results).

    Parameters
    ----------
    threshold
        Absolute Pearson correlation at or above which a later column is dropped.
    forced
        Column names or positions that are always kept (and visited first).
    """

    def __init__(self, threshold: float = 0.95, forced: Sequence[str | int] = ()) -> None:
        self.threshold = threshold
        self.forced = forced

    def fit(self, X: Any, y: Any = None) -> CorrelationFilter:
        X = validate_data(self, X, dtype=np.float64, ensure_all_finite="allow-nan")
        if not 0.0 < self.threshold <= 1.0:
            raise ConfigError(f"correlation threshold must be in (0, 1], got {self.threshold}")
        n_features = X.shape[1]
        forced = _forced_mask(self, self.forced, n_features)
        with _quiet_nan_warnings():
            mean = np.nanmean(X, axis=0)
        Z = np.where(np.isnan(X), mean, X) - np.nan_to_num(mean)
        norm = np.linalg.norm(Z, axis=0)
        ok = norm > 0
        Z[:, ok] /= norm[ok]
        corr = np.abs(Z.T @ Z)  # cosine of centred columns = Pearson r
        keep = np.zeros(n_features, dtype=bool)
        order = np.concatenate([np.flatnonzero(forced), np.flatnonzero(~forced)])
        for j in order:
            if forced[j] or not ok[j] or not np.any(corr[j, keep] >= self.threshold):
                keep[j] = True
        self.support_ = keep
        log.debug("correlation filter keeps %d of %d columns", keep.sum(), n_features)
        return self


class SelectKBestScored(_SupportSelector):
    """Keep the forced columns plus the ``k`` best other columns by a pluggable scorer.

    Parameters
    ----------
    k
        Number of non-forced columns to keep (all when ``None`` or larger than available).
    scorer
        ``scorer(X, y)`` returning one score per column (higher = more relevant), or a tuple
        whose first element is that (so :func:`sklearn.feature_selection.f_classif` works).
        NaN scores rank last. Default :func:`univariate_cox_score` (survival target).
    forced
        Column names or positions that are always kept and do not count towards ``k``.

    Attributes
    ----------
    scores_
        The scorer's scores per input column.
    """

    def __init__(
        self,
        k: int | None = 20,
        scorer: Scorer | None = None,
        forced: Sequence[str | int] = (),
    ) -> None:
        self.k = k
        self.scorer = scorer
        self.forced = forced

    _allow_nan = False  # scorers such as f_classif need complete data: impute first

    def fit(self, X: Any, y: Any) -> SelectKBestScored:
        X = validate_data(self, X, dtype=np.float64)
        if self.k is not None and self.k < 0:
            raise ConfigError(f"k must be >= 0, got {self.k}")
        forced = _forced_mask(self, self.forced, X.shape[1])
        scorer = self.scorer if self.scorer is not None else univariate_cox_score
        scores = scorer(X, y)
        if isinstance(scores, tuple):
            scores = scores[0]
        scores = np.asarray(scores, dtype=float).reshape(-1)
        if scores.shape[0] != X.shape[1]:
            raise ConfigError(f"scorer returned {scores.shape[0]} scores for {X.shape[1]} columns")
        self.scores_ = scores
        candidates = np.flatnonzero(~forced)
        k = len(candidates) if self.k is None else min(self.k, len(candidates))
        rank_scores = np.nan_to_num(scores[candidates], nan=-np.inf)
        ranked = candidates[np.argsort(-rank_scores, kind="stable")]
        keep = forced.copy()
        keep[ranked[:k]] = True
        self.support_ = keep
        return self


class _quiet_nan_warnings:
    """Silence numpy's 'mean of empty slice' warnings for all-NaN columns (handled by callers)."""

    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def univariate_cox_score(X: np.ndarray, y: Any) -> np.ndarray:
    """Per-column Cox score-test statistic (chi-square, 1 df) for a survival target.

    This is the score (log-rank) test of a univariate Cox model at beta = 0, computed for all
    columns at once (Breslow risk sets: at risk = time >= event time). It ranks features exactly
    like fitting one Cox model per column would rank their score tests, at the cost of one
    matrix product instead of thousands of fits.

    Parameters
    ----------
    X
        (n_samples, n_features) array; NaNs are replaced by the column mean.
    y
        scikit-survival structured array (event field first, time second).

    Returns
    -------
    numpy.ndarray
        One statistic per column (NaN for columns without variance).
    """
    event, time = event_and_time(y)
    X = np.asarray(X, dtype=float)
    with _quiet_nan_warnings():
        mean = np.nanmean(X, axis=0)
    X = np.where(np.isnan(X), np.nan_to_num(mean), X)
    order = np.argsort(-time, kind="stable")  # descending time: risk sets are prefixes
    Xs, ev, ts = X[order], event[order], time[order]
    # cumulative sums over the risk set, then take the value at the last row of each tied time
    s0 = np.arange(1, len(ts) + 1, dtype=float)
    s1 = np.cumsum(Xs, axis=0)
    s2 = np.cumsum(Xs * Xs, axis=0)
    # idx[i] = last row sharing time ts[i]: ties are all in each other's risk sets
    idx = _last_index_of_ties(ts)
    ev_rows = np.flatnonzero(ev)
    if ev_rows.size == 0:
        return np.full(X.shape[1], np.nan)
    r = idx[ev_rows]
    m1 = s1[r] / s0[r, None]
    m2 = s2[r] / s0[r, None]
    u = (Xs[ev_rows] - m1).sum(axis=0)
    info = (m2 - m1 * m1).sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        stat = np.where(info > 1e-12, u * u / info, np.nan)
    return stat


def _last_index_of_ties(sorted_desc: np.ndarray) -> np.ndarray:
    """For times sorted descending, the index of the last row with the same time as each row."""
    n = len(sorted_desc)
    out = np.empty(n, dtype=int)
    last = n - 1
    for i in range(n - 1, -1, -1):
        if i < n - 1 and sorted_desc[i] != sorted_desc[i + 1]:
            last = i
        out[i] = last
    return out


def make_preprocessor(
    *,
    impute: str = "median",
    near_constant: bool = True,
    scale: bool = True,
    corr_threshold: float | None = 0.95,
    k: int | None = None,
    scorer: Scorer | None = None,
    forced: Sequence[str | int] = (),
) -> Pipeline:
    """Build the standard in-fold preprocessing pipeline.

    Steps: median imputation (all-NaN columns become 0 and are then dropped as constant) ->
    near-constant removal -> standard scaling -> correlation filter -> k-best selection.
    The pipeline outputs pandas DataFrames so column names reach the model (top features).

    Parameters
    ----------
    impute
        :class:`~sklearn.impute.SimpleImputer` strategy (``median``, ``mean``, ...).
    near_constant, scale
        Whether to include those steps.
    corr_threshold
        |r| threshold of :class:`CorrelationFilter`; ``None`` skips the step.
    k
        Number of best non-forced columns to keep; ``None`` skips selection.
    scorer
        Scorer for :class:`SelectKBestScored` (default :func:`univariate_cox_score`).
    forced
        Forced-in covariates, kept by every filter.

    Returns
    -------
    sklearn.pipeline.Pipeline
    """
    forced = list(forced)
    steps: list[tuple[str, Any]] = [
        ("impute", SimpleImputer(strategy=impute, keep_empty_features=True))
    ]
    if near_constant:
        steps.append(("near_constant", NearConstantFilter(forced=forced)))
    if scale:
        steps.append(("scale", StandardScaler()))
    if corr_threshold is not None:
        steps.append(("correlation", CorrelationFilter(threshold=corr_threshold, forced=forced)))
    if k is not None:
        steps.append(("select", SelectKBestScored(k=k, scorer=scorer, forced=forced)))
    return Pipeline(steps).set_output(transform="pandas")
