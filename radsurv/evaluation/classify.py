"""Cross-validated binary classification: models and baselines on the same folds, permutation test.

:func:`run_classification` runs the study engine (:mod:`radsurv.study.engine`, the binary
endpoint :mod:`radsurv.study.endpoints.binary`) on a design matrix built by hand; this module
keeps the binary endpoint's settings, result type, metric summaries and the features reader.
It evaluates each requested classifier
(:mod:`radsurv.models.classifiers`) and a clinical-only baseline with repeated stratified K-fold
CV (:func:`radsurv.evaluation.cv.make_folds`, the same plan for every model), with everything
learnt inside the training folds:

- preprocessing, feature selection and class weights (the pipeline is fitted per fold);
- hyper-parameters when ``nested=True`` (inner GridSearchCV);
- the decision threshold: Youden's J on out-of-fold predictions of an inner
  ``threshold_folds``-fold CV of the training fold (training-set predictions would be
  over-fitted: a random forest separates its own training cases perfectly).

Metrics are computed per repeat on the pooled out-of-fold predictions of all cases (an AUC per
fold of 10 cases is too noisy to average) and summarised as the mean and SD over repeats with a
case-level bootstrap 95 % CI (:func:`radsurv.evaluation.classification_metrics.bootstrap_cis`).

The label-permutation test reruns the whole CV pipeline on permuted labels (``permutations``
times, on the first ``permutation_repeats`` repeats of the plan) and compares the mean
out-of-fold ROC AUC with the same statistic of the real labels; p = (1 + #{permuted >=
observed}) / (1 + permutations), so its resolution is 1 / (permutations + 1).

Example
-------
>>> result = run_classification(X, y, ClassifySettings(models=("logreg", "xgb")),
...                             covariates=["age"])                        # doctest: +SKIP
>>> result.metrics["models"]["logreg"]["roc_auc"]["mean"]                   # doctest: +SKIP
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

from radsurv.errors import ClinicalTableError, ConfigError, ModelError
from radsurv.evaluation.classification_metrics import (
    METRIC_NAMES,
    binary_metrics,
    bootstrap_cis,
    constant_within,
    youden_threshold,
)
from radsurv.evaluation.cv import parse_cv_spec
from radsurv.models.classifiers import (
    MODEL_NAMES,
    final_estimator,
    fit_quietly,
)

logger = logging.getLogger(__name__)


class ClassificationInputError(ClinicalTableError):
    """Features, labels or covariates cannot be turned into a classification design."""


class ClassificationCVError(ModelError):
    """The labels do not allow the requested cross-validation (e.g. fewer positives than folds)."""


@dataclass(frozen=True)
class ClassifySettings:
    """Settings of a classification run (all recorded in the report and metrics.json).

    Attributes
    ----------
    models
        Classifiers to evaluate, from :data:`radsurv.models.classifiers.MODEL_NAMES`.
    cv
        ``FOLDSxREPEATS`` (e.g. ``5x5``).
    seed
        Seeds the folds, the models, the permutations and the bootstrap.
    k
        Features kept by the in-fold k-best selection (``None``: all).
    corr_threshold
        |r| above which correlated features are dropped in-fold (``None``: off).
    nested
        Tune hyper-parameters by an inner CV inside every training fold.
    threshold_folds
        Folds of the inner CV whose out-of-fold predictions choose the Youden threshold.
    permutations
        Label permutations for the AUC permutation test (0 disables it).
    permutation_repeats
        Repeats of the CV plan run per permutation (the observed statistic uses the same
        number of repeats of the real run).
    n_boot
        Case-level bootstrap resamples for the CIs.
    n_jobs
        Parallel processes for the folds.
    """

    models: tuple[str, ...] = ("logreg",)
    cv: str = "5x5"
    seed: int = 0
    k: int | None = 20
    corr_threshold: float | None = 0.95
    nested: bool = False
    threshold_folds: int = 3
    permutations: int = 20
    permutation_repeats: int = 1
    n_boot: int = 1000
    n_jobs: int = 1

    def validate(self) -> tuple[int, int]:
        """Check the values; return ``(n_splits, n_repeats)``."""
        unknown = [m for m in self.models if m not in MODEL_NAMES]
        if unknown or not self.models:
            raise ConfigError(
                f"unknown classifier(s) {unknown or '(none given)'}; choose from "
                f"{', '.join(MODEL_NAMES)}"
            )
        if self.permutations < 0 or self.n_boot < 0:
            raise ConfigError("--permutations and the bootstrap size must be >= 0")
        if self.threshold_folds < 2:
            raise ConfigError(f"threshold_folds must be >= 2, got {self.threshold_folds}")
        spec = str(self.cv).strip()
        if spec.lower() == "site":  # leave one site out (radsurv.study.folds)
            n_splits, n_repeats = 2, 1
        else:
            n_splits, n_repeats = parse_cv_spec(
                spec[5:] if spec.lower().startswith("site:") else spec
            )
        if self.permutation_repeats < 1:
            raise ConfigError("permutation_repeats must be >= 1")
        return n_splits, n_repeats


@dataclass
class ClassificationResult:
    """Everything a classification run produced (see :func:`run_classification`).

    Attributes
    ----------
    predictions
        Long table: ``case_id, role (model/baseline), model, repeat, fold, label, probability,
        threshold, predicted``.
    per_repeat
        One row per (role, model, repeat) with every metric of :data:`METRIC_NAMES`.
    metrics
        The metrics.json structure: ``{"models": {NAME: {METRIC: {"mean", "sd", "ci95", ...}}},
        "baselines": {...}, "n", "positives", ...}``.
    permutation
        Per model: observed statistic, permuted values, p-value, resolution.
    selection_frequency
        Per model: share of outer folds in which each feature survived in-fold selection.
    final_models
        Per model and baseline: the estimator fitted on all cases.
    final_thresholds
        Per model and baseline: the Youden threshold of an inner CV on all cases.
    final_weights
        Per model: signed coefficients or importances of the final model's features.
    """

    predictions: pd.DataFrame
    per_repeat: pd.DataFrame
    metrics: dict[str, Any]
    permutation: dict[str, dict[str, Any]] = field(default_factory=dict)
    selection_frequency: dict[str, pd.Series] = field(default_factory=dict)
    final_models: dict[str, Any] = field(default_factory=dict)
    final_thresholds: dict[str, float] = field(default_factory=dict)
    final_weights: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class _TaskOutput:
    role: str
    name: str
    permutation: int
    repeat: int
    fold: int
    test: np.ndarray
    probability: np.ndarray
    threshold: float
    selected: list[str]


def inner_cv_threshold(
    estimator: Any, X: pd.DataFrame, y: np.ndarray, folds: int, seed: int, where: str
) -> float:
    """Youden threshold from out-of-fold predictions of an inner CV on (X, y).

    ``estimator`` is fitted already (a GridSearchCV contributes its best pipeline, so the inner
    CV does not search again). Falls back to the fitted model's own predictions (logged) when a
    class has fewer members than ``folds``.
    """
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    pipe = final_estimator(estimator)
    if min(int(y.sum()), int(len(y) - y.sum())) < folds:
        logger.warning(
            "%s: too few cases of one class for a %d-fold inner CV; the Youden threshold comes "
            "from the training predictions",
            where,
            folds,
        )
        return youden_threshold(y, pipe.predict_proba(X)[:, 1])
    oof = np.empty(len(y))
    inner = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in inner.split(np.zeros(len(y)), y):
        est = fit_quietly(clone(pipe), X.iloc[train], y[train], f"{where} threshold CV")
        oof[test] = est.predict_proba(X.iloc[test])[:, 1]
    return youden_threshold(y, oof)


def check_labels_for_cv(y: np.ndarray, n_splits: int, where: str = "labels") -> None:
    """Raise :class:`ClassificationCVError` unless both classes have at least ``n_splits`` cases."""
    y = np.asarray(y)
    pos = int(np.sum(y == 1))
    neg = int(np.sum(y == 0))
    if pos == 0 or neg == 0:
        raise ClassificationCVError(
            f"{where}: a single class ({pos} positive, {neg} negative); a classifier needs both"
        )
    if min(pos, neg) < n_splits:
        raise ClassificationCVError(
            f"{where}: {pos} positive and {neg} negative cases cannot fill {n_splits} stratified "
            f"folds (each fold needs at least one of each); use --cv {max(2, min(pos, neg))}xR "
            "or more cases"
        )


def run_classification(
    X: pd.DataFrame,
    y: pd.Series | np.ndarray,
    settings: ClassifySettings | None = None,
    *,
    covariates: Sequence[str] = (),
    source: str = "labels",
) -> ClassificationResult:
    """Cross-validate classifiers and the clinical baseline on the same folds.

    A compatibility entry point of the study engine (:mod:`radsurv.study.engine` with the
    binary endpoint :mod:`radsurv.study.endpoints.binary`), for a design matrix built by hand;
    :class:`radsurv.study.BinaryStudy` builds it from files.

    Parameters
    ----------
    X
        Design matrix indexed by case id: radiomic features plus the covariate columns (numeric;
        NaNs are imputed in-fold).
    y
        0/1 labels aligned with ``X`` (a Series indexed like ``X`` or an array).
    settings
        :class:`ClassifySettings`; defaults when None.
    covariates
        Columns of ``X`` that are clinical covariates: forced into every model and the only
        inputs of the baseline (the baseline is the training prevalence when empty).
    source
        Where the labels came from (a file name), for error messages.

    Returns
    -------
    ClassificationResult

    Raises
    ------
    ClassificationInputError
        Non-numeric columns, NaN labels, misaligned inputs, unknown covariates.
    ClassificationCVError
        A single class or fewer cases of a class than folds.
    """
    from radsurv.study.design import CovariateEncoder, Design
    from radsurv.study.endpoints.binary import BinaryEndpoint, binary_specs, classification_result
    from radsurv.study.engine import run_engine

    settings = settings or ClassifySettings()
    n_splits, _ = settings.validate()
    X, y_arr, covariates = _validate_design(X, y, covariates)
    check_labels_for_cv(y_arr, n_splits, source)
    design = Design(
        X=X,
        clinical=pd.DataFrame({"label": y_arr}, index=X.index),
        covariate_columns=list(covariates),
        feature_columns=[c for c in X.columns if c not in covariates],
        encoder=CovariateEncoder(),
    )
    specs = binary_specs(design, settings.models)
    run = run_engine(
        BinaryEndpoint(settings, source),
        design,
        y_arr,
        specs,
        cv=settings.cv,
        seed=settings.seed,
        n_jobs=settings.n_jobs,
        permutations=settings.permutations,
        permutation_repeats=settings.permutation_repeats,
        reference=specs[-1].name,
    )
    return classification_result(run, X, y_arr, list(covariates), settings)


def _validate_design(
    X: pd.DataFrame, y: pd.Series | np.ndarray, covariates: Sequence[str]
) -> tuple[pd.DataFrame, np.ndarray, list[str]]:
    if not isinstance(X, pd.DataFrame):
        X = pd.DataFrame(np.asarray(X))
    X = X.copy()
    X.columns = [str(c) for c in X.columns]
    bad = [c for c in X.columns if not pd.api.types.is_numeric_dtype(X[c])]
    if bad:
        raise ClassificationInputError(
            f"design matrix: non-numeric columns {bad[:5]}{' ...' if len(bad) > 5 else ''}; "
            "encode them (covariates) or drop them (diagnostics) first"
        )
    if isinstance(y, pd.Series):
        if not y.index.equals(X.index):
            raise ClassificationInputError(
                "labels and design matrix are not aligned on case id; join them first "
                "(radsurv.clinical.join_tables)"
            )
        y_values = y.to_numpy()
    else:
        y_values = np.asarray(y)
    if len(y_values) != len(X):
        raise ClassificationInputError(
            f"{len(y_values)} labels for {len(X)} rows of the design matrix"
        )
    y_float = pd.to_numeric(pd.Series(y_values), errors="coerce").to_numpy(dtype=float)
    nan_rows = np.flatnonzero(np.isnan(y_float))
    if nan_rows.size:
        ids = [str(X.index[i]) for i in nan_rows[:5]]
        raise ClassificationInputError(
            f"labels: {nan_rows.size} missing (NaN) labels, e.g. cases {ids}; drop or fix them "
            "(read_binary_labels(..., drop_unknown=True) reports what it drops)"
        )
    if not np.isin(y_float, (0.0, 1.0)).all():
        odd = sorted(set(y_float[~np.isin(y_float, (0.0, 1.0))].tolist()))[:5]
        raise ClassificationInputError(f"labels must be 0/1, found {odd}")
    missing = [c for c in covariates if c not in X.columns]
    if missing:
        raise ClassificationInputError(
            f"covariates {missing} are not columns of the design matrix; "
            f"available covariate-like columns: {[c for c in X.columns][:10]}"
        )
    return X, y_float.astype(int), [str(c) for c in covariates]


def _predictions_table(
    outputs: Sequence[_TaskOutput], index: pd.Index, y: np.ndarray
) -> pd.DataFrame:
    rows = []
    for o in outputs:
        if o.permutation >= 0:
            continue
        predicted = (
            (o.probability >= o.threshold).astype(int)
            if not math.isnan(o.threshold)
            else np.full(len(o.test), -1)
        )
        rows.append(
            pd.DataFrame(
                {
                    "case_id": np.asarray(index)[o.test].astype(str),
                    "role": o.role,
                    "model": o.name,
                    "repeat": o.repeat + 1,
                    "fold": o.fold + 1,
                    "label": y[o.test],
                    "probability": o.probability,
                    "threshold": o.threshold,
                    "predicted": predicted,
                }
            )
        )
    table = pd.concat(rows, ignore_index=True)
    return table.sort_values(["role", "model", "repeat", "case_id"], kind="stable").reset_index(
        drop=True
    )


def _per_repeat_metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (role, model, repeat), grp in predictions.groupby(["role", "model", "repeat"], sort=False):
        m = binary_metrics(
            grp["label"].to_numpy(),
            grp["probability"].to_numpy(),
            grp["predicted"].to_numpy(),
            groups=grp["fold"].to_numpy(),
        )
        rows.append({"role": role, "model": model, "repeat": repeat, **m})
    return pd.DataFrame(rows)


def oof_matrix(predictions: pd.DataFrame, role: str, model: str) -> tuple[np.ndarray, ...]:
    """(case ids, labels, probabilities (repeats x cases), predicted classes) of one model."""
    sub = predictions[(predictions["role"] == role) & (predictions["model"] == model)]
    prob = sub.pivot(index="case_id", columns="repeat", values="probability")
    pred = sub.pivot(index="case_id", columns="repeat", values="predicted")
    labels = sub.drop_duplicates("case_id").set_index("case_id")["label"].reindex(prob.index)
    return (
        prob.index.to_numpy(),
        labels.to_numpy(dtype=int),
        prob.to_numpy(dtype=float).T,
        pred.to_numpy(dtype=int).T,
    )


def _summaries(
    predictions: pd.DataFrame,
    per_repeat: pd.DataFrame,
    specs: Sequence[tuple[str, str]],
    settings: ClassifySettings,
) -> dict[tuple[str, str], dict[str, Any]]:
    from radsurv.evaluation.report import summarise_metric

    out: dict[tuple[str, str], dict[str, Any]] = {}
    for role, name in specs:
        rows = per_repeat[(per_repeat["role"] == role) & (per_repeat["model"] == name)]
        _, labels, probs, preds = oof_matrix(predictions, role, name)
        sub = predictions[(predictions["role"] == role) & (predictions["model"] == name)]
        no_ranking = all(
            constant_within(g["probability"].to_numpy(), g["fold"].to_numpy())
            for _, g in sub.groupby("repeat")
        )
        cis = bootstrap_cis(
            labels, list(probs), list(preds), n_boot=settings.n_boot, no_ranking=no_ranking
        )
        entry: dict[str, Any] = {}
        for metric in METRIC_NAMES:
            s = summarise_metric(rows[metric].to_numpy(), settings.seed, n_boot=200)
            entry[metric] = {
                "mean": s["mean"],
                "sd": s["sd"],
                "ci95": list(cis[metric]),
                "repeats": s["n"],
                "undefined_repeats": s["n_undefined"],
            }
        out[(role, name)] = entry
    return out


def _selection_frequency(
    outputs: Sequence[_TaskOutput], models: Sequence[str], n_folds: int
) -> dict[str, pd.Series]:
    freq: dict[str, pd.Series] = {}
    for m in models:
        counts: dict[str, int] = {}
        for o in outputs:
            if o.role == "model" and o.name == m and o.permutation < 0:
                for feat in o.selected:
                    counts[feat] = counts.get(feat, 0) + 1
        freq[m] = (pd.Series(counts, dtype=float) / n_folds).sort_values(ascending=False)
    return freq


def read_feature_table(path: str | Path) -> pd.DataFrame:
    """Read a features table (one row per case) as numeric columns indexed by ``case_id``.

    The id column is ``case_id`` (or another id name :mod:`radsurv.clinical` accepts, or the
    first column). Non-numeric columns (e.g. PyRadiomics ``diagnostics_*`` strings, status
    text) are left out and logged; the numeric ``diagnostics_*`` columns and the cohort keys
    (``subject_id``, ``timepoint``, ``site``, ``baseline_timepoint`` of a ``radsurv delta``
    table) are left out too because they describe the image, not the tumour.

    Raises
    ------
    ClassificationInputError
        Missing file, no rows, duplicate or empty case ids, no numeric feature.
    """
    from radsurv.clinical import ID_COLUMNS

    path = Path(path)
    if not path.is_file():
        raise ClassificationInputError(f"{path}: features table not found")
    sep = "\t" if path.suffix.lower() in {".tsv", ".txt"} else ","
    if path.suffix.lower() == ".parquet":
        df = pd.read_parquet(path)
        if df.index.name and df.index.name.lower() in ID_COLUMNS:
            df = df.reset_index()
    else:
        try:
            df = pd.read_csv(path, sep=sep, low_memory=False)
        except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise ClassificationInputError(f"{path}: cannot be read as a table ({exc})") from exc
    if df.empty:
        raise ClassificationInputError(f"{path}: features table has no rows")
    lower = {str(c).lower(): c for c in df.columns}
    id_col = next((lower[c] for c in ID_COLUMNS if c in lower), df.columns[0])
    ids = df[id_col].astype(str).str.strip()
    if ids.eq("").any() or df[id_col].isna().any():
        rows = (np.flatnonzero(ids.eq("") | df[id_col].isna()) + 2).tolist()[:5]
        raise ClassificationInputError(f"{path}: empty case id in column {id_col} at lines {rows}")
    dup = ids[ids.duplicated()].unique().tolist()
    if dup:
        raise ClassificationInputError(
            f"{path}: duplicate case ids in column {id_col}: {dup[:5]}; keep one row per case"
        )
    df = df.drop(columns=[id_col])
    df.index = pd.Index(ids, name="case_id")
    numeric = [
        c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and df[c].dtype != bool
    ]
    # cohort keys (e.g. of a `radsurv delta` table) describe the scan, not the tumour
    keys = {"subject_id", "timepoint", "site", "baseline_case_id", "baseline_timepoint"}
    dropped = [
        c
        for c in df.columns
        if c not in numeric or str(c).startswith("diagnostics_") or str(c) in keys
    ]
    keep = [c for c in numeric if c not in dropped]
    if dropped:
        logger.info(
            "%s: %d non-feature columns left out (e.g. %s)", path, len(dropped), dropped[:3]
        )
    if not keep:
        raise ClassificationInputError(f"{path}: no numeric feature columns")
    return df[keep].astype(float)


def covariate_frame(
    names: Sequence[str], table: pd.DataFrame, source: str = "clinical table"
) -> pd.DataFrame:
    """Encoded covariate columns of a clinical table (indexed by case id).

    The study engine's one encoder (:class:`radsurv.study.design.CovariateEncoder`): numeric
    columns as they are (NaN imputed in-fold, plus a ``{name}_missing`` indicator when some are
    missing); text columns one-hot ``{name}_{level}`` except a reference level (``resection``:
    STR), a missing value scoring 0 on every level and 1 on ``{name}_missing``.

    Parameters
    ----------
    names
        Covariate names (``name:categorical`` forces a type), matched case-insensitively.
    table
        E.g. :func:`radsurv.clinical.read_survival_table` output or a manifest.
    source
        Name of the table for messages.
    """
    from radsurv.study.design import CovariateEncoder, parse_covariates

    try:
        enc = CovariateEncoder(parse_covariates(list(names))).fit(table, source)
    except ConfigError as exc:
        raise ClassificationInputError(str(exc)) from exc
    return enc.transform(table, source)
