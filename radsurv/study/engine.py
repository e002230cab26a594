"""The study engine: one cross-validation runner for every endpoint.

A study is a :class:`~radsurv.study.design.Design` plus an :class:`Endpoint` (survival or
binary; :mod:`radsurv.study.endpoints`). The engine owns what both share:

1. the fold plan (:func:`radsurv.evaluation.cv.make_folds` on the endpoint's strata);
2. one fit/predict unit per (fold, model) (:func:`run_unit`), the same for the requested
   models and the baselines, which therefore run on the same folds; nested tuning is a
   property of the model the endpoint builds (an inner GridSearchCV inside the unit);
3. the label-permutation test (the whole CV rerun on permuted targets);
4. the paired difference of each model to the reference baseline on the same folds, with the
   Nadeau-Bengio corrected resampled t-test (:func:`corrected_paired_t`);
5. the final refit of every model and baseline on all cases.

The endpoint only says how to stratify, which models and baselines exist, what one unit
predicts and how the predictions become metrics.

Example
-------
>>> from radsurv.study import SurvivalStudy
>>> result = SurvivalStudy("survival_info.csv", covariates="age").run()   # doctest: +SKIP
>>> result.summary                                                       # doctest: +SKIP
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from radsurv.evaluation.cv import Fold, ProgressCallback, run_folds

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """A model or baseline of a study: its name, role and input columns."""

    name: str
    role: str  # "model" or "baseline"
    columns: tuple[str, ...]


@dataclass(frozen=True)
class Task:
    """One unit of work: a model on a fold, with the real (-1) or a permuted target."""

    fold: Fold
    spec: ModelSpec
    permutation: int = -1


class Endpoint:
    """What an endpoint plugs into the engine (subclassed by survival and binary)."""

    #: ``"survival"`` or ``"binary"``.
    kind: str = ""
    #: Metric of the paired comparison and the permutation test; higher is better.
    primary_metric: str = ""

    def strata(self, y: Any) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def check(self, y: Any, n_splits: int) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def build(self, spec: ModelSpec, design: Any) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def fit_predict(
        self, estimator: Any, task: Task, X: pd.DataFrame, y: Any
    ) -> Any:  # pragma: no cover - interface
        raise NotImplementedError

    def fold_values(self, output: Any, y: Any) -> float:  # pragma: no cover - interface
        """The primary metric of one unit's output (its test fold)."""
        raise NotImplementedError

    def cv_statistic(self, outputs: Sequence[Any], y: Any) -> float:  # pragma: no cover
        """The permutation-test statistic of one model's outputs over a fold plan."""
        raise NotImplementedError

    def fit_final(self, estimator: Any, spec: ModelSpec, X: pd.DataFrame, y: Any) -> Any:
        """Fit on all cases; returns what the locked model keeps (default: the estimator)."""
        return estimator.fit(X, y)  # pragma: no cover - interface

    def permute(self, y: Any, rng: np.random.Generator) -> Any:
        """A permuted copy of the target (rows of a structured array move together)."""
        return y[rng.permutation(len(y))]


def model_input(X: pd.DataFrame, spec: ModelSpec) -> pd.DataFrame:
    """The columns of ``X`` a spec uses (a constant dummy column when it uses none)."""
    if spec.columns:
        return X[list(spec.columns)]
    return pd.DataFrame({"_": np.zeros(len(X))}, index=X.index)


def run_unit(
    task: Task,
    *,
    endpoint: Endpoint,
    design: Any,
    y: Any,
    y_permuted: dict[int, Any],
    harmonizer: Any = None,
) -> Any:
    """The one fit/predict unit: build the spec's estimator, fit on train, predict test.

    With a ``harmonizer`` (:class:`radsurv.study.harmonize.Harmonizer`) the feature columns are
    harmonised for this fold first (fitted on its training rows only), for specs that use them.
    """
    target = y if task.permutation < 0 else y_permuted[task.permutation]
    estimator = endpoint.build(task.spec, design)
    X = design.X
    if harmonizer is not None and set(task.spec.columns) & set(harmonizer.feature_columns):
        X, _ = harmonizer.apply(X, task.fold)
    return endpoint.fit_predict(estimator, task, model_input(X, task.spec), target)


