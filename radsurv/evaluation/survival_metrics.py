"""Survival metrics per fold and the cross-validation runner for survival models.

Metric implementations are scikit-survival's, scikit-learn's and scipy's; this module only
decides where each is defined and records why it is not:

- ``harrell_c``: :func:`sksurv.metrics.concordance_index_censored`.
- ``uno_c``: :func:`sksurv.metrics.concordance_index_ipcw` (IPCW, tau = last training time).
- ``td_auc_6m/12m/18m/24m``: :func:`sksurv.metrics.cumulative_dynamic_auc` at 182.6, 365.25,
  547.9, 730.5 days; ``td_auc`` is their mean over the defined ones.
- ``ibs``: :func:`sksurv.metrics.integrated_brier_score` on a grid of 15 times between the 10th
  and 80th percentile of the fold's test times.
- BraTS challenge metrics on predicted days, over the test cases with an observed death (as in
  the challenge): ``brats_accuracy`` (3 classes: < 300, 300-450, > 450 days), ``mse``,
  ``median_se``, ``std_se``, ``spearman_r``.

For IPCW-based metrics, test times beyond the training fold's last observed time are censored
at that time (the censoring distribution is unknown past it). A metric that is still undefined
in a fold (e.g. 24 months beyond the fold's follow-up, no events in the test fold) is NaN with a
reason; summaries count those folds (``n_undefined``).
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from radsurv.clinical import event_and_time
from radsurv.errors import ModelError
from radsurv.evaluation.cv import Fold, run_folds
from radsurv.evaluation.report import summarise_metric

log = logging.getLogger(__name__)

DAYS_PER_MONTH = 365.25 / 12
TD_AUC_MONTHS: tuple[int, ...] = (6, 12, 18, 24)
BRATS_BINS: tuple[float, float] = (300.0, 450.0)
#: Grid (days) of the time-dependent AUC curve in the report.
AUC_CURVE_DAYS: np.ndarray = np.arange(90.0, 1095.0 + 1, 45.0)
CALIBRATION_DAYS = 365.25

METRIC_NAMES: tuple[str, ...] = (
    "harrell_c",
    "uno_c",
    "td_auc",
    *(f"td_auc_{m}m" for m in TD_AUC_MONTHS),
    "ibs",
    "brats_accuracy",
    "mse",
    "median_se",
    "std_se",
    "spearman_r",
)


def _truncate(y_test: np.ndarray, y_train: np.ndarray) -> np.ndarray:
    """Censor test times beyond the last training time at that time (IPCW needs it)."""
    from sksurv.util import Surv

    ev, t = event_and_time(y_test)
    t_max = event_and_time(y_train)[1].max()
    beyond = t >= t_max
    if not beyond.any():
        return y_test
    return Surv.from_arrays(ev & ~beyond, np.where(beyond, t_max - 1e-6, t))


def survival_at(model: Any, X: Any, times: np.ndarray) -> np.ndarray:
    """Survival probabilities (n_samples, len(times)) of a fitted model or pipeline.

    Step functions are evaluated right-continuously; before the first event time S = 1 and after
    the last one S keeps its last value.
    """
    from sklearn.pipeline import Pipeline

    est, Xt = model, X
    if isinstance(model, Pipeline):
        est = model.steps[-1][1]
        Xt = model[:-1].transform(X)
    grid, surv = est._survival_matrix(Xt)
    idx = np.searchsorted(grid, np.asarray(times, dtype=float), side="right") - 1
    out = np.ones((surv.shape[0], len(times)))
    ok = idx >= 0
    out[:, ok] = surv[:, idx[ok]]
    return out


def _try(name: str, reasons: dict[str, str], func: Any) -> float:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            value = float(func())
    except (ValueError, ZeroDivisionError, IndexError, FloatingPointError) as exc:
        reasons[name] = str(exc).splitlines()[0][:200]
        return math.nan
    if not math.isfinite(value):
        reasons[name] = "not finite"
        return math.nan
    return value


def brats_class(days: np.ndarray) -> np.ndarray:
    """BraTS survival class per case: 0 short (< 300 d), 1 mid (300-450 d), 2 long (> 450 d)."""
    days = np.asarray(days, dtype=float)
    return np.where(days < BRATS_BINS[0], 0, np.where(days <= BRATS_BINS[1], 1, 2))


def fold_metrics(
    y_train: np.ndarray,
    y_test: np.ndarray,
    risk: np.ndarray,
    days: np.ndarray,
    surv_fn: Any,
) -> tuple[dict[str, float], dict[str, str]]:
    """All survival metrics of one test fold.

    Parameters
    ----------
    y_train, y_test
        Structured survival arrays of the training and test cases.
    risk
        Risk scores of the test cases (higher = worse).
    days
        Predicted survival days of the test cases.
    surv_fn
        ``surv_fn(times) -> (n_test, len(times))`` survival probabilities, or None (no IBS).

    Returns
    -------
    (dict, dict)
        Metric values (NaN where undefined) and, per undefined metric, the reason.
    """
    from scipy.stats import spearmanr
    from sklearn.metrics import accuracy_score, mean_squared_error
    from sksurv.metrics import (
        concordance_index_censored,
        concordance_index_ipcw,
        cumulative_dynamic_auc,
        integrated_brier_score,
    )

    reasons: dict[str, str] = {}
    ev, t = event_and_time(y_test)
    risk = np.asarray(risk, dtype=float)
    out: dict[str, float] = {}
    out["harrell_c"] = _try(
        "harrell_c", reasons, lambda: concordance_index_censored(ev, t, risk)[0]
    )
    y_tr = _truncate(y_test, y_train)
    t_train_max = event_and_time(y_train)[1].max()
    out["uno_c"] = _try(
        "uno_c",
        reasons,
        lambda: concordance_index_ipcw(y_train, y_tr, risk, tau=t_train_max - 1e-6)[0],
    )
    aucs = []
    for months in TD_AUC_MONTHS:
        key = f"td_auc_{months}m"
        tt = months * DAYS_PER_MONTH
        out[key] = _try(
            key, reasons, lambda tt=tt: cumulative_dynamic_auc(y_train, y_tr, risk, [tt])[0][0]
        )
        aucs.append(out[key])
    ok = [a for a in aucs if not math.isnan(a)]
    out["td_auc"] = float(np.mean(ok)) if ok else math.nan
    if not ok:
        reasons["td_auc"] = "no evaluation time inside the fold's follow-up"
    if surv_fn is not None:
        _, t_tr = event_and_time(y_tr)
        lo, hi = np.percentile(t_tr, [10, 80])
        grid = np.unique(np.linspace(lo, hi, 15))
        out["ibs"] = _try(
            "ibs", reasons, lambda: integrated_brier_score(y_train, y_tr, surv_fn(grid), grid)
        )
    else:
        out["ibs"] = math.nan
        reasons["ibs"] = "model gives no survival curves"
    # BraTS challenge metrics: cases with an observed death only
    days = np.asarray(days, dtype=float)
    d_true, d_pred = t[ev], days[ev]
    if d_true.size == 0:
        for key in ("brats_accuracy", "mse", "median_se", "std_se", "spearman_r"):
            out[key] = math.nan
            reasons[key] = "no observed deaths in the test fold"
        return out, reasons
    se = (d_true - d_pred) ** 2
    out["brats_accuracy"] = float(accuracy_score(brats_class(d_true), brats_class(d_pred)))
    out["mse"] = float(mean_squared_error(d_true, d_pred))
    out["median_se"] = float(np.median(se))
    out["std_se"] = float(np.std(se))
    out["spearman_r"] = _try("spearman_r", reasons, lambda: spearmanr(d_true, d_pred)[0])
    return out, reasons


@dataclass
class FoldResult:
    """Everything one fold produced for one model."""

    model: str
    repeat: int
    fold: int
    test: np.ndarray
    risk: np.ndarray
    days: np.ndarray
    train_median_risk: float
    s_calibration: np.ndarray
    auc_curve: np.ndarray
    metrics: dict[str, float]
    undefined: dict[str, str]
    error: str | None = None
    params: dict[str, Any] | None = None  # hyper-parameters chosen by the inner CV (nested)


def _fit_fold(fold: Fold, models: Mapping[str, Any], X: pd.DataFrame, y: np.ndarray) -> list:
    """Fit every model on the fold's training part and evaluate it on its test part."""
    from sklearn.base import clone
    from sksurv.metrics import cumulative_dynamic_auc

    from radsurv.models.survival import predict_days
    from radsurv.models.survival_tuning import unwrap_search

    results = []
    y_train, y_test = y[fold.train], y[fold.test]
    for name, template in models.items():
        cols = getattr(template, "radsurv_columns", None)
        Xm = X if cols is None else X[cols]
        X_train, X_test = Xm.iloc[fold.train], Xm.iloc[fold.test]
        nan = np.full(len(fold.test), np.nan)
        try:
            # a nested search is refitted on the whole training fold; evaluate its best pipeline
            model, params = unwrap_search(clone(template).fit(X_train, y_train))
            risk = np.asarray(model.predict(X_test), dtype=float)
            days = np.asarray(predict_days(model, X_test), dtype=float)
            train_risk = np.asarray(model.predict(X_train), dtype=float)
        except Exception as exc:  # one failing model/fold is recorded, the others go on
            log.warning("model %s, repeat %d fold %d failed: %s", name, fold.repeat, fold.fold, exc)
            results.append(
                FoldResult(
                    name,
                    fold.repeat,
                    fold.fold,
                    fold.test,
                    nan,
                    nan,
                    math.nan,
                    nan,
                    np.full(len(AUC_CURVE_DAYS), np.nan),
                    dict.fromkeys(METRIC_NAMES, math.nan),
                    {},
                    error=f"{type(exc).__name__}: {exc}",
                )
            )
            continue

        def surv_fn(times: np.ndarray, model: Any = model, X_test: Any = X_test) -> np.ndarray:
            return survival_at(model, X_test, times)

        metrics, undefined = fold_metrics(y_train, y_test, risk, days, surv_fn)
        y_tr = _truncate(y_test, y_train)
        t_test = event_and_time(y_tr)[1]
        curve = np.full(len(AUC_CURVE_DAYS), np.nan)
        inside = (t_test.min() <= AUC_CURVE_DAYS) & (t_test.max() > AUC_CURVE_DAYS)
        for i in np.flatnonzero(inside):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    curve[i] = cumulative_dynamic_auc(y_train, y_tr, risk, [AUC_CURVE_DAYS[i]])[0][
                        0
                    ]
            except (ValueError, ZeroDivisionError):
                pass
        results.append(
            FoldResult(
                model=name,
                repeat=fold.repeat,
                fold=fold.fold,
                test=fold.test,
                risk=risk,
                days=days,
                train_median_risk=float(np.median(train_risk)),
                s_calibration=surv_fn(np.array([CALIBRATION_DAYS]))[:, 0],
                auc_curve=curve,
                metrics=metrics,
                undefined=undefined,
                params=params,
            )
        )
    return results


