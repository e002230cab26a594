"""The ``radsurv survival`` analysis: design matrix, CV against baselines, final models, report.

Example
-------
>>> clinical = read_survival_table("survival_info.csv")
>>> data = build_design(clinical, features=None, covariates=["age"])
>>> analysis = run_survival_analysis(data, models=["cox"], cv="5x5", seed=0)
>>> write_survival_outputs(analysis, Path("out"))   # report.html, metrics.json, predictions.csv
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsurv.clinical import survival_target
from radsurv.errors import ConfigError
from radsurv.evaluation.report import (
    comparison_context,
    dataframe_rows,
    figure_to_data_uri,
    format_estimate,
    format_number,
    new_figure,
    render_report,
    write_metrics_json,
)

log = logging.getLogger(__name__)

COVARIATES: tuple[str, ...] = ("age", "resection")
BASELINES: tuple[str, ...] = ("age", "age+resection")
TABLE_METRICS: tuple[str, ...] = (
    "harrell_c",
    "uno_c",
    "td_auc",
    "ibs",
    "brats_accuracy",
    "spearman_r",
    "mse",
)
PREDICTED_DAYS_NOTE = (
    "median of the predicted survival curve (first time S(t) <= 0.5, capped at the last "
    "training event time); XGBoost AFT: median of the predicted time distribution"
)


@dataclass
class SurvivalData:
    """Design matrix, target and bookkeeping of one survival analysis."""

    X: pd.DataFrame
    y: np.ndarray
    covariate_columns: list[str]
    feature_columns: list[str]
    notes: list[str] = field(default_factory=list)
    cohort: dict[str, Any] = field(default_factory=dict)
    design: Any = None  # the radsurv.study Design it was built from, when there is one


def build_design(
    clinical: pd.DataFrame,
    features: pd.DataFrame | None = None,
    covariates: Sequence[str] = ("age",),
    *,
    gtr_only: bool = False,
) -> SurvivalData:
    """Join clinical table and features into a design matrix and survival target.

    A compatibility wrapper of the study engine's design step
    (:meth:`radsurv.study.SurvivalStudy.build_design`, one covariate encoder for every
    endpoint): ``resection`` becomes ``resection_GTR`` (STR reference) plus
    ``resection_missing``.

    Parameters
    ----------
    clinical
        Indexed by case id with ``time``, ``event`` and the covariate columns (e.g. from
        :func:`radsurv.clinical.read_survival_table` or a manifest's clinical columns).
    features
        Feature table indexed by case id (numeric columns), or None (covariates only).
    covariates
        Clinical covariates to model and force into every model (any columns of ``clinical``;
        ``name:categorical`` forces a type).
    gtr_only
        Keep only gross-total resections (as in the BraTS challenge evaluation).
    """
    from radsurv.study import SurvivalStudy
    from radsurv.study.endpoints.survival import survival_cohort

    study = SurvivalStudy(clinical, features, covariates=list(covariates), gtr_only=gtr_only)
    design = study.build_design()
    if not design.feature_columns and not design.covariate_columns:
        raise ConfigError("nothing to model: give --features and/or --covariates")
    y = survival_target(design.clinical)
    for note in design.notes:
        log.warning(note)
    return SurvivalData(
        design.X,
        y,
        design.covariate_columns,
        design.feature_columns,
        design.notes,
        survival_cohort(design, y),
        design=design,
    )


@dataclass
class SurvivalAnalysis:
    """The result of :func:`run_survival_analysis` (the survival report's content)."""

    data: SurvivalData
    cv: Any
    models: list[str]
    baselines: list[str]
    final_models: dict[str, Any]
    settings: dict[str, Any]
    tuning: dict[str, Any] = field(default_factory=dict)


def run_survival_analysis(
    data: SurvivalData,
    models: Sequence[str] = ("cox",),
    *,
    cv: str = "5x5",
    seed: int = 0,
    n_jobs: int = 1,
    k: int | None = 20,
    selection: str = "univariate",
    nested: bool = False,
    inner_folds: int = 3,
) -> SurvivalAnalysis:
    """Cross-validate the requested models and the baselines on the same folds; fit finals.

    A compatibility wrapper of the study engine (:meth:`radsurv.study.SurvivalStudy.analyse`):
    the same fold plan, units, baselines (``age``, ``age+resection``), paired comparison with
    the age baseline and final refits as ``radsurv survival``.

    Parameters
    ----------
    data
        From :func:`build_design`.
    models
        Model names (:data:`radsurv.models.survival.MODEL_NAMES`).
    cv, seed, n_jobs, k, selection, nested, inner_folds
        As ``radsurv survival`` (``k=None``: all features).

    Raises
    ------
    ModelError
        Too few events for the requested number of folds.
    """
    from radsurv.study import SurvivalStudy
    from radsurv.study.design import CovariateEncoder, Design

    design = data.design
    if design is None:  # a hand-made SurvivalData
        X = data.X
        design = Design(
            X=X,
            clinical=pd.DataFrame(index=X.index),
            covariate_columns=list(data.covariate_columns),
            feature_columns=list(data.feature_columns),
            encoder=CovariateEncoder(),
            notes=data.notes,
            cohort=dict(data.cohort),
            baseline_columns={
                "age": ["age"] if "age" in X.columns else [],
                "resection": [c for c in X.columns if str(c).startswith("resection_")],
            },
        )
    study = SurvivalStudy(
        models=list(models),
        cv=cv,
        seed=seed,
        n_jobs=n_jobs,
        k=k,
        selection=selection,
        nested=nested,
        inner_folds=inner_folds,
    )
    return study.analyse(design, data.y, cohort=data.cohort).report


def _selection_text(selection: str, k: int | None) -> str:
    if k is None:
        return "none (all features after the filters)"
    if selection == "penalised":
        return f"{k} first features to enter the elastic-net Cox path (Coxnet, l1_ratio 0.9)"
    return f"{k} best by univariate Cox score test"


def _grid_text(grid: dict[str, list[Any]]) -> str:
    return " x ".join(f"{k} {{{', '.join(str(v) for v in vals)}}}" for k, vals in grid.items())


def _tuning_document(
    result: Any, requested: dict[str, Any], final_params: dict[str, Any], inner_folds: int
) -> dict[str, Any]:
    """Grid, per-fold choices, their counts and the final model's choice per tuned model."""
    from collections import Counter

    from radsurv.models.survival_tuning import format_params

    per_fold = result.chosen_params()
    out: dict[str, Any] = {}
    for name, search in requested.items():
        grid = {k.removeprefix("model__"): list(v) for k, v in search.param_grid.items()}
        folds = per_fold.get(name, [])
        counts = Counter(format_params(f["params"]) for f in folds)
        out[name] = {
            "grid": grid,
            "inner_cv": f"{inner_folds}-fold, stratified on event x time tertile, Harrell's C",
            "per_fold": folds,
            "counts": dict(counts.most_common()),
            "final": final_params.get(name),
            "final_text": format_params(final_params.get(name)) or "not fitted",
        }
    return out


# ------------------------------------------------------------------------------------ figures


def _fig_cindex(analysis: SurvivalAnalysis) -> str:
    table = analysis.cv.fold_table()
    names = analysis.models + analysis.baselines
    fig, ax = new_figure((7, 0.5 + 0.45 * len(names) + 1))
    data = [table.loc[table.model == n, "harrell_c"].dropna().to_numpy() for n in names]
    ax.boxplot(data, orientation="horizontal", tick_labels=names)
    for i, d in enumerate(data, start=1):
        ax.plot(d, np.full(d.shape, i) + np.linspace(-0.12, 0.12, len(d)), "o", ms=3, alpha=0.6)
    ax.axvline(0.5, color="grey", ls=":")
    ax.set_xlabel("Harrell's C per test fold")
    ax.invert_yaxis()
    return figure_to_data_uri(fig)


def _fig_km(analysis: SurvivalAnalysis, preds: pd.DataFrame) -> tuple[str, dict[str, float]]:
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    names = analysis.models + analysis.baselines
    ncol = min(3, len(names))
    nrow = math.ceil(len(names) / ncol)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * ncol, 3.4 * nrow))
    FigureCanvasAgg(fig)
    pvalues = {}
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrow, ncol, i + 1)
        p = preds[(preds.model == name) & (preds.repeat == 0)].dropna(subset=["risk"])
        for flag, label, color in ((False, "low risk", "tab:blue"), (True, "high risk", "tab:red")):
            g = p[p.high_risk == flag]
            if len(g):
                KaplanMeierFitter().fit(g.time, g.event, label=f"{label} (n={len(g)})").plot(
                    ax=ax, color=color, ci_show=False
                )
        hi, lo = p[p.high_risk], p[~p.high_risk]
        pv = math.nan
        if len(hi) and len(lo):
            pv = float(logrank_test(hi.time, lo.time, hi.event, lo.event).p_value)
        pvalues[name] = pv
        ax.set_title(f"{name}: log-rank p = {format_number(pv, 3)}", fontsize=9)
        ax.set_xlabel("days")
        ax.set_ylim(0, 1.02)
    fig.tight_layout()
    return figure_to_data_uri(fig), pvalues


