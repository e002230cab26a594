"""Per-site figures of a study: ``metrics.json["groups"][site][model]`` and the pooled figure.

Computed from the out-of-fold predictions (``predictions.csv``), so anyone can recompute them:
for each site (the held-out sites of a site-wise plan; every site otherwise) and each model
or baseline, the metric over that site's out-of-fold predictions of one CV repeat, averaged
over repeats (``mean``), with ``sd`` over repeats and a 95 % CI from a case-level bootstrap
within the site (``n_boot`` resamples, the same resampled cases in every repeat; Harrell's C
of the resamples by :func:`_harrell_pairs`), plus ``n``
and ``events`` (deaths, or positives of a binary endpoint). ``pooled`` is the same over all
out-of-fold predictions.

Survival: ``harrell_c`` (scikit-survival ``concordance_index_censored`` on risk) and ``uno_c``
(``concordance_index_ipcw``, censoring distribution of the whole cohort, truncated at its last
follow-up; a point estimate, its ``ci95`` is NaN). Binary: ``roc_auc``, ``pr_auc`` (average
precision), ``brier``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

SURVIVAL_GROUP_METRICS = ("harrell_c", "uno_c")
BINARY_GROUP_METRICS = ("roc_auc", "pr_auc", "brier")
#: Metrics given as point estimates only (an IPCW refit per resample is too slow).
NO_BOOTSTRAP = ("uno_c",)
#: Faster equivalents used inside the bootstrap.
BOOTSTRAP_METRIC: dict[str, Callable[[dict[str, np.ndarray]], float]] = {
    "harrell_c": lambda d: _harrell_pairs(d["event"].astype(bool), d["time"], d["risk"])
}


def _harrell(ev: np.ndarray, t: np.ndarray, risk: np.ndarray) -> float:
    from sksurv.metrics import concordance_index_censored

    if ev.sum() == 0 or len(ev) < 2 or not np.all(np.isfinite(risk)):
        return math.nan
    try:
        return float(concordance_index_censored(ev, t, risk)[0])
    except (ValueError, ZeroDivisionError):
        return math.nan


def _harrell_pairs(ev: np.ndarray, t: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C by broadcasting (pairs with an event at the shorter time; risk ties 1/2).

    Used for the bootstrap resamples only (fast); the point estimate is scikit-survival's.
    """
    if ev.sum() == 0 or len(ev) < 2 or not np.all(np.isfinite(risk)):
        return math.nan
    comparable = (t[:, None] < t[None, :]) & ev[:, None]
    total = comparable.sum()
    if not total:
        return math.nan
    diff = risk[:, None] - risk[None, :]
    return float(((diff > 0) & comparable).sum() + 0.5 * ((diff == 0) & comparable).sum()) / total


def _survival_metric(name: str, y_all: Any) -> Callable[[dict[str, np.ndarray]], float]:
    from sksurv.metrics import concordance_index_ipcw
    from sksurv.util import Surv

    def f(d: dict[str, np.ndarray]) -> float:
        ev, t, risk = d["event"].astype(bool), d["time"], d["risk"]
        if name == "harrell_c":
            return _harrell(ev, t, risk)
        if ev.sum() == 0 or len(ev) < 2 or not np.all(np.isfinite(risk)):
            return math.nan
        try:
            tau = float(y_all["time"].max()) - 1e-6
            y = Surv.from_arrays(ev, np.minimum(t, tau))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                return float(concordance_index_ipcw(y_all, y, risk, tau=tau)[0])
        except (ValueError, ZeroDivisionError):
            return math.nan

    return f


def _binary_metric(name: str) -> Callable[[dict[str, np.ndarray]], float]:
    from sklearn.metrics import average_precision_score, roc_auc_score

    def f(d: dict[str, np.ndarray]) -> float:
        y, p = d["label"].astype(int), d["probability"]
        if not len(y) or not np.all(np.isfinite(p)):
            return math.nan
        if name == "brier":
            return float(np.mean((p - y) ** 2))
        if len(np.unique(y)) < 2:
            return math.nan
        return float(roc_auc_score(y, p) if name == "roc_auc" else average_precision_score(y, p))

    return f


