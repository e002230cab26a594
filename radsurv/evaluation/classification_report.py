"""Outputs of a classification run: report.html, metrics.json, predictions.csv, saved models.

:func:`write_classification_outputs` writes, under ``out``:

- ``report.html``: one self-contained page (figures embedded as PNG data URIs): cohort and
  positive class, metrics table with CIs against the baseline, ROC curves with a bootstrap 95 %
  band, calibration curve, confusion matrices at the in-fold Youden thresholds, permutation
  test, top features (final-model weights and in-fold selection frequency), settings, versions;
- ``metrics.json``: ``{"models": {NAME: {"roc_auc": {"mean", "sd", "ci95"}, ...}},
  "baselines": {...}, "n", "positives", "positive_class", ...}``;
- ``predictions.csv``: out-of-fold probabilities per case, model and repeat;
- ``models/NAME.skops`` (the fitted pipeline, loadable with
  :func:`radsurv.models.classifiers.load_classifier`, no pickle) and ``models/NAME.json``
  (positive class, decision threshold, input columns, settings).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from radsurv.clinical_labels import BinaryLabels
from radsurv.evaluation.classification_metrics import METRIC_NAMES, roc_band
from radsurv.evaluation.classify import ClassificationResult, oof_matrix
from radsurv.evaluation.report import (
    comparison_context,
    figure_to_data_uri,
    format_estimate,
    format_number,
    new_figure,
    render_report,
    write_metrics_json,
)
from radsurv.models.classifiers import save_classifier

logger = logging.getLogger(__name__)

METRIC_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Discrimination and calibration (probabilities)",
        ("roc_auc", "pr_auc", "brier", "calibration_slope", "calibration_intercept", "ece"),
    ),
    (
        "At the training-fold threshold (classes)",
        ("balanced_accuracy", "sensitivity", "specificity"),
    ),
)
METRIC_LABELS: dict[str, str] = {
    "roc_auc": "ROC AUC",
    "pr_auc": "PR AUC",
    "balanced_accuracy": "Balanced accuracy",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "brier": "Brier score",
    "calibration_slope": "Calibration slope",
    "calibration_intercept": "Calibration intercept",
    "ece": "ECE",
}
_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b")


def _specs(result: ClassificationResult) -> list[tuple[str, str]]:
    return [("model", m) for m in result.metrics["models"]] + [
        ("baseline", b) for b in result.metrics["baselines"]
    ]


def roc_figure(result: ClassificationResult, seed: int = 0) -> str:
    """Mean out-of-fold ROC curve per model and baseline with its bootstrap 95 % band."""
    fig, ax = new_figure((5.5, 5.0))
    for i, (role, name) in enumerate(_specs(result)):
        _, y, probs, _ = oof_matrix(result.predictions, role, name)
        band = roc_band(y, list(probs), seed=seed)
        colour = "#777777" if role == "baseline" else _COLOURS[i % len(_COLOURS)]
        group = "baselines" if role == "baseline" else "models"
        auc = result.metrics[group][name]["roc_auc"]
        label = f"{name} ({role}) AUC {format_number(auc['mean'])}"
        ax.plot(
            band["fpr"],
            band["tpr"],
            color=colour,
            label=label,
            ls="--" if role == "baseline" else "-",
        )
        ax.fill_between(band["fpr"], band["lo"], band["hi"], color=colour, alpha=0.15, lw=0)
    ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8)
    ax.set(xlabel="1 - specificity", ylabel="sensitivity", xlim=(0, 1), ylim=(0, 1.01))
    ax.set_title("Out-of-fold ROC, mean over repeats, 95 % bootstrap band")
    ax.legend(loc="lower right", fontsize=8)
    return figure_to_data_uri(fig)


def calibration_figure(result: ClassificationResult) -> str:
    """Observed positive rate against mean predicted probability (quantile bins, pooled OOF)."""
    from sklearn.calibration import calibration_curve

    fig, ax = new_figure((5.5, 5.0))
    n = result.metrics["n"]
    bins = int(np.clip(n // 10, 3, 10))
    for i, (role, name) in enumerate(_specs(result)):
        _, y, probs, _ = oof_matrix(result.predictions, role, name)
        yy = np.tile(y, probs.shape[0])
        pp = probs.reshape(-1)
        if np.ptp(pp) < 1e-12:  # the prevalence model: one point
            ax.plot([pp.mean()], [yy.mean()], "s", color="#777777", label=f"{name} ({role})")
            continue
        frac, mean_pred = calibration_curve(yy, pp, n_bins=bins, strategy="quantile")
        colour = "#777777" if role == "baseline" else _COLOURS[i % len(_COLOURS)]
        ax.plot(mean_pred, frac, "o-", color=colour, label=f"{name} ({role})")
    ax.plot([0, 1], [0, 1], color="#bbbbbb", lw=0.8, label="ideal")
    ax.set(xlabel="mean predicted probability", ylabel="observed positive rate")
    ax.set(xlim=(0, 1), ylim=(0, 1))
    ax.set_title(f"Calibration ({bins} quantile bins, all repeats pooled)")
    ax.legend(loc="upper left", fontsize=8)
    return figure_to_data_uri(fig)


def confusion_figure(
    result: ClassificationResult, role: str, name: str, labels: Sequence[str]
) -> str:
    """Mean confusion matrix over repeats at the Youden thresholds chosen in the training folds."""
    _, y, _, preds = oof_matrix(result.predictions, role, name)
    cm = np.zeros((2, 2))
    for pred in preds:
        for t in (0, 1):
            for p in (0, 1):
                cm[t, p] += np.sum((y == t) & (pred == p))
    cm /= max(len(preds), 1)
    fig, ax = new_figure((3.6, 3.2))
    ax.imshow(cm, cmap="Blues")
    for t in (0, 1):
        for p in (0, 1):
            colour = "white" if cm[t, p] > cm.max() / 2 else "black"
            ax.text(p, t, f"{cm[t, p]:.1f}", ha="center", va="center", color=colour)
    ax.set_xticks([0, 1], [f"pred {labels[0]}", f"pred {labels[1]}"], fontsize=8)
    ax.set_yticks([0, 1], [f"true {labels[0]}", f"true {labels[1]}"], fontsize=8)
    ax.set_title(f"{name}: mean counts per repeat", fontsize=9)
    return figure_to_data_uri(fig)


def features_figure(weights: Mapping[str, float], name: str, top: int = 15) -> str | None:
    """Horizontal bars of the final model's largest |coefficients| or importances."""
    if not weights:
        return None
    items = sorted(weights.items(), key=lambda kv: -abs(kv[1]))[:top][::-1]
    fig, ax = new_figure((6.5, 0.3 * len(items) + 1.2))
    values = [v for _, v in items]
    ax.barh(range(len(items)), values, color=["#d62728" if v > 0 else "#1f77b4" for v in values])
    ax.set_yticks(range(len(items)), [k for k, _ in items], fontsize=7)
    ax.axvline(0, color="#555555", lw=0.6)
    ax.set_title(f"{name}: final model, top {len(items)} features", fontsize=9)
    return figure_to_data_uri(fig)


