"""The binary endpoint: 0/1 labels, logreg / XGBoost / RF classifiers, the clinical baseline.

Plugged into :func:`radsurv.study.engine.run_engine`. One unit fits a classifier pipeline on a
training fold, predicts the test fold's probabilities and chooses the Youden threshold on an
inner CV of the training fold. Metrics are computed per repeat on the pooled out-of-fold
predictions (an AUC per fold of 10 cases is too noisy to average) with a case-level bootstrap
CI (:mod:`radsurv.evaluation.classification_metrics`). The paired comparison with the baseline
uses the per-fold ROC AUC. Baseline: ``clinical`` (logistic regression on the covariates) or
``prevalence`` (no covariates).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import pandas as pd

from radsurv.study.endpoints.survival import FinalModel
from radsurv.study.engine import Endpoint, EngineRun, ModelSpec, Task

log = logging.getLogger(__name__)


class BinaryEndpoint(Endpoint):
    """Binary endpoint definition; ``settings`` is a ClassifySettings."""

    kind = "binary"
    primary_metric = "roc_auc"

    def __init__(self, settings: Any, source: str = "labels") -> None:
        self.settings = settings
        self.source = source

    @staticmethod
    def stratum_label(stratum: Any) -> str:
        return f"label {stratum}"

    def strata(self, y: Any) -> np.ndarray:
        return np.asarray(y)

    def check(self, y: Any, n_splits: int) -> None:
        from radsurv.evaluation.classify import check_labels_for_cv

        check_labels_for_cv(np.asarray(y), n_splits, self.source)

    def build(self, spec: ModelSpec, design: Any) -> Any:
        from radsurv.models.classifiers import make_baseline_pipeline, make_classifier_pipeline

        s = self.settings
        if spec.role == "baseline":
            return make_baseline_pipeline(list(spec.columns))
        return make_classifier_pipeline(
            spec.name,
            seed=s.seed,
            k=s.k,
            corr_threshold=s.corr_threshold,
            forced=design.covariate_columns,
            nested=s.nested,
        )

    def fit_predict(self, estimator: Any, task: Task, X: pd.DataFrame, y: Any) -> Any:
        from radsurv.evaluation.classify import _TaskOutput, inner_cv_threshold
        from radsurv.models.classifiers import final_estimator, fit_quietly

        f = task.fold
        y = np.asarray(y)
        where = f"{task.spec.name} repeat {f.repeat + 1} fold {f.fold + 1}"
        if task.permutation >= 0:
            where += f" permutation {task.permutation + 1}"
        est = fit_quietly(estimator, X.iloc[f.train], y[f.train], where)
        proba = est.predict_proba(X.iloc[f.test])[:, 1]
        threshold = math.nan
        if task.permutation < 0:
            threshold = inner_cv_threshold(
                est,
                X.iloc[f.train],
                y[f.train],
                self.settings.threshold_folds,
                self.settings.seed + 1000 * f.repeat + f.fold,
                where,
            )
        pipe = final_estimator(est)
        selected = (
            list(pipe.named_steps["prep"].get_feature_names_out())
            if "prep" in pipe.named_steps and task.spec.role == "model"
            else []
        )
        return _TaskOutput(
            task.spec.role,
            task.spec.name,
            task.permutation,
            f.repeat,
            f.fold,
            f.test,
            proba,
            threshold,
            selected,
        )

    def fold_values(self, output: Any, y: Any) -> float:
        from sklearn.metrics import roc_auc_score

        yt = np.asarray(y)[output.test]
        if len(np.unique(yt)) < 2:
            return math.nan
        return float(roc_auc_score(yt, output.probability))

    def cv_statistic(self, outputs: Any, y: Any) -> float:
        from sklearn.metrics import roc_auc_score

        y = np.asarray(y)
        aucs = []
        for r in sorted({o.repeat for o in outputs}):
            p = np.full(len(y), np.nan)
            for o in outputs:
                if o.repeat == r:
                    p[o.test] = o.probability
            ok = np.isfinite(p)
            aucs.append(roc_auc_score(y[ok], p[ok]))
        return float(np.mean(aucs)) if aucs else math.nan

    def fit_final(self, estimator: Any, spec: ModelSpec, X: Any, y: Any) -> FinalModel:
        from radsurv.evaluation.classify import inner_cv_threshold
        from radsurv.models.classifiers import fit_quietly

        y = np.asarray(y)
        est = fit_quietly(estimator, X, y, f"final {spec.name}")
        thr = inner_cv_threshold(
            est, X, y, self.settings.threshold_folds, self.settings.seed, f"final {spec.name}"
        )
        return FinalModel(est, None, thr)


def binary_specs(design: Any, models: Any) -> list[ModelSpec]:
    """Requested classifiers (covariates + features) then the clinical/prevalence baseline."""
    covs = tuple(design.covariate_columns)
    wanted = set(covs) | set(design.feature_columns)
    cols = tuple(c for c in design.X.columns if c in wanted)  # the design's column order
    baseline = "clinical" if covs else "prevalence"
    return [ModelSpec(m, "model", cols) for m in models] + [ModelSpec(baseline, "baseline", covs)]


def classification_result(
    run: EngineRun, X: pd.DataFrame, y: np.ndarray, covariates: list[str], settings: Any
) -> Any:
    """The engine run as a :class:`radsurv.evaluation.classify.ClassificationResult`."""
    from dataclasses import asdict

    from radsurv.evaluation.classify import (
        ClassificationResult,
        _per_repeat_metrics,
        _predictions_table,
        _selection_frequency,
        _summaries,
    )
    from radsurv.models.classifiers import feature_weights

    pairs = [(s.role, s.name) for s in run.specs]
    predictions = _predictions_table(run.outputs, X.index, y)
    per_repeat = _per_repeat_metrics(predictions)
    summary = _summaries(predictions, per_repeat, pairs, settings)
    models = [s.name for s in run.specs if s.role == "model"]
    baseline = next(s.name for s in run.specs if s.role == "baseline")
    result = ClassificationResult(predictions=predictions, per_repeat=per_repeat, metrics={})
    result.selection_frequency = _selection_frequency(run.outputs, models, len(run.folds))
    result.permutation = run.permutation
    for name, final in run.finals.items():
        result.final_models[name] = final.estimator
        result.final_thresholds[name] = final.threshold
        if name in models:
            result.final_weights[name] = feature_weights(final.estimator)
    n_cov = len(covariates)
    result.metrics = {
        "models": {m: summary[("model", m)] for m in models},
        "baselines": {baseline: summary[("baseline", baseline)]},
        "n": len(y),
        "positives": int(np.sum(y)),
        "features": X.shape[1] - n_cov,
        "covariates": list(covariates),
        "cv": {
            "folds": run.n_splits,
            "repeats": run.n_repeats,
            "seed": settings.seed,
            "n_splits": run.n_splits,
            "n_repeats": run.n_repeats,
            "stratified_on": "label",
        },
        "threshold": (
            f"Youden J on out-of-fold predictions of a {settings.threshold_folds}-fold inner CV "
            "of each training fold"
        ),
        "ci": f"case-level stratified bootstrap of the repeat-mean metric ({settings.n_boot})",
        "settings": asdict(settings),
    }
    for m in models:
        if m in result.permutation:
            result.metrics["models"][m]["permutation_test"] = result.permutation[m]
        if m in run.comparisons:
            result.metrics["models"][m]["vs_baseline"] = run.comparisons[m]
    return result