@dataclass
class SurvivalCVResult:
    """Fold results of all models plus per-metric summaries."""

    folds: list[FoldResult]
    n_splits: int
    n_repeats: int
    summaries: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)

    def model_names(self) -> list[str]:
        """Model names in the order they were given."""
        return list(dict.fromkeys(f.model for f in self.folds))

    def fold_table(self) -> pd.DataFrame:
        """One row per (model, repeat, fold) with every metric."""
        import json

        rows = [
            {"model": f.model, "repeat": f.repeat, "fold": f.fold, **f.metrics, "error": f.error}
            for f in self.folds
        ]
        if any(f.params for f in self.folds):
            for row, f in zip(rows, self.folds, strict=True):
                row["params"] = json.dumps(f.params, sort_keys=True) if f.params else ""
        return pd.DataFrame(rows)

    def chosen_params(self) -> dict[str, list[dict[str, Any]]]:
        """Per tuned model: the inner CV's choice per outer fold (repeat, fold, params)."""
        out: dict[str, list[dict[str, Any]]] = {}
        for f in self.folds:
            if f.params is not None:
                out.setdefault(f.model, []).append(
                    {"repeat": f.repeat, "fold": f.fold, "params": f.params}
                )
        return out

    def predictions(self, case_ids: Any, y: np.ndarray) -> pd.DataFrame:
        """Out-of-fold risk, predicted days and risk group per case, model and repeat."""
        ev, t = event_and_time(y)
        frames = []
        ids = np.asarray(case_ids)
        for f in self.folds:
            frames.append(
                pd.DataFrame(
                    {
                        "case_id": ids[f.test],
                        "model": f.model,
                        "repeat": f.repeat,
                        "fold": f.fold,
                        "risk": f.risk,
                        "predicted_days": f.days,
                        "high_risk": f.risk > f.train_median_risk,
                        "surv_12m": f.s_calibration,
                        "time": t[f.test],
                        "event": ev[f.test],
                    }
                )
            )
        out = pd.concat(frames, ignore_index=True)
        return out.sort_values(["model", "repeat", "case_id"], kind="stable").reset_index(drop=True)