def permutation_figure(perm: Mapping[str, Any], name: str) -> str:
    """Histogram of permuted-label AUCs with the observed AUC."""
    fig, ax = new_figure((4.5, 3.0))
    ax.hist(perm["permuted"], bins=min(20, max(5, len(perm["permuted"]) // 2)), color="#999999")
    ax.axvline(perm["observed"], color="#d62728", label=f"observed {perm['observed']:.3f}")
    ax.set(xlabel="mean OOF ROC AUC", ylabel="permutations")
    ax.set_title(f"{name}: p = {perm['p_value']:.3f}", fontsize=9)
    ax.legend(fontsize=8)
    return figure_to_data_uri(fig)


def _metric_rows(result: ClassificationResult) -> list[dict[str, Any]]:
    rows = []
    for role, name in _specs(result):
        group = "baselines" if role == "baseline" else "models"
        entry = result.metrics[group][name]
        cells = []
        for metric in METRIC_NAMES:
            m = entry[metric]
            lo, hi = m["ci95"]
            main = format_estimate(m["mean"], m["sd"])
            ci = format_estimate(m["mean"], None, [lo, hi])
            cells.append({"main": main, "ci": ci[ci.index("[") :] if "[" in ci else ""})
        perm = entry.get("permutation_test")
        rows.append(
            {
                "name": name,
                "role": role,
                "cells": cells,
                "p": format_number(perm["p_value"]) if perm else "",
            }
        )
    return rows


def _save_models(
    result: ClassificationResult, out: Path, labels: BinaryLabels | None
) -> dict[str, str]:
    paths = {}
    for name, est in result.final_models.items():
        path = save_classifier(est, out / "models" / f"{name}.skops")
        card = {
            "model": name,
            "file": path.name,
            "format": "skops (load with radsurv.models.classifiers.load_classifier)",
            "positive_class": labels.positive if labels else "1",
            "negative_class": labels.negative if labels else "0",
            "threshold": result.final_thresholds.get(name),
            "threshold_rule": "Youden J on an inner CV of all training cases",
            "input_columns": [str(c) for c in getattr(est, "feature_names_in_", [])],
            "n_training": result.metrics["n"],
            "settings": result.metrics.get("settings", {}),
        }
        write_metrics_json(card, out / "models" / f"{name}.json")
        paths[name] = str(path.relative_to(out))
    return paths


def write_classification_outputs(
    result: ClassificationResult,
    out: str | Path,
    *,
    labels: BinaryLabels | None = None,
    cohort: Mapping[str, Any] | None = None,
    settings: Mapping[str, Any] | None = None,
    warnings: Sequence[str] = (),
    title: str = "Binary endpoint classification",
    extra: Mapping[str, Any] | None = None,
    case_columns: Any = None,
) -> dict[str, Path]:
    """Write report.html, metrics.json, predictions.csv and the saved models under ``out``.

    ``case_columns`` (indexed by case id: ``subject_id``, ``site``, ``timepoint``) are added
    to predictions.csv after ``case_id``; ``extra``'s ``groups``/``pooled``/``harmonisation``
    become the report's site section.

    Parameters
    ----------
    result
        From :func:`radsurv.evaluation.classify.run_classification`.
    out
        Output folder (created).
    labels
        The parsed labels (positive class, source, dropped rows) for the report and JSON.
    cohort
        Extra cohort facts to show (e.g. join summaries: unmatched ids).
    settings
        Command-line settings to show.
    warnings
        Lines shown at the top of the report (e.g. unmatched ids).
    title
        Page title.

    Returns
    -------
    dict
        ``report``, ``metrics``, ``predictions`` paths.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    metrics = dict(result.metrics)
    if labels is not None:
        metrics["positive_class"] = labels.positive
        metrics["negative_class"] = labels.negative
        metrics["labels"] = {
            "source": labels.source,
            "column": labels.label_column,
            "dropped_rows": len(labels.dropped),
            "dropped_examples": labels.dropped.head(10).to_dict(orient="records"),
        }
    if cohort:
        metrics["cohort"] = dict(cohort)
    metrics["model_files"] = _save_models(result, out, labels)
    metrics.update(extra or {})
    metrics_path = write_metrics_json(metrics, out / "metrics.json")
    predictions_path = out / "predictions.csv"
    from radsurv.evaluation.site_report import site_context
    from radsurv.evaluation.survival_report import with_cases

    with_cases(result.predictions, case_columns).to_csv(predictions_path, index=False)

    class_names = (labels.negative, labels.positive) if labels else ("0", "1")
    models = []
    for name in result.metrics["models"]:
        freq = result.selection_frequency.get(name)
        weights = result.final_weights.get(name, {})
        top = sorted(weights.items(), key=lambda kv: -abs(kv[1]))[:15]
        models.append(
            {
                "name": name,
                "confusion": confusion_figure(result, "model", name, class_names),
                "features": features_figure(weights, name),
                "permutation": (
                    permutation_figure(result.permutation[name], name)
                    if name in result.permutation
                    else None
                ),
                "perm": result.permutation.get(name),
                "top": [
                    {
                        "feature": f,
                        "weight": format_number(w),
                        "frequency": format_number(
                            float(freq.get(f, 0.0)) if freq is not None else float("nan"), 2
                        ),
                    }
                    for f, w in top
                ],
                "threshold": format_number(result.final_thresholds.get(name)),
            }
        )
    baseline = next(iter(result.metrics["baselines"]))
    context = {
        "title": title,
        "subtitle": labels.summary() if labels else "",
        "warnings": list(warnings),
        "n": result.metrics["n"],
        "positives": result.metrics["positives"],
        "positive_class": class_names[1],
        "negative_class": class_names[0],
        "n_features": result.metrics.get("features"),
        "covariates": ", ".join(result.metrics.get("covariates", [])) or "none",
        "baseline": baseline,
        "cv": result.metrics["cv"],
        "threshold_rule": result.metrics["threshold"],
        "ci_rule": result.metrics["ci"],
        "metric_labels": [METRIC_LABELS[m] for m in METRIC_NAMES],
        # two tables that each fit a laptop screen: probabilities, then the thresholded class
        "metric_groups": [
            (title, [i for i, m in enumerate(METRIC_NAMES) if m in names])
            for title, names in METRIC_GROUPS
        ],
        "rows": _metric_rows(result),
        "roc": roc_figure(result, seed=result.metrics["cv"]["seed"]),
        "calibration": calibration_figure(result),
        "baseline_confusion": confusion_figure(result, "baseline", baseline, class_names),
        "models": models,
        "cohort": dict(cohort or {}),
        "dropped": labels.dropped.head(20).to_dict(orient="records") if labels else [],
        "n_dropped": len(labels.dropped) if labels else 0,
        **comparison_context((extra or {}).get("comparisons")),
        **site_context(extra, "roc_auc"),
        "settings": {
            **{k: v for k, v in (settings or {}).items()},
            **{f"run.{k}": v for k, v in result.metrics.get("settings", {}).items()},
        },
    }
    report_path = render_report("classification.html.j2", context, out / "report.html")
    logger.info("classification outputs in %s", out)
    return {"report": report_path, "metrics": metrics_path, "predictions": predictions_path}