def corrected_paired_t(
    differences: Sequence[float], n_train: float, n_test: float, alpha: float = 0.05
) -> dict[str, Any]:
    """Nadeau-Bengio corrected resampled t-test of per-fold differences.

    Over J test folds of a repeated K-fold plan, the folds' training sets overlap, so the plain
    paired t-test underestimates the variance. Nadeau & Bengio (2003) inflate it:
    ``var = (1/J + n_test/n_train) * s^2``; ``t = mean / sqrt(var)`` with J - 1 degrees of
    freedom. Returns the mean difference, its corrected 95 % CI and the two-sided p-value.
    """
    from scipy import stats

    d = np.asarray([v for v in differences if np.isfinite(v)], dtype=float)
    j = len(d)
    out: dict[str, Any] = {
        "difference": float(np.mean(d)) if j else math.nan,
        "ci95": [math.nan, math.nan],
        "p_value": math.nan,
        "n_folds": j,
        "method": "Nadeau-Bengio corrected resampled t-test over test folds "
        "(variance x (1/J + n_test/n_train), J - 1 df)",
    }
    if j < 2:
        return out
    s2 = float(np.var(d, ddof=1))
    var = (1.0 / j + n_test / max(n_train, 1.0)) * s2
    half = float(stats.t.ppf(1 - alpha / 2, j - 1)) * math.sqrt(var)
    mean = out["difference"]
    out["ci95"] = [mean - half, mean + half]
    if var <= 0:
        out["p_value"] = 1.0 if mean == 0 else 0.0
    else:
        out["p_value"] = float(2 * stats.t.sf(abs(mean) / math.sqrt(var), j - 1))
    return out


@dataclass
class EngineRun:
    """Raw results of :func:`run_engine` (endpoints turn them into reports)."""

    folds: list[Fold]
    specs: list[ModelSpec]
    outputs: list[Any]  # one per (spec, fold), in spec-major order
    n_splits: int
    n_repeats: int
    permutation: dict[str, dict[str, Any]] = field(default_factory=dict)
    comparisons: dict[str, dict[str, Any]] = field(default_factory=dict)
    per_fold: pd.DataFrame = field(default_factory=pd.DataFrame)
    finals: dict[str, Any] = field(default_factory=dict)
    final_errors: dict[str, str] = field(default_factory=dict)
    reference: str | None = None
    plan: Any = None  # radsurv.study.folds.FoldPlan
    harmonizer: Any = None
    structure: Any = None

    def outputs_of(self, name: str) -> list[Any]:
        """The outputs of one model or baseline, in fold order."""
        return [o for o, (s, _) in zip(self.outputs, self._keys(), strict=True) if s.name == name]

    def _keys(self) -> list[tuple[ModelSpec, Fold]]:
        return [(s, f) for s in self.specs for f in self.folds]


def run_engine(
    endpoint: Endpoint,
    design: Any,
    y: Any,
    specs: Sequence[ModelSpec],
    *,
    cv: str = "5x5",
    seed: int = 0,
    n_jobs: int = 1,
    permutations: int = 0,
    permutation_repeats: int = 1,
    reference: str | None = None,
    fit_final: bool = True,
    progress: ProgressCallback | None = None,
    structure: pd.DataFrame | None = None,
    scheme: Any = None,
    harmonizer: Any = None,
) -> EngineRun:
    """Cross-validate every spec on one fold plan; permutation test; comparisons; final fits.

    Parameters
    ----------
    endpoint
        The endpoint definition.
    design
        A :class:`~radsurv.study.design.Design` (its ``X`` rows align with ``y``).
    y
        The target (structured survival array or 0/1 array).
    specs
        Models then baselines.
    reference
        Baseline every model is compared with (paired, on the same folds).
    structure
        The cohort structure (``subject_id``, ``site``, ``timepoint``) aligned with the rows;
        folds never split a subject.
    scheme
        A :class:`radsurv.study.folds.CVScheme` (default: parsed from ``cv``).
    harmonizer
        In-fold feature harmonisation (:mod:`radsurv.study.harmonize`), or None.
    """
    from radsurv.study.folds import parse_scheme, plan_folds

    scheme = scheme if scheme is not None else parse_scheme(cv)
    endpoint.check(y, scheme.n_splits if scheme.kind in ("kfold", "site-kfold") else 2)
    plan = plan_folds(
        scheme, endpoint.strata(y), structure, seed, describe=endpoint.stratum_label,
        context=f"{endpoint.kind} study, outer CV",
    )  # fmt: skip
    folds, n_splits, n_repeats = plan.folds, plan.n_splits, plan.n_repeats
    rng = np.random.default_rng([seed, 7919])
    y_perm = {i: endpoint.permute(y, rng) for i in range(permutations)}
    runner = partial(
        run_unit,
        endpoint=endpoint,
        design=design,
        y=y,
        y_permuted=y_perm,
        harmonizer=harmonizer,
    )
    tasks = [Task(f, s) for s in specs for f in folds]
    log.info(
        "%s study: %d cases, %d models + baselines, %d folds x %d repeats",
        endpoint.kind,
        len(design.X),
        len(specs),
        n_splits,
        n_repeats,
    )
    outputs = run_folds(runner, tasks, n_jobs=n_jobs, progress=progress, what="cross-validation")  # type: ignore[arg-type]
    run = EngineRun(folds, list(specs), list(outputs), n_splits, n_repeats, reference=reference)
    run.plan = plan
    run.harmonizer = harmonizer
    run.structure = structure
    rows = []
    for task, out in zip(tasks, outputs, strict=True):
        rows.append(
            {
                "model": task.spec.name,
                "role": task.spec.role,
                "repeat": task.fold.repeat,
                "fold": task.fold.fold,
                "held_out": task.fold.group,
                "n_train": len(task.fold.train),
                "n_test": len(task.fold.test),
                endpoint.primary_metric: endpoint.fold_values(out, y),
            }
        )
    run.per_fold = pd.DataFrame(rows)
    if reference is not None and any(s.name == reference for s in specs):
        run.comparisons = compare_to_reference(run, endpoint.primary_metric, reference)
    if permutations:
        run.permutation = _permutation_test(
            endpoint, design, y, y_perm, specs, run, plan, permutation_repeats, seed, n_jobs,
            progress,
        )  # fmt: skip
    if fit_final:
        X_all = design.X
        if harmonizer is not None:
            idx = np.arange(len(design.X))
            X_all, _ = harmonizer.apply(design.X, Fold(0, 0, idx, idx[:0]))
        for spec in specs:
            try:
                est = endpoint.build(spec, design)
                run.finals[spec.name] = endpoint.fit_final(est, spec, model_input(X_all, spec), y)
            except Exception as exc:  # reported; the CV results stay
                log.warning("final %s could not be fitted on all cases: %s", spec.name, exc)
                run.final_errors[spec.name] = f"{type(exc).__name__}: {exc}"
    return run


