"""Locked models: fit once on all training cases, then predict or evaluate new cohorts.

A locked model is a folder (``radsurv survival fit ... --out DIR`` writes ``DIR/model/``):

- ``model.json``: endpoint, the models and baselines with their input columns (and, binary,
  the decision threshold chosen in training), the expected feature columns, the covariates
  with their types, levels and reference levels, the feature-extraction settings hash of the
  training features (``<features>.provenance.json``), the training cohort summary (size,
  events, follow-up, covariate distributions), training-defined risk-group cut-offs, the CV
  metrics and the paired comparison with the baseline, package versions;
- ``pipelines/NAME.skops``: each pipeline refitted on all training cases (one file format:
  :mod:`radsurv.models.io`).

:func:`predict_locked` applies it to new cases and refuses, naming each problem, features
that are missing, a different extraction settings hash, covariates that are missing and
covariate levels never seen in training. :func:`evaluate_locked` scores it on a labelled
external cohort (TRIPOD type 3/4 validation).

Survival predictions: ``risk`` (higher = worse), ``S_{t}d`` = predicted survival probability
at each requested day, ``predicted_days`` = the median of the predicted survival curve (first
time S(t) <= 0.5), bounded by the training follow-up: where the curve stays above 0.5 up to the
last training event time, that time (a lower bound of the median); for XGBoost AFT the median
of the predicted time distribution, clipped to [first, last] training time. ``brats_class``:
``short`` (< 300 days), ``mid`` (300-450), ``long`` (> 450).

Example
-------
>>> result = SurvivalStudy("survival_info.csv", features="f.csv").run()   # doctest: +SKIP
>>> result.save_model("out/model")                                      # doctest: +SKIP
>>> predict_locked("out/model", "val_features.csv", "survival_evaluation.csv",
...                out="pred")                                          # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsurv.errors import ModelError

log = logging.getLogger(__name__)

FORMAT = "radsurv-locked-model"
FORMAT_VERSION = 1
DEFAULT_TIMES: tuple[float, ...] = (180.0, 365.0, 730.0)
BRATS_CLASSES: tuple[str, str, str] = ("short", "mid", "long")


class LockedModelError(ModelError):
    """A locked model cannot be applied to these inputs (each problem is named)."""


# ------------------------------------------------------------------------------------ saving


def save_locked(result: Any, out: str | Path) -> Path:
    """Write ``out/model.json`` and ``out/pipelines/*.skops`` from a :class:`StudyResult`."""
    from radsurv.evaluation.report import package_versions, write_metrics_json
    from radsurv.models.io import save_estimator
    from radsurv.study.design import cohort_summary
    from radsurv.study.engine import model_input

    out = Path(out)
    if (out / "model.json").is_file():  # a locked model of an earlier run: no stale pipeline
        import shutil

        shutil.rmtree(out / "pipelines", ignore_errors=True)
        (out / "model.json").unlink()
    out.mkdir(parents=True, exist_ok=True)
    design = result.design
    entries = result._entries()
    models: dict[str, Any] = {}
    for spec in result.run.specs:
        final = result.run.finals.get(spec.name)
        if final is None:
            continue
        path = save_estimator(final.estimator, out / "pipelines" / f"{spec.name}.skops")
        info: dict[str, Any] = {
            "role": spec.role,
            "file": str(path.relative_to(out)),
            "input_columns": list(spec.columns),
            "params": final.params,
        }
        X = model_input(design.X, spec)
        if result.endpoint == "survival":
            risk = np.asarray(final.estimator.predict(X), dtype=float)
            info["risk_groups"] = {
                "cutoffs": [float(np.median(risk))],
                "labels": ["low", "high"],
                "rule": "median of the training cases' risk (final model)",
            }
        else:
            info["threshold"] = final.threshold
            info["threshold_rule"] = "Youden J on an inner CV of all training cases"
        cv_entry = entries.get(spec.name, {})
        info["cv_metrics"] = {
            k: {kk: v.get(kk) for kk in ("mean", "sd", "ci95")}
            for k, v in cv_entry.items()
            if isinstance(v, dict) and "mean" in v
        }
        if spec.name in result.run.comparisons:
            info["vs_baseline"] = result.run.comparisons[spec.name]
        models[spec.name] = info
    if not any(m["role"] == "model" for m in models.values()):
        raise ModelError("no final model could be fitted on all cases: nothing to lock")
    cohort: dict[str, Any] = {"n": len(design.X), "covariates": cohort_summary(design)}
    if result.endpoint == "survival":
        ev, t = result.y["event"], result.y["time"]
        cohort.update(
            events=int(ev.sum()),
            censored=int((~ev).sum()),
            follow_up_days=[float(t.min()), float(t.max())],
            last_event_days=float(t[ev].max()) if ev.any() else float(t.max()),
            median_time_days=float(np.median(t)),
        )
    else:
        cohort.update(positives=int(np.sum(result.y)))
    encoders = design.encoder.to_list()
    base_enc = design.baseline_encoder.to_list() if design.baseline_encoder else []
    doc = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "endpoint": result.endpoint,
        "primary": next(s.name for s in result.run.specs if s.role == "model"),
        "reference_baseline": result.run.reference,
        "models": models,
        "features": list(design.feature_columns),
        "covariates": encoders,
        "baseline_covariates": base_enc,
        "features_settings_hash": result.inputs.get("features_settings_hash"),
        "training_cohort": cohort,
        "training_inputs": {k: v for k, v in result.inputs.items() if k != "settings"},
        "settings": result.inputs.get("settings", {}),
        "versions": package_versions(),
    }
    if result.endpoint == "binary" and result.labels is not None:
        doc["positive_class"] = result.labels.positive
        doc["negative_class"] = result.labels.negative
    write_metrics_json(doc, out / "model.json")
    log.info("locked model written to %s", out)
    return out


@dataclass
class LockedModel:
    """A loaded locked model folder."""

    path: Path
    doc: dict[str, Any]

    @property
    def endpoint(self) -> str:
        return self.doc["endpoint"]

    def name(self, model_name: str | None) -> str:
        name = model_name or self.doc["primary"]
        if name not in self.doc["models"]:
            raise LockedModelError(
                f"{self.path}: no model {name!r}; it holds {list(self.doc['models'])}"
            )
        return name

    def pipeline(self, name: str) -> Any:
        from radsurv.models.io import load_estimator

        return load_estimator(self.path / self.doc["models"][name]["file"], LockedModelError)

    def encoder(self) -> Any:
        from radsurv.study.design import CovariateEncoder

        return CovariateEncoder.from_list(
            list(self.doc.get("covariates", [])) + list(self.doc.get("baseline_covariates", []))
        )


def load_locked(path: str | Path) -> LockedModel:
    """Read a locked model folder (``model.json`` + ``pipelines/``)."""
    path = Path(path)
    meta = path / "model.json"
    if path.is_file() and path.name == "model.json":
        path, meta = path.parent, path
    if not meta.is_file():
        raise LockedModelError(
            f"{path}: no model.json; give the folder `radsurv survival fit --out DIR` wrote as "
            "DIR/model"
        )
    doc = json.loads(meta.read_text())
    if doc.get("format") != FORMAT:
        raise LockedModelError(f"{meta}: not a radsurv locked model (format {doc.get('format')})")
    return LockedModel(path, doc)


# ------------------------------------------------------------------------------------ inputs


def _read_inputs(
    model: LockedModel, features: Any, clinical: Any, *, need: Sequence[str]
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str]]:
    """(design X for the cases, clinical table, warnings); refuses naming every problem."""
    from radsurv.study.design import _find, features_settings_hash, read_clinical, read_features

    problems: list[str] = []
    warnings: list[str] = []
    if isinstance(features, pd.DataFrame):
        feats, fhash = features, None
    else:
        feats, fhash = read_features(features), features_settings_hash(features)
    trained_hash = model.doc.get("features_settings_hash")
    if trained_hash and fhash and fhash != trained_hash:
        problems.append(
            f"feature extraction settings hash {fhash} differs from the training features' "
            f"{trained_hash}: extract the features with the training settings"
        )
    elif trained_hash and not fhash:
        warnings.append(
            "the features have no provenance file: their extraction settings cannot be checked "
            f"against the training hash {trained_hash}"
        )
    expected = list(model.doc.get("features", []))
    missing_feats = [c for c in expected if c not in feats.columns]
    if missing_feats:
        more = "" if len(missing_feats) <= 10 else f" ... (+{len(missing_feats) - 10})"
        problems.append(
            f"{len(missing_feats)} feature column(s) the model needs are missing: "
            f"{', '.join(missing_feats[:10])}{more}"
        )
    enc = model.encoder()
    table = None
    if clinical is not None:
        table = clinical if isinstance(clinical, pd.DataFrame) else read_clinical(clinical)
    needed = [c for c in model.doc.get("covariates", []) if c["name"] in need or not need]
    if needed and table is None:
        problems.append(
            f"the model needs covariates {[c['name'] for c in needed]}: pass --clinical"
        )
    if table is not None:
        for cov in model.doc.get("covariates", []):
            if _find(table, cov["name"]) is None and _find(table, cov["source"]) is None:
                problems.append(
                    f"covariate {cov['name']!r} is not a column of the clinical table "
                    f"({list(table.columns)})"
                )
        for name, levels in enc.unseen_levels(table).items():
            cov = next(c for c in enc.covariates if c.name == name)
            problems.append(
                f"covariate {name!r}: level(s) {levels} never seen in training "
                f"(training levels {cov.levels})"
            )
        ids = list(table.index.astype(str))
        no_feats = [i for i in ids if i not in set(feats.index.astype(str))]
        if no_feats:
            problems.append(
                f"{len(no_feats)} case(s) of the clinical table have no features: "
                f"{', '.join(no_feats[:10])}"
            )
    else:
        ids = list(feats.index.astype(str))
    if problems:
        raise LockedModelError(
            f"cannot apply the locked model {model.path}:\n  - " + "\n  - ".join(problems)
        )
    X = pd.DataFrame(index=pd.Index(ids, name="case_id"))
    if table is not None and enc.covariates:
        present = [
            c
            for c in enc.covariates
            if _find(table, c.name) is not None or _find(table, c.source) is not None
        ]
        enc.covariates = present
        cov = enc.transform(table.set_axis(table.index.astype(str)))
        X = X.join(cov)
    fx = feats.copy()
    fx.index = fx.index.astype(str)
    X = X.join(fx[[c for c in expected if c not in X.columns]])
    return X, table, warnings


def _input(X: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    if not columns:
        return pd.DataFrame({"_": np.zeros(len(X))}, index=X.index)
    missing = [c for c in columns if c not in X.columns]
    if missing:
        raise LockedModelError(f"inputs {missing} could not be built from the given tables")
    return X[list(columns)]


def _survival_predictions(
    model: LockedModel, name: str, X: pd.DataFrame, times: Sequence[float]
) -> pd.DataFrame:
    from radsurv.evaluation.survival_metrics import brats_class, survival_at
    from radsurv.models.survival import predict_days

    info = model.doc["models"][name]
    pipe = model.pipeline(name)
    Xm = _input(X, info["input_columns"])
    risk = np.asarray(pipe.predict(Xm), dtype=float)
    out = pd.DataFrame({"case_id": X.index, "risk": risk})
    surv = survival_at(pipe, Xm, np.asarray(times, dtype=float))
    for j, t in enumerate(times):
        out[f"S_{int(t) if float(t).is_integer() else t}d"] = surv[:, j]
    cohort = model.doc["training_cohort"]
    lo, hi = cohort["follow_up_days"][0], cohort.get("last_event_days", cohort["follow_up_days"][1])
    days = np.clip(np.asarray(predict_days(pipe, Xm), dtype=float), lo, hi)
    out["predicted_days"] = days
    out["brats_class"] = [BRATS_CLASSES[c] for c in brats_class(days)]
    cut = info.get("risk_groups", {}).get("cutoffs", [np.nan])[0]
    out["risk_group"] = np.where(risk > cut, "high", "low")
    return out


def _binary_predictions(model: LockedModel, name: str, X: pd.DataFrame) -> pd.DataFrame:
    info = model.doc["models"][name]
    pipe = model.pipeline(name)
    p = pipe.predict_proba(_input(X, info["input_columns"]))[:, 1]
    thr = float(info["threshold"])
    pos = model.doc.get("positive_class", "1")
    neg = model.doc.get("negative_class", "0")
    return pd.DataFrame(
        {
            "case_id": X.index,
            "probability": p,
            "threshold": thr,
            "predicted": (p >= thr).astype(int),
            "predicted_class": np.where(p >= thr, pos, neg),
        }
    )


@dataclass
class Prediction:
    """What :func:`predict_locked` produced."""

    model_name: str
    predictions: pd.DataFrame
    submission: pd.DataFrame | None = None
    warnings: list[str] = field(default_factory=list)
    paths: dict[str, str] = field(default_factory=dict)


def predict_locked(
    model: str | Path | LockedModel,
    features: Any,
    clinical: Any = None,
    *,
    out: str | Path | None = None,
    times: Sequence[float] = DEFAULT_TIMES,
    model_name: str | None = None,
) -> Prediction:
    """Apply a locked model to new cases; write ``predictions.csv`` (and ``submission.csv``).

    Parameters
    ----------
    model
        Locked model folder (or :func:`load_locked` result).
    features
        Features of the new cases (CSV/Parquet path or DataFrame indexed by case id).
    clinical
        Clinical table of the new cases (any CSV or a DataFrame), needed when the model has
        covariates. When it is a BraTS form (e.g. the validation table
        ``BraTS20ID,Age,ResectionStatus``), survival predictions also give ``submission.csv``
        in the BraTS 2020 overall-survival format (``BraTS20ID,Survival_days``, one row per
        case of the table, in its order).
    times
        Days at which survival probabilities are given.

    Raises
    ------
    LockedModelError
        Missing feature columns, a different extraction settings hash, missing covariates,
        covariate levels never seen in training, cases without features (all named at once).
    """
    lm = model if isinstance(model, LockedModel) else load_locked(model)
    name = lm.name(model_name)
    X, table, warnings = _read_inputs(lm, features, clinical, need=())
    for w in warnings:
        log.warning(w)
    if lm.endpoint == "survival":
        preds = _survival_predictions(lm, name, X, times)
    else:
        preds = _binary_predictions(lm, name, X)
    res = Prediction(name, preds, warnings=warnings)
    if lm.endpoint == "survival" and table is not None and table.attrs.get("brats_form"):
        res.submission = pd.DataFrame(
            {
                "BraTS20ID": preds["case_id"].to_numpy(),
                "Survival_days": np.round(preds["predicted_days"].to_numpy()).astype(int),
            }
        )
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        preds.to_csv(out / "predictions.csv", index=False)
        res.paths["predictions"] = str(out / "predictions.csv")
        if res.submission is not None:
            res.submission.to_csv(out / "submission.csv", index=False)
            res.paths["submission"] = str(out / "submission.csv")
    return res


# ------------------------------------------------------------------------------------ evaluate


@dataclass
class Evaluation:
    """What :func:`evaluate_locked` produced."""

    endpoint: str
    model_name: str
    metrics: dict[str, Any]
    predictions: pd.DataFrame
    paths: dict[str, str] = field(default_factory=dict)

    def lines(self) -> list[str]:
        """Terminal lines: the main metric of the model and the baseline with CIs."""
        key = "harrell_c" if self.endpoint == "survival" else "roc_auc"
        out = []
        entries = {**self.metrics["models"], **self.metrics["baselines"]}
        for name, entry in entries.items():
            m = entry.get(key, {})
            ci = m.get("ci95", [math.nan, math.nan])
            out.append(
                f"{name:>16}: {key} {m.get('value', math.nan):.3f}, 95% bootstrap CI "
                f"[{ci[0]:.3f}, {ci[1]:.3f}] (n = {self.metrics['n']})"
                + (" (baseline, fitted on the training cohort)" if entry.get("baseline") else "")
            )
        return out


def _boot(
    func: Any, n: int, n_boot: int, seed: int, strata: np.ndarray | None = None
) -> dict[str, list[float]]:
    """Percentile bootstrap CIs of every value ``func(idx)`` returns (a dict of floats)."""
    rng = np.random.default_rng(seed)
    values: dict[str, list[float]] = {}
    for _ in range(n_boot):
        if strata is None:
            idx = rng.integers(0, n, n)
        else:
            idx = np.concatenate(
                [rng.choice(np.flatnonzero(strata == s), (strata == s).sum()) for s in (0, 1)]
            )
        try:
            res = func(idx)
        except Exception:  # noqa: BLE001  (a degenerate resample counts as undefined)
            continue
        for k, v in res.items():
            values.setdefault(k, []).append(v)
    out = {}
    for k, v in values.items():
        arr = np.asarray(v, dtype=float)
        arr = arr[np.isfinite(arr)]
        out[k] = (
            [float(np.percentile(arr, 2.5)), float(np.percentile(arr, 97.5))]
            if arr.size >= 10
            else [math.nan, math.nan]
        )
    return out


def _survival_evaluation(
    lm: LockedModel, names: list[str], X: pd.DataFrame, y: Any, n_boot: int, seed: int
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    from lifelines import KaplanMeierFitter
    from lifelines.statistics import logrank_test

    from radsurv.evaluation.survival_metrics import CALIBRATION_DAYS, fold_metrics, survival_at
    from radsurv.models.survival import predict_days

    ev, t = y["event"], y["time"]
    models: dict[str, Any] = {}
    frames = []
    extras: dict[str, Any] = {"km": {}, "calibration": {}}
    for name in names:
        info = lm.doc["models"][name]
        pipe = lm.pipeline(name)
        Xm = _input(X, info["input_columns"])
        risk = np.asarray(pipe.predict(Xm), dtype=float)
        days = np.asarray(predict_days(pipe, Xm), dtype=float)
        cache: dict[tuple[float, ...], np.ndarray] = {}

        def surv_all(times: np.ndarray, pipe: Any = pipe, Xm: Any = Xm, cache: Any = cache):
            key = tuple(np.round(np.asarray(times, dtype=float), 6))
            if key not in cache:
                cache[key] = survival_at(pipe, Xm, np.asarray(times, dtype=float))
            return cache[key]

        # IPCW weights (Uno's C, td-AUC, IBS) come from the external cohort's own censoring
        point, reasons = fold_metrics(y, y, risk, days, surv_all)

        def one(idx: np.ndarray, risk: Any = risk, days: Any = days, surv_all: Any = surv_all):
            yb = y[idx]

            def sf(times: np.ndarray, idx: np.ndarray = idx) -> np.ndarray:
                return surv_all(times)[idx]

            return fold_metrics(yb, yb, risk[idx], days[idx], sf)[0]

        cis = _boot(one, len(y), n_boot, seed)
        models[name] = {
            k: {"value": v, "ci95": cis.get(k, [math.nan, math.nan])} for k, v in point.items()
        }
        models[name]["undefined"] = reasons
        models[name]["baseline"] = info["role"] == "baseline"
        cut = info.get("risk_groups", {}).get("cutoffs", [float(np.median(risk))])[0]
        high = risk > cut
        pv = math.nan
        if high.any() and (~high).any():
            pv = float(logrank_test(t[high], t[~high], ev[high], ev[~high]).p_value)
        km = {}
        for flag, label in ((False, "low"), (True, "high")):
            if (high == flag).sum():
                kmf = KaplanMeierFitter().fit(t[high == flag], ev[high == flag])
                km[label] = {
                    "n": int((high == flag).sum()),
                    "median_days": float(kmf.median_survival_time_),
                    "timeline": kmf.survival_function_.index.tolist(),
                    "survival": kmf.survival_function_.iloc[:, 0].tolist(),
                }
        extras["km"][name] = {"cutoff": cut, "logrank_p": pv, "groups": km}
        s12 = surv_all(np.array([CALIBRATION_DAYS]))[:, 0]
        cal = []
        q = min(5, max(1, len(y) // 10))
        groups = pd.qcut(pd.Series(s12).rank(method="first"), q=q, labels=False)
        for g in range(q):
            m = (groups == g).to_numpy()
            kmf = KaplanMeierFitter().fit(t[m], ev[m])
            cal.append(
                {
                    "predicted": float(s12[m].mean()),
                    "observed": float(kmf.survival_function_at_times(CALIBRATION_DAYS).iloc[0]),
                    "n": int(m.sum()),
                }
            )
        extras["calibration"][name] = cal
        models[name]["logrank_p_training_groups"] = pv
        frames.append(
            pd.DataFrame(
                {
                    "case_id": X.index,
                    "model": name,
                    "risk": risk,
                    "predicted_days": days,
                    "surv_12m": s12,
                    "risk_group": np.where(high, "high", "low"),
                    "time": t,
                    "event": ev,
                }
            )
        )
    return models, pd.concat(frames, ignore_index=True), extras


def _binary_evaluation(
    lm: LockedModel, names: list[str], X: pd.DataFrame, y: np.ndarray, n_boot: int, seed: int
) -> tuple[dict[str, Any], pd.DataFrame, dict[str, Any]]:
    from radsurv.evaluation.classification_metrics import binary_metrics

    models: dict[str, Any] = {}
    frames = []
    extras: dict[str, Any] = {"calibration": {}}
    for name in names:
        info = lm.doc["models"][name]
        pipe = lm.pipeline(name)
        p = pipe.predict_proba(_input(X, info["input_columns"]))[:, 1]
        thr = float(info["threshold"])
        pred = (p >= thr).astype(int)
        point = binary_metrics(y, p, pred)
        cis = _boot(lambda idx, p=p, pred=pred: binary_metrics(y[idx], p[idx], pred[idx]),
                    len(y), n_boot, seed, strata=y)  # fmt: skip
        models[name] = {
            k: {"value": v, "ci95": cis.get(k, [math.nan, math.nan])} for k, v in point.items()
        }
        models[name]["baseline"] = info["role"] == "baseline"
        models[name]["threshold"] = thr
        bins = np.clip((p * 10).astype(int), 0, 9)
        extras["calibration"][name] = [
            {"predicted": float(p[bins == b].mean()), "observed": float(y[bins == b].mean()),
             "n": int((bins == b).sum())}
            for b in range(10) if (bins == b).any()
        ]  # fmt: skip
        frames.append(
            pd.DataFrame(
                {
                    "case_id": X.index,
                    "model": name,
                    "label": y,
                    "probability": p,
                    "threshold": thr,
                    "predicted": pred,
                }
            )  # fmt: skip
        )
    return models, pd.concat(frames, ignore_index=True), extras


def evaluate_locked(
    model: str | Path | LockedModel,
    features: Any,
    clinical: Any = None,
    *,
    labels: Any = None,
    label_column: str | None = None,
    out: str | Path | None = None,
    model_name: str | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> Evaluation:
    """Score a locked model (and its training-fitted baseline) on a labelled external cohort.

    Survival: the clinical table gives time and event. Metrics are those of the CV report
    (Harrell's and Uno's C, td-AUC, IBS, BraTS metrics), each with a case-level percentile
    bootstrap 95 % CI (``n_boot`` resamples); IPCW weights use the external cohort's own
    censoring distribution. Calibration at 12 months (predicted vs Kaplan-Meier by quintile of
    predicted survival) and Kaplan-Meier curves of the risk groups defined on the training
    cohort (cut-off saved in model.json) with a log-rank p. The reference baseline (age) is
    the one fitted on the training cohort, never refitted here.

    Binary: ``labels`` (a label table, read with the model's positive class) give the
    outcome; metrics of :func:`radsurv.evaluation.classification_metrics.binary_metrics` at
    the threshold chosen in training, with stratified bootstrap CIs, and calibration.
    """
    from radsurv.evaluation.report import package_versions, write_metrics_json

    lm = model if isinstance(model, LockedModel) else load_locked(model)
    name = lm.name(model_name)
    X, table, warnings = _read_inputs(lm, features, clinical, need=())
    ref = lm.doc.get("reference_baseline")
    names = [name]
    if ref and ref in lm.doc["models"] and ref != name:
        missing = [c for c in lm.doc["models"][ref]["input_columns"] if c not in X.columns]
        if missing:
            warnings.append(f"baseline {ref} not evaluated: the tables lack {missing}")
        else:
            names.append(ref)
    if lm.endpoint == "survival":
        from radsurv.clinical import survival_target

        if table is None:
            raise LockedModelError("evaluate needs --clinical with survival time and event")
        tab = table.set_axis(table.index.astype(str)).loc[X.index]
        keep = ~(tab["time"].isna() | pd.isna(tab["event"])) if "time" in tab else None
        if keep is None:
            raise LockedModelError(
                f"{table.attrs.get('source', 'clinical table')}: no survival time/event columns; "
                "evaluate needs a labelled cohort (use predict for unlabelled cases)"
            )
        if (~keep).any():
            warnings.append(f"{int((~keep).sum())} case(s) without time/event left out")
        X, tab = X[keep.to_numpy()], tab[keep.to_numpy()]
        y = survival_target(tab)
        models, preds, extras = _survival_evaluation(lm, names, X, y, n_boot, seed)
        n_extra = {"events": int(y["event"].sum())}
    else:
        from radsurv.clinical_labels import read_binary_labels

        if labels is None:
            raise LockedModelError("evaluate needs --labels for a binary model")
        parsed = (
            read_binary_labels(
                labels,
                label_column=label_column,
                positive=lm.doc.get("positive_class"),
                drop_unknown=True,
            )
            if not isinstance(labels, pd.Series)
            else None
        )
        yser = parsed.y if parsed is not None else labels
        yser.index = yser.index.astype(str)
        common = [i for i in X.index if i in set(yser.index)]
        if len(common) < len(X):
            warnings.append(f"{len(X) - len(common)} case(s) without a label left out")
        X = X.loc[common]
        y = yser.loc[common].astype(int).to_numpy()
        models, preds, extras = _binary_evaluation(lm, names, X, y, n_boot, seed)
        n_extra = {"positives": int(y.sum())}
    doc = {
        "endpoint": lm.endpoint,
        "kind": "external validation of a locked model",
        "model": str(lm.path),
        "n": len(X),
        **n_extra,
        "models": {k: v for k, v in models.items() if not v.get("baseline")},
        "baselines": {k: v for k, v in models.items() if v.get("baseline")},
        "ci": f"case-level percentile bootstrap, {n_boot} resamples",
        "training_cohort": lm.doc.get("training_cohort"),
        "warnings": warnings,
        "versions": package_versions(),
        **extras,
    }
    res = Evaluation(lm.endpoint, name, doc, preds)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        res.paths["metrics"] = str(write_metrics_json(doc, out / "metrics.json"))
        preds.to_csv(out / "predictions.csv", index=False)
        res.paths["predictions"] = str(out / "predictions.csv")
        res.paths["report"] = str(_evaluation_report(res, out / "report.html"))
    return res


def _evaluation_report(res: Evaluation, path: Path) -> Path:
    from radsurv.evaluation.report import (
        figure_to_data_uri,
        format_number,
        new_figure,
        render_report,
    )

    doc = res.metrics
    entries = {**doc["models"], **doc["baselines"]}
    keys = sorted({k for e in entries.values() for k, v in e.items() if isinstance(v, dict)
                   and "value" in v})  # fmt: skip
    rows = []
    for name, e in entries.items():
        cells = []
        for k in keys:
            m = e.get(k, {})
            ci = m.get("ci95", [math.nan, math.nan])
            cells.append(
                f"{format_number(m.get('value'))} [{format_number(ci[0])}, {format_number(ci[1])}]"
            )
        rows.append({"name": name, "baseline": e.get("baseline"), "cells": cells})
    figures = []
    fig, ax = new_figure((5, 5))
    ax.plot([0, 1], [0, 1], ls=":", color="grey")
    for name, cal in doc.get("calibration", {}).items():
        ax.plot([c["predicted"] for c in cal], [c["observed"] for c in cal], "o-", label=name)
    ax.set_xlabel("predicted" + (" survival at 12 months" if res.endpoint == "survival" else ""))
    ax.set_ylabel("observed")
    ax.legend(fontsize=8)
    figures.append(("Calibration on the external cohort", figure_to_data_uri(fig)))
    for name, km in doc.get("km", {}).items():
        fig, ax = new_figure((6, 4))
        for label, g in km["groups"].items():
            ax.step(g["timeline"], g["survival"], where="post", label=f"{label} (n={g['n']})")
        ax.set_title(f"{name}: log-rank p = {format_number(km['logrank_p'])}", fontsize=9)
        ax.set_xlabel("days")
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize=8)
        figures.append(
            (f"Kaplan-Meier by training-defined risk groups ({name}; cut-off = training median "
             "risk)", figure_to_data_uri(fig))
        )  # fmt: skip
    context = {
        "title": f"radsurv external validation ({res.endpoint})",
        "subtitle": f"locked model {doc['model']}; {doc['n']} cases",
        "warnings": doc.get("warnings", []),
        "metric_names": keys,
        "metric_rows": rows,
        "figures": figures,
        "ci_rule": doc["ci"],
        "settings": {"model": doc["model"], "ci": doc["ci"]},
    }
    return render_report("locked_evaluation.html.j2", context, path)
