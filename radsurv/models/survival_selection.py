"""Penalised in-fold feature selection for survival: the elastic-net Cox path (Coxnet).

:class:`CoxnetSelector` is the alternative to univariate Cox k-best selection
(:class:`radsurv.models.preprocessing.SelectKBestScored` with
:func:`~radsurv.models.preprocessing.univariate_cox_score`). It fits scikit-survival's
:class:`~sksurv.linear_model.CoxnetSurvivalAnalysis` regularisation path on the training fold
and keeps the ``k`` columns that enter the path first, i.e. the ones the penalised multivariable
model needs most, with forced covariates unpenalised (so selection is *adjusted* for them,
which univariate scores are not). Put it after imputation and scaling (it needs complete,
comparable columns); :func:`radsurv.models.survival.make_model` does with
``selection="penalised"``.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.utils.validation import validate_data

from radsurv.clinical import event_and_time
from radsurv.errors import ConfigError, ModelError
from radsurv.models.preprocessing import _forced_mask, _SupportSelector

log = logging.getLogger(__name__)

#: Values of ``selection`` accepted by :func:`radsurv.models.survival.make_model`.
SELECTION_METHODS: tuple[str, ...] = ("univariate", "penalised")


class CoxnetSelector(_SupportSelector):
    """Keep the forced columns plus the first ``k`` columns to enter the elastic-net Cox path.

    Parameters
    ----------
    k
        Number of non-forced columns to keep (all that ever enter the path when ``None``).
        Fewer are kept when fewer enter the path down to the smallest penalty.
    l1_ratio
        Elastic-net mixing of the path (1 = lasso). Values near 1 give sparse, ordered entry;
        the default 0.9 keeps some stability with correlated radiomic features.
    n_alphas
        Penalties on the path (log-spaced from the largest, where only forced columns are
        non-zero, down to ``alpha_min_ratio`` times it).
    alpha_min_ratio
        Smallest penalty relative to the largest. On a numerical failure of the path the fit is
        retried with a 10x larger ratio (shorter path); see ``method_``.
    forced
        Column names or positions that are always kept and left unpenalised (penalty factor 0).

    Attributes
    ----------
    entry_alpha_
        Per column, the largest penalty at which its coefficient is non-zero (0 = never enters;
        ``inf`` for forced columns).
    method_
        ``coxnet``; ``coxnet, forced columns penalised`` when unpenalised forced covariates made
        the path fail (they diverge in small folds, e.g. a rare class without events);
        ``univariate fallback`` when every path failed (logged).
    support_
        Boolean mask of the kept columns.
    """

    _allow_nan = False  # Coxnet needs complete data: impute first

    def __init__(
        self,
        k: int | None = 20,
        l1_ratio: float = 0.9,
        n_alphas: int = 100,
        alpha_min_ratio: float = 0.01,
        forced: Sequence[str | int] = (),
    ) -> None:
        self.k = k
        self.l1_ratio = l1_ratio
        self.n_alphas = n_alphas
        self.alpha_min_ratio = alpha_min_ratio
        self.forced = forced

    def fit(self, X: Any, y: Any) -> CoxnetSelector:
        X = validate_data(self, X, dtype=np.float64)
        if self.k is not None and self.k < 0:
            raise ConfigError(f"k must be >= 0, got {self.k}")
        if not 0.0 < self.l1_ratio <= 1.0:
            raise ConfigError(f"penalised selection needs 0 < l1_ratio <= 1, got {self.l1_ratio}")
        event, time = event_and_time(y)
        if not event.any():
            raise ModelError(
                f"penalised selection: all {len(event)} training cases are censored; "
                "use fewer folds or more data"
            )
        forced = _forced_mask(self, self.forced, X.shape[1])
        candidates = np.flatnonzero(~forced)
        k = len(candidates) if self.k is None else min(self.k, len(candidates))
        entry = np.zeros(X.shape[1])
        last = np.zeros(X.shape[1])
        self.method_ = "none (k = 0)"
        if k > 0:
            coef, alphas = self._path(X, y, forced)
            nonzero = np.abs(coef) > 0
            entered = nonzero.any(axis=1)
            # alphas decrease along the path: a row's first non-zero is its entry penalty
            first = np.argmax(nonzero, axis=1)
            entry[entered] = alphas[first[entered]]
            last = np.abs(coef[:, -1])
        entry[forced] = np.inf
        # earliest entry first; ties (e.g. entering together) by |coefficient| at the path end
        order = np.lexsort((-last[candidates], -entry[candidates]))
        chosen = [candidates[i] for i in order[:k] if entry[candidates[i]] > 0]
        if len(chosen) < k:
            log.debug("penalised selection: only %d of k=%d columns entered", len(chosen), k)
        keep = forced.copy()
        keep[chosen] = True
        self.entry_alpha_ = entry
        self.support_ = keep
        return self

    def _path(self, X: np.ndarray, y: Any, forced: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Coefficients (n_features, n_alphas) and penalties of the Coxnet path.

        Unpenalised forced covariates can diverge in a small fold (e.g. a rare resection class
        without events); then the forced columns are penalised like the others. Each setting is
        tried with ``alpha_min_ratio`` and 10x it. When every try fails the columns are ranked
        by the univariate Cox score instead (``method_`` says which happened).
        """
        from sksurv.linear_model import CoxnetSurvivalAnalysis

        ratio = float(self.alpha_min_ratio)
        tries = [
            (forced_pf, r, label)
            for forced_pf, label in ((0.0, "coxnet"), (1.0, "coxnet, forced columns penalised"))
            if forced_pf == 0.0 or forced.any()
            for r in (ratio, min(10 * ratio, 0.5))
        ]
        errors = []
        for forced_pf, r, label in tries:
            net = CoxnetSurvivalAnalysis(
                l1_ratio=self.l1_ratio,
                n_alphas=self.n_alphas,
                alpha_min_ratio=r,
                penalty_factor=np.where(forced, forced_pf, 1.0),
                max_iter=100_000,
            )
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # convergence warnings at tiny penalties
                    net.fit(X, y)
            except (ArithmeticError, ValueError) as exc:
                errors.append(f"{label}, alpha_min_ratio {r:g}: {str(exc).splitlines()[0][:100]}")
                continue
            if errors:
                log.debug("Coxnet path needed a fallback (%s) after: %s", label, "; ".join(errors))
            self.method_ = label
            return np.asarray(net.coef_, dtype=float), np.asarray(net.alphas_, dtype=float)
        from radsurv.models.preprocessing import univariate_cox_score

        log.warning(
            "penalised (Coxnet) selection failed on %d cases x %d columns (%s); ranking by the "
            "univariate Cox score instead",
            X.shape[0],
            X.shape[1],
            "; ".join(errors),
        )
        self.method_ = "univariate fallback"
        # one pseudo-path step: every column with a finite score 'enters', ordered by score
        score = np.nan_to_num(univariate_cox_score(X, y), nan=0.0)
        return score[:, None], np.array([1.0])