def _fig_td_auc(analysis: SurvivalAnalysis) -> str:
    from radsurv.evaluation.survival_metrics import AUC_CURVE_DAYS

    fig, ax = new_figure((7, 4))
    for name in analysis.models + analysis.baselines:
        curves = np.array([f.auc_curve for f in analysis.cv.folds if f.model == name])
        if curves.size == 0 or np.all(np.isnan(curves)):
            continue
        with np.errstate(all="ignore"):
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                mean = np.nanmean(curves, axis=0)
        ls = "--" if name in analysis.baselines else "-"
        ax.plot(AUC_CURVE_DAYS, mean, ls, marker=".", label=name)
    ax.axhline(0.5, color="grey", ls=":")
    ax.set_xlabel("days")
    ax.set_ylabel("cumulative/dynamic AUC (mean over folds)")
    ax.legend(fontsize=8)
    return figure_to_data_uri(fig)


def _fig_calibration(analysis: SurvivalAnalysis, preds: pd.DataFrame) -> str:
    from lifelines import KaplanMeierFitter

    from radsurv.evaluation.survival_metrics import CALIBRATION_DAYS

    fig, ax = new_figure((5, 5))
    ax.plot([0, 1], [0, 1], color="grey", ls=":")
    for name in analysis.models + analysis.baselines[:1]:
        p = preds[(preds.model == name) & (preds.repeat == 0)].dropna(subset=["surv_12m"])
        if len(p) < 10:
            continue
        groups = pd.qcut(p.surv_12m.rank(method="first"), q=min(5, len(p) // 5), labels=False)
        xs, ys = [], []
        for _, g in p.groupby(groups):
            km = KaplanMeierFitter().fit(g.time, g.event)
            xs.append(g.surv_12m.mean())
            ys.append(float(km.survival_function_at_times(CALIBRATION_DAYS).iloc[0]))
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xlabel("predicted survival at 12 months (out-of-fold, quintiles)")
    ax.set_ylabel("observed (Kaplan-Meier) survival at 12 months")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return figure_to_data_uri(fig)


def _top_features(analysis: SurvivalAnalysis, n: int = 15) -> tuple[str | None, list]:
    from radsurv.models.survival import feature_importance

    rows = []
    uri = None
    for name, model in analysis.final_models.items():
        imp = feature_importance(model)
        if not imp:
            continue
        top = sorted(imp.items(), key=lambda kv: -abs(kv[1]))[:n]
        rows.append({"model": name, "features": [(k, format_number(v)) for k, v in top]})
        if uri is None:
            fig, ax = new_figure((7, 0.3 * len(top) + 1))
            ax.barh([k for k, _ in top][::-1], [v for _, v in top][::-1], color="tab:purple")
            kind = "coefficient" if name == "cox" else "importance (total gain)"
            ax.set_xlabel(f"{name}: {kind}")
            ax.tick_params(axis="y", labelsize=7)
            uri = figure_to_data_uri(fig)
    return uri, rows


# ------------------------------------------------------------------------------------ outputs


def metrics_document(analysis: SurvivalAnalysis) -> dict[str, Any]:
    """The metrics.json content (schema in the module README section)."""
    s = analysis.cv.summaries
    return {
        "models": {m: s[m] for m in analysis.models if m in s},
        "baselines": {b: s[b] for b in analysis.baselines if b in s},
        "n": analysis.data.cohort.get("n"),
        "events": analysis.data.cohort.get("events"),
        "cohort": analysis.data.cohort,
        "cv": {"n_splits": analysis.cv.n_splits, "n_repeats": analysis.cv.n_repeats},
        "settings": analysis.settings,
        "tuning": {
            name: {k: v for k, v in info.items() if k != "final_text"}
            for name, info in analysis.tuning.items()
        },
        "notes": analysis.data.notes,
        "summary_definition": {
            "mean": "mean over all test folds",
            "sd": "standard deviation of the per-repeat means",
            "sd_folds": "standard deviation over all test folds",
            "ci95": "percentile bootstrap 95% CI of the mean over folds (2000 resamples)",
        },
    }


def _metric_rows(analysis: SurvivalAnalysis) -> list[dict[str, Any]]:
    rows = []
    for name in analysis.models + analysis.baselines:
        summ = analysis.cv.summaries.get(name, {})
        cells = []
        for metric in TABLE_METRICS:
            m = summ.get(metric, {})
            text = format_estimate(m.get("mean"), m.get("sd"), m.get("ci95", [math.nan] * 2))
            if m.get("n_undefined"):
                text += f" ({m['n_undefined']} folds undefined)"
            cells.append(text)
        rows.append({"name": name, "baseline": name in analysis.baselines, "cells": cells})
    return rows


def _tuning_context(analysis: SurvivalAnalysis) -> dict[str, Any]:
    from radsurv.models.survival_tuning import format_params

    return {
        name: {
            "grid_text": _grid_text(info["grid"]),
            "final_text": info["final_text"],
            "rows": [
                (f["repeat"] + 1, f["fold"] + 1, format_params(f["params"]))
                for f in info["per_fold"]
            ],
        }
        for name, info in analysis.tuning.items()
    }


def write_survival_outputs(
    analysis: SurvivalAnalysis,
    out: Path,
    *,
    extra: dict[str, Any] | None = None,
    case_columns: pd.DataFrame | None = None,
) -> dict[str, Path]:
    """Write report.html, metrics.json, predictions.csv, folds.csv and models/*.skops.

    ``extra`` holds keys merged into metrics.json (the study engine's shared keys); its
    ``comparisons`` (paired differences to the age baseline) are shown in the report too, and
    its ``groups``/``pooled``/``harmonisation`` (site-wise validation) as their own section.
    ``case_columns`` (indexed by case id: ``subject_id``, ``site``, ``timepoint``) are added
    to predictions.csv after ``case_id``.
    """
    from radsurv.evaluation.site_report import site_context
    from radsurv.models.survival import save_model

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    preds = analysis.cv.predictions(analysis.data.X.index, analysis.data.y)
    paths = {"predictions": out / "predictions.csv", "folds": out / "folds.csv"}
    with_cases(preds, case_columns).to_csv(paths["predictions"], index=False)
    analysis.cv.fold_table().to_csv(paths["folds"], index=False)
    for name, model in analysis.final_models.items():
        paths[f"model:{name}"] = save_model(model, out / "models" / f"{name}.skops")
    doc = metrics_document(analysis)
    km_uri, pvalues = _fig_km(analysis, preds)
    doc["logrank_p_repeat0"] = pvalues
    doc.update(extra or {})
    paths["metrics"] = write_metrics_json(doc, out / "metrics.json")
    top_uri, top_rows = _top_features(analysis)
    cohort = pd.DataFrame(
        {
            "value": pd.Series(
                {k: v for k, v in analysis.data.cohort.items() if not isinstance(v, dict)},
                dtype=object,
            )
        }
    )
    cohort.index.name = "cohort"
    figures = [
        ("Harrell's C per test fold, models against the baselines", _fig_cindex(analysis)),
        (
            "Kaplan-Meier curves of out-of-fold risk groups (repeat 1; high risk = above the "
            "training fold's median risk)",
            km_uri,
        ),
        ("Time-dependent AUC (mean over folds)", _fig_td_auc(analysis)),
        ("Calibration at 12 months (repeat 1)", _fig_calibration(analysis, preds)),
    ]
    if top_uri:
        figures.append(("Top features of the final model fitted on all cases", top_uri))
    context = {
        "title": "radsurv survival report",
        "subtitle": f"{analysis.data.cohort.get('n')} cases, "
        f"{analysis.data.cohort.get('events')} events",
        "warnings": analysis.data.notes,
        "cohort": dataframe_rows(cohort),
        "resection": analysis.data.cohort.get("resection", {}),
        "metric_names": TABLE_METRICS,
        "metric_rows": _metric_rows(analysis),
        "figures": figures,
        "top_features": top_rows,
        "tuning": _tuning_context(analysis),
        "settings": analysis.settings,
        **comparison_context((extra or {}).get("comparisons")),
        **site_context(extra, "harrell_c"),
    }
    paths["report"] = render_report("survival.html.j2", context, out / "report.html")
    return paths


def with_cases(preds: pd.DataFrame, case_columns: pd.DataFrame | None) -> pd.DataFrame:
    """``preds`` with ``subject_id``, ``site``, ``timepoint`` after ``case_id``."""
    if case_columns is None:
        return preds
    cols = [c for c in ("subject_id", "site", "timepoint") if c in case_columns.columns]
    extra = case_columns[cols].reindex(preds["case_id"].astype(str)).reset_index(drop=True)
    out = preds.drop(columns=[c for c in cols if c in preds.columns]).reset_index(drop=True)
    for i, c in enumerate(cols):
        out.insert(1 + i, c, extra[c].to_numpy())
    return out