def _summary(
    rows: pd.DataFrame,
    columns: tuple[str, ...],
    metric: Callable[[dict[str, np.ndarray]], float],
    rng: np.random.Generator,
    n_boot: int,
    boot_metric: Callable[[dict[str, np.ndarray]], float] | None = None,
) -> dict[str, Any]:
    cases = np.asarray(sorted(rows["case_id"].astype(str).unique()))
    reps = []
    for _, g in rows.groupby("repeat", sort=True):
        g = g.set_index(g["case_id"].astype(str)).reindex(cases)
        reps.append({c: g[c].to_numpy(dtype=float) for c in columns})
    values = np.array([metric(_present(r)) for r in reps], dtype=float)
    ok = values[np.isfinite(values)]
    out: dict[str, Any] = {
        "mean": float(ok.mean()) if ok.size else math.nan,
        "sd": float(ok.std(ddof=1)) if ok.size > 1 else math.nan,
        "ci95": [math.nan, math.nan],
        "n_repeats": int(len(reps)),
    }
    if not ok.size or n_boot <= 0:
        return out
    boot = []
    for _ in range(n_boot):
        pick = rng.integers(0, len(cases), len(cases))
        fn = boot_metric or metric
        vals = np.array(
            [fn(_present({c: v[pick] for c, v in r.items()})) for r in reps], dtype=float
        )
        if np.any(np.isfinite(vals)):
            boot.append(float(np.nanmean(vals)))
    if len(boot) >= 10:
        out["ci95"] = [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
    return out


def _present(d: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The rows of a repeat that have a prediction (external plans test some cases only)."""
    first = next(iter(d.values()))
    keep = np.isfinite(first)
    return {c: v[keep] for c, v in d.items()}


def group_metrics(
    predictions: pd.DataFrame,
    endpoint: str,
    *,
    groups: list[str] | None = None,
    y_all: Any = None,
    seed: int = 0,
    n_boot: int = 200,
    order: list[str] | None = None,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """(``groups[site][model]``, ``pooled[model]``) from out-of-fold predictions with a
    ``site`` column (survival: ``risk``, ``time``, ``event``; binary: ``label``,
    ``probability``, ``role``)."""
    if endpoint == "survival":
        names = SURVIVAL_GROUP_METRICS
        metrics = {m: _survival_metric(m, y_all) for m in names}
        count_col = "event"
        columns: tuple[str, ...] = ("risk", "time", "event")
    else:
        names = BINARY_GROUP_METRICS
        metrics = {m: _binary_metric(m) for m in names}
        count_col = "label"
        columns = ("probability", "label")
    preds = predictions.copy()
    preds["site"] = preds["site"].astype("string").fillna("unknown").astype(str)
    present = list(dict.fromkeys(preds["model"]))
    models = [m for m in (order or []) if m in present] + [
        m for m in present if m not in (order or [])
    ]
    sites = groups if groups is not None else sorted(preds["site"].unique())

    def block(rows: pd.DataFrame, key: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for model in models:
            mine = rows[rows["model"] == model]
            first = mine[mine["repeat"] == mine["repeat"].min()] if len(mine) else mine
            entry: dict[str, Any] = {
                "n": int(len(first)),
                "events": int(first[count_col].astype(float).sum()) if len(first) else 0,
            }
            for i, (name, fn) in enumerate(metrics.items()):
                rng = np.random.default_rng([seed, key, i])
                boots = 0 if name in NO_BOOTSTRAP else n_boot
                fast = BOOTSTRAP_METRIC.get(name) if endpoint == "survival" else None
                entry[name] = _summary(mine, columns, fn, rng, boots, fast)
            out[model] = entry
        return out

    result = {}
    for k, site in enumerate(sites):
        rows = preds[preds["site"] == site]
        if len(rows):
            result[site] = block(rows, k + 1)
    return result, block(preds, 0)


def group_rows(groups: dict[str, Any], pooled: dict[str, Any], metric: str) -> list[dict]:
    """Report table rows: one per site (and pooled), one cell per model."""
    rows = []
    for site, models in [*groups.items(), ("pooled", pooled)]:
        first = next(iter(models.values()), {})
        cells = {}
        for model, e in models.items():
            s = e.get(metric, {})
            cells[model] = (s.get("mean", math.nan), *s.get("ci95", [math.nan, math.nan]))
        rows.append({"site": site, "n": first.get("n"), "events": first.get("events"), **cells})
    return rows