def compare_to_reference(run: EngineRun, metric: str, reference: str) -> dict[str, dict[str, Any]]:
    """Per model: paired difference of ``metric`` to ``reference`` on the same test folds."""
    table = run.per_fold
    ref = table[table.model == reference].set_index(["repeat", "fold"])
    out: dict[str, dict[str, Any]] = {}
    for spec in run.specs:
        if spec.name == reference:
            continue
        mine = table[table.model == spec.name].set_index(["repeat", "fold"])
        diff = (mine[metric] - ref[metric]).to_numpy(dtype=float)
        res = corrected_paired_t(diff, float(mine["n_train"].mean()), float(mine["n_test"].mean()))
        res.update(reference=reference, metric=metric)
        out[spec.name] = res
    return out


def _permutation_test(
    endpoint: Endpoint,
    design: Any,
    y: Any,
    y_perm: dict[int, Any],
    specs: Sequence[ModelSpec],
    run: EngineRun,
    plan: Any,
    repeats: int,
    seed: int,
    n_jobs: int,
    progress: ProgressCallback | None = None,
) -> dict[str, dict[str, Any]]:
    """Rerun the CV of every model on permuted targets (the first ``repeats`` repeats).

    K-fold plans are re-stratified on the permuted target; site-wise plans keep their folds
    (they are fixed by the sites).
    """
    from dataclasses import replace

    from radsurv.study.folds import plan_folds

    reps = min(repeats, run.n_repeats)
    models = [s for s in specs if s.role == "model"]
    tasks: list[Task] = []
    structure = getattr(run, "structure", None)
    for i, yp in y_perm.items():
        if plan.scheme.kind == "kfold":
            scheme = replace(plan.scheme, n_repeats=reps)
            folds = plan_folds(
                scheme, endpoint.strata(yp), structure, seed, describe=endpoint.stratum_label,
                context=f"permutation {i + 1}",
            ).folds  # fmt: skip
        else:
            folds = [f for f in plan.folds if f.repeat < reps]
        tasks += [Task(f, s, i) for s in models for f in folds]
    log.info("permutation test: %d permutations x %d tasks", len(y_perm), len(tasks))
    runner = partial(
        run_unit,
        endpoint=endpoint,
        design=design,
        y=y,
        y_permuted=y_perm,
        harmonizer=run.harmonizer,
    )
    outputs = run_folds(runner, tasks, n_jobs=n_jobs, progress=progress, what="permutation test")  # type: ignore[arg-type]
    from radsurv.evaluation.classification_metrics import permutation_p_value

    result: dict[str, dict[str, Any]] = {}
    for spec in models:
        real = [
            o
            for o, (s, f) in zip(run.outputs, run._keys(), strict=True)
            if s.name == spec.name and f.repeat < reps
        ]
        observed = endpoint.cv_statistic(real, y)
        permuted = []
        for i, yp in y_perm.items():
            mine = [
                o
                for o, t in zip(outputs, tasks, strict=True)
                if t.spec.name == spec.name and t.permutation == i
            ]
            permuted.append(endpoint.cv_statistic(mine, yp))
        n = len(permuted)
        result[spec.name] = {
            "statistic": f"mean out-of-fold {endpoint.primary_metric} over the first {reps} "
            "CV repeat(s)",
            "observed": observed,
            "permuted": permuted,
            "p_value": permutation_p_value(observed, permuted),
            "n_permutations": n,
            "resolution": 1.0 / (n + 1),
        }
    return result
