"""The survival endpoint: time-to-event targets, Cox / XGBoost / RSF models, age baselines.

Plugged into :func:`radsurv.study.engine.run_engine`. One unit fits a pipeline on a training
fold and computes every survival metric of :mod:`radsurv.evaluation.survival_metrics` on its
test fold; the summaries are those of the survival report (mean over folds, SD of the
per-repeat means, SD over folds, bootstrap CI). Baselines: ``age`` (Cox on age),
``age+resection`` (when the table has a resection column) and ``clinical`` (Cox on every
requested covariate, when that differs from both).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from radsurv.errors import ConfigError, ModelError
from radsurv.study.engine import Endpoint, ModelSpec, Task

log = logging.getLogger(__name__)

REFERENCE_BASELINE = "age"


@dataclass
class FinalModel:
    """A model fitted on all cases: the estimator, tuned parameters, decision threshold."""

    estimator: Any
    params: dict[str, Any] | None = None
    threshold: float | None = None


class SurvivalEndpoint(Endpoint):
    """Survival endpoint definition (see the module docstring)."""

    kind = "survival"
    primary_metric = "harrell_c"

    def __init__(
        self,
        *,
        k: int | None = 20,
        seed: int = 0,
        selection: str = "univariate",
        inner_folds: int | None = None,
    ) -> None:
        self.k = k
        self.seed = seed
        self.selection = selection
        self.inner_folds = inner_folds

    @staticmethod
    def stratum_label(stratum: Any) -> str:
        from radsurv.evaluation.cv import survival_stratum_label

        return survival_stratum_label(stratum)

    def strata(self, y: Any) -> np.ndarray:
        from radsurv.clinical import event_and_time
        from radsurv.evaluation.cv import survival_strata

        ev, t = event_and_time(y)
        return survival_strata(ev, t)

    def check(self, y: Any, n_splits: int) -> None:
        from radsurv.clinical import event_and_time

        ev, _ = event_and_time(y)
        if ev.sum() < 2 * n_splits:
            raise ModelError(
                f"{int(ev.sum())} events in {len(ev)} cases are too few for {n_splits}-fold CV "
                f"(need at least {2 * n_splits}); use fewer folds"
            )

    def build(self, spec: ModelSpec, design: Any) -> Any:
        from sklearn.pipeline import Pipeline

        from radsurv.models.preprocessing import make_preprocessor
        from radsurv.models.survival import CoxPH, make_model
        from radsurv.models.survival_tuning import make_tuned_model

        if spec.role == "baseline" or _is_clinical_cox(spec, design, self.inner_folds):
            return Pipeline(
                [
                    ("prep", make_preprocessor(near_constant=False, corr_threshold=None)),
                    ("model", CoxPH(penalizer=BASELINE_PENALIZER)),
                ]
            )
        if design.feature_columns:
            pipe = make_model(
                spec.name,
                k=self.k,
                forced=design.covariate_columns,
                random_state=self.seed,
                selection=self.selection,
            )
        else:  # covariates alone: nothing to select
            pipe = make_model(spec.name, k=None, corr_threshold=None, random_state=self.seed)
        if self.inner_folds:
            pipe = make_tuned_model(spec.name, pipe, inner_folds=self.inner_folds, seed=self.seed)
        return pipe

    def fit_predict(self, estimator: Any, task: Task, X: Any, y: Any) -> Any:
        from radsurv.evaluation.survival_metrics import _fit_fold

        return _fit_fold(task.fold, {task.spec.name: estimator}, X, y)[0]

    def fold_values(self, output: Any, y: Any) -> float:
        return float(output.metrics.get(self.primary_metric, math.nan))

    def cv_statistic(self, outputs: Any, y: Any) -> float:
        vals = np.array([self.fold_values(o, y) for o in outputs], dtype=float)
        return float(np.nanmean(vals)) if np.any(np.isfinite(vals)) else math.nan

    def fit_final(self, estimator: Any, spec: ModelSpec, X: Any, y: Any) -> FinalModel:
        from radsurv.models.survival_tuning import unwrap_search

        model, params = unwrap_search(estimator.fit(X, y))
        return FinalModel(model, params)


BASELINE_PENALIZER = 0.01  # a nearly unpenalised ridge Cox: a few clinical covariates
BASELINE_TEXT = (
    f"Cox, ridge penalizer {BASELINE_PENALIZER}, on the baseline's covariates only (model cox: "
    "elastic net, penalizer 0.1, l1_ratio 0.5, with in-fold selection)"
)


def _is_clinical_cox(spec: ModelSpec, design: Any, inner_folds: int | None) -> bool:
    """``cox`` on covariates alone (no features, no tuning) is the baselines' specification."""
    return spec.name == "cox" and not design.feature_columns and not inner_folds


def survival_specs(design: Any, models: Any, notes: list[str]) -> list[ModelSpec]:
    """Requested models (covariates + features) then the baselines the design allows."""
    from radsurv.models.survival import MODEL_NAMES

    bad = [m for m in models if m not in MODEL_NAMES]
    if bad:
        raise ConfigError(f"--model {bad}: choose from {', '.join(MODEL_NAMES)}")
    if not design.feature_columns and not design.covariate_columns:
        raise ConfigError("nothing to model: give --features and/or --covariates")
    cols = tuple(design.covariate_columns + design.feature_columns)
    specs = [ModelSpec(m, "model", cols) for m in models]
    if not design.feature_columns and "cox" in models:
        notes.append(
            f"cox without features is the baselines' Cox (ridge penalizer {BASELINE_PENALIZER}) "
            "on the covariates, so it equals the baseline with the same covariates"
        )
    age = design.baseline_columns.get("age", [])
    res = design.baseline_columns.get("resection", [])
    baselines: list[tuple[str, list[str]]] = []
    if age:
        baselines.append(("age", age))
    else:
        notes.append("baseline age not run: the clinical table has no age column")
    if age and res:
        baselines.append(("age+resection", [*age, *res]))
    elif age and design.baseline_columns.get("resection") is not None:
        notes.append("baseline age+resection not run: resection is constant in this cohort")
    elif age:
        notes.append("baseline age+resection not run: the clinical table has no resection")
    covs = list(design.covariate_columns)
    if covs and all(covs != list(c) for _, c in baselines):
        baselines.append(("clinical", covs))
    clash = {m for m in models if m in {b for b, _ in baselines}}
    if clash:
        raise ConfigError(f"model names {clash} clash with the baselines")
    return specs + [ModelSpec(b, "baseline", tuple(c)) for b, c in baselines]


def survival_cohort(design: Any, y: Any) -> dict[str, Any]:
    """Counts of a survival design (the report's cohort table)."""
    from radsurv.clinical import event_and_time
    from radsurv.study.design import _find

    ev, t = event_and_time(y)
    clin = design.clinical
    age_col = _find(clin, "age")
    age = pd.to_numeric(clin[age_col], errors="coerce") if age_col else None
    cohort = dict(design.cohort)
    cohort.pop("join", None)
    cohort.update(
        n=len(design.X),
        events=int(ev.sum()),
        censored=int((~ev).sum()),
        median_time_days=float(np.median(t)) if len(t) else math.nan,
        age_mean=float(age.mean()) if age is not None else math.nan,
        age_sd=float(age.std()) if age is not None else math.nan,
    )
    if "resection" in clin.columns:
        counts = clin["resection"].astype("string").fillna("unknown").value_counts()
        cohort["resection"] = {str(k): int(v) for k, v in counts.items()}
    return cohort