def summarise_folds(
    folds: list[FoldResult], n_repeats: int, seed: int = 0
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per model and metric: mean over folds, sd over repeats, sd over folds, bootstrap CI.

    ``sd`` is the standard deviation of the per-repeat means (how much the estimate moves with
    the fold assignment); ``sd_folds`` the standard deviation over all folds; ``ci95`` a
    percentile bootstrap CI of the mean over folds (:func:`summarise_metric`).
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    models = list(dict.fromkeys(f.model for f in folds))
    for name in models:
        mf = [f for f in folds if f.model == name]
        out[name] = {}
        for metric in METRIC_NAMES:
            values = np.array([f.metrics.get(metric, math.nan) for f in mf], dtype=float)
            s = summarise_metric(values, np.random.default_rng(seed))
            s["sd_folds"] = s["sd"]
            reps = []
            for r in range(n_repeats):
                v = np.array([f.metrics.get(metric, math.nan) for f in mf if f.repeat == r])
                if np.any(~np.isnan(v)):
                    reps.append(float(np.nanmean(v)))
            s["sd"] = float(np.std(reps, ddof=1)) if len(reps) > 1 else s["sd_folds"]
            reasons = sorted({f.undefined[metric] for f in mf if metric in f.undefined})
            if reasons:
                s["undefined_reasons"] = reasons[:3]
            out[name][metric] = s
        failed = [f for f in mf if f.error]
        if failed:
            out[name]["failed_folds"] = {"n": len(failed), "example": failed[0].error}
    return out


def cross_validate_survival(
    models: Mapping[str, Any],
    X: pd.DataFrame,
    y: np.ndarray,
    folds: list[Fold],
    *,
    n_jobs: int = 1,
    seed: int = 0,
) -> SurvivalCVResult:
    """Run every model on the same folds (in parallel over folds) and summarise the metrics.

    Parameters
    ----------
    models
        Name -> unfitted estimator or pipeline. An attribute ``radsurv_columns`` (list of column
        names) on a model restricts it to those columns of ``X`` (used by the baselines).
    X
        Design matrix (DataFrame, rows aligned with ``y``).
    y
        Structured survival array.
    folds
        The plan from :func:`radsurv.evaluation.cv.make_folds`.
    """
    from functools import partial

    if len(X) != len(y):
        raise ModelError(f"design matrix has {len(X)} rows but the target has {len(y)}")
    n_repeats = max(f.repeat for f in folds) + 1
    n_splits = max(f.fold for f in folds) + 1
    per_fold = run_folds(partial(_fit_fold, models=models, X=X, y=y), folds, n_jobs=n_jobs)
    flat = [r for rs in per_fold for r in rs]
    result = SurvivalCVResult(flat, n_splits=n_splits, n_repeats=n_repeats)
    result.summaries = summarise_folds(flat, n_repeats, seed=seed)
    return result
