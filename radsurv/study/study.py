"""The study API: ``SurvivalStudy(...).run()`` and ``BinaryStudy(...).run()``.

Both build a design (:func:`radsurv.study.design.build_design`), run the engine
(:func:`radsurv.study.engine.run_engine`) with their endpoint, and return a
:class:`StudyResult`: ``.summary`` (one row per model and baseline), ``_repr_html_`` for
notebooks, ``.metrics`` (the metrics.json document), ``.save(dir)`` (report.html,
metrics.json, predictions.csv, ...) and ``.save_model(dir)`` (a locked model for
:func:`radsurv.study.locked.predict` / :func:`~radsurv.study.locked.evaluate`).

Example
-------
>>> from radsurv.study import SurvivalStudy
>>> result = SurvivalStudy(clinical="survival_info.csv", features="features.csv",
...                        covariates="age,resection", models=["cox"], cv="5x5").run()
>>> result.summary                       # doctest: +SKIP
>>> result.save("survival_out")          # doctest: +SKIP
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsurv.errors import ConfigError
from radsurv.evaluation.cv import ProgressCallback
from radsurv.evaluation.report import format_estimate
from radsurv.study.design import (
    CATEGORICAL,
    NUMERIC,
    CovariateSpec,
    Design,
    FeatureFilter,
    build_design,
    features_settings_hash,
    parse_covariates,
    read_clinical,
    read_features,
    read_manifest_clinical,
)
from radsurv.study.engine import EngineRun, run_engine

log = logging.getLogger(__name__)

PathLike = str | Path

#: The spreads every summary reports (the same words in the terminal, the report, the JSON).
SPREAD_NOTE = {
    "survival": "sd = SD of the per-repeat means (SD over folds with a single repeat); "
    "sd_folds = SD over test folds; ci95 = bootstrap 95% CI of the mean over folds",
    "binary": "sd = SD over repeats of the pooled out-of-fold metric; "
    "ci95 = case-level bootstrap 95% CI",
}


def _models(models: str | Sequence[str] | None, default: str) -> list[str]:
    if models is None:
        return [default]
    items = [models] if isinstance(models, str) else list(models)
    out: list[str] = []
    for v in items:
        out += [p.strip() for p in str(v).split(",") if p.strip()]
    return out or [default]


def _features(features: PathLike | pd.DataFrame | None) -> tuple[pd.DataFrame | None, str, Any]:
    """(table, name, settings hash) of a features argument (path or DataFrame)."""
    if features is None:
        return None, "", None
    if isinstance(features, pd.DataFrame):
        df = features
        if "case_id" in df.columns:
            df = df.set_index("case_id")
        return df, "features", None
    path = Path(features)
    return read_features(path), path.name, features_settings_hash(path)


@dataclass
class StudyResult:
    """What a study produced; endpoint-specific content under ``report``.

    Attributes
    ----------
    endpoint
        ``"survival"`` or ``"binary"``.
    design
        The design (X, covariates with their encoding, notes, cohort).
    y
        The target (structured survival array, or 0/1 labels).
    run
        The engine's raw output (folds, per-fold outputs, comparisons, final models).
    report
        The endpoint's report object (``SurvivalAnalysis`` or ``ClassificationResult``).
    inputs
        Input files, the features' extraction settings hash, study settings.
    """

    endpoint: str
    design: Design
    y: Any
    run: EngineRun
    report: Any
    inputs: dict[str, Any] = field(default_factory=dict)
    labels: Any = None  # BinaryLabels for a binary study
    cohort_info: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    structure: pd.DataFrame | None = None  # subject_id, site, timepoint per case of the design
    site_info: dict[str, Any] = field(default_factory=dict)  # groups, pooled, harmonisation

    # ---------------------------------------------------------------- numbers
    @property
    def models(self) -> list[str]:
        return [s.name for s in self.run.specs if s.role == "model"]

    @property
    def baselines(self) -> list[str]:
        return [s.name for s in self.run.specs if s.role == "baseline"]

    def _entries(self) -> dict[str, dict[str, Any]]:
        if self.endpoint == "survival":
            return dict(self.report.cv.summaries)
        m = self.report.metrics
        return {**m["models"], **m["baselines"]}

    @property
    def summary(self) -> pd.DataFrame:
        """One row per model and baseline: the main metrics (mean, sd, CI) and the paired
        difference to the reference baseline."""
        metrics = (
            ("harrell_c", "uno_c", "td_auc", "ibs")
            if self.endpoint == "survival"
            else ("roc_auc", "pr_auc", "balanced_accuracy", "brier")
        )
        rows = []
        entries = self._entries()
        for spec in self.run.specs:
            e = entries.get(spec.name, {})
            row: dict[str, Any] = {"name": spec.name, "role": spec.role}
            for m in metrics:
                s = e.get(m, {})
                ci = s.get("ci95", [math.nan, math.nan])
                row[m] = s.get("mean", math.nan)
                row[f"{m}_sd"] = s.get("sd", math.nan)
                row[f"{m}_ci_low"], row[f"{m}_ci_high"] = ci[0], ci[1]
            comp = self.run.comparisons.get(spec.name)
            ref = self.run.reference or ""
            row[f"diff_vs_{ref}"] = comp["difference"] if comp else math.nan
            row[f"diff_vs_{ref}_p"] = comp["p_value"] if comp else math.nan
            rows.append(row)
        return pd.DataFrame(rows).set_index("name")

    def _repr_html_(self) -> str:
        title = "survival study" if self.endpoint == "survival" else "binary endpoint study"
        n = len(self.design.X)
        head = (
            f"<p><b>radsurv {title}</b>: {n} cases, {len(self.design.feature_columns)} features, "
            f"covariates {', '.join(self.design.covariate_columns) or 'none'}; "
            f"{self.run.plan.describe() if self.run.plan is not None else ''}. "
            f"{SPREAD_NOTE[self.endpoint]}.</p>"
        )
        table = self.summary.to_html(float_format=lambda v: f"{v:.3f}", na_rep="-")
        notes = "".join(f"<li>{n}</li>" for n in self.design.notes)
        return head + table + (f"<ul>{notes}</ul>" if notes else "")

    def metric(self, name: str, metric: str) -> dict[str, Any]:
        """``{"mean", "sd", "ci95", ...}`` of one metric of one model or baseline."""
        return self._entries()[name][metric]

    def shared_keys(self) -> dict[str, Any]:
        """The metrics.json keys every endpoint shares (besides models and baselines)."""
        from radsurv.evaluation.report import package_versions

        per_fold = self.run.per_fold.to_dict(orient="records")
        cv = {
            "n_splits": self.run.n_splits,
            "n_repeats": self.run.n_repeats,
            "seed": self.inputs.get("seed"),
            "stratified_on": "event x time tertile" if self.endpoint == "survival" else "label",
        }
        if self.endpoint == "binary":
            cv.update(folds=self.run.n_splits, repeats=self.run.n_repeats)
        if self.run.plan is not None:
            cv.update(self.run.plan.to_dict())
            if self.run.plan.scheme.kind != "kfold":
                cv["stratified_on"] = None
        return {
            **self.site_info,
            "endpoint": self.endpoint,
            "cv": cv,
            "per_fold": per_fold,
            "comparisons": self.run.comparisons,
            "covariate_encoding": self.design.encoder.to_list(),
            "inputs": {k: v for k, v in self.inputs.items() if k != "seed"},
            "spread": SPREAD_NOTE[self.endpoint],
            "versions": package_versions(),
        }

    @property
    def metrics(self) -> dict[str, Any]:
        """The metrics.json document (as :meth:`save` writes it, without file paths)."""
        if self.endpoint == "survival":
            from radsurv.evaluation.survival_report import metrics_document

            doc = metrics_document(self.report)
        else:
            doc = dict(self.report.metrics)
            doc["cohort"] = dict(self.cohort_info)
        doc.update(self.shared_keys())
        return doc

    # ---------------------------------------------------------------- files
    def save(self, out: PathLike) -> dict[str, Path]:
        """Write report.html, metrics.json, predictions.csv (and folds.csv, models/).

        Files an earlier run wrote into ``out`` (listed in ``out/.radsurv-outputs.json``) are
        removed first, so no stale file (e.g. the model of a model not run this time) is left
        beside the new results; files radsurv did not write are never touched.
        """
        out = Path(out)
        clear_previous_outputs(out)
        paths = self._write(out)
        record_outputs(out, paths.values())
        return paths

    def _write(self, out: Path) -> dict[str, Path]:
        extra = self.shared_keys()
        if self.endpoint == "survival":
            from radsurv.evaluation.survival_report import write_survival_outputs

            return write_survival_outputs(
                self.report, out, extra=extra, case_columns=self.case_columns()
            )
        from radsurv.evaluation.classification_report import write_classification_outputs

        labels = self.labels
        return write_classification_outputs(
            self.report,
            out,
            labels=labels,
            cohort=self.cohort_info,
            warnings=self.warnings + self.design.notes,
            settings=self.inputs.get("settings", {}),
            title=(
                f"Classification: {labels.positive} vs {labels.negative}"
                if labels is not None
                else "Binary endpoint classification"
            ),
            extra=extra,
            case_columns=self.case_columns(),
        )

    def case_columns(self) -> pd.DataFrame:
        """``subject_id``, ``site``, ``timepoint`` per case (predictions.csv keeps them)."""
        from radsurv.study.folds import default_structure

        if self.structure is not None:
            return self.structure
        return default_structure(self.design.X.index)

    def save_model(self, out: PathLike, **kwargs: Any) -> Path:
        """Write a locked model folder (see :func:`radsurv.study.locked.save_locked`)."""
        from radsurv.study.locked import save_locked

        if self.run.harmonizer is not None:
            raise ConfigError(
                "a locked model of a harmonised study (--harmonize) is not supported yet: new "
                "cases would need the same ComBat; fit the locked model without --harmonize"
            )
        return save_locked(self, out, **kwargs)

    def describe_covariates(self) -> list[str]:
        """One line per covariate: type (inferred or forced), levels, missing values."""
        return [c.describe() for c in self.design.encoder.covariates]


# ------------------------------------------------------------------------------ sites, subjects


class _SiteOptions:
    """Cohort structure, CV scheme and harmonisation options shared by both studies."""

    cohort: PathLike | pd.DataFrame | None
    site_column: str | None
    subject_column: str | None
    timepoint_column: str | None
    min_site_size: int
    train_sites: Any
    test_sites: Any
    harmonize: str | None
    harmonize_covariates: Any
    cv: str
    seed: int

    def _set_site_options(self, **kw: Any) -> None:
        for k, v in kw.items():
            setattr(self, k, v)

    def _structure_table(self, fallback: pd.DataFrame | None) -> pd.DataFrame | None:
        if isinstance(self.cohort, pd.DataFrame):
            t = self.cohort
            return t.set_index("case_id") if "case_id" in t.columns else t
        if self.cohort is not None:
            return read_clinical(self.cohort)
        return fallback

    def read_structure(self, design: Design, fallback: pd.DataFrame | None) -> pd.DataFrame:
        """``subject_id``, ``site``, ``timepoint`` of every case of the design.

        From ``cohort`` (a table or DataFrame) when given, else from the study's own clinical
        table or manifest (``fallback``). Cases without a row: their own subject, no site.
        """
        from radsurv.study.folds import cohort_columns, default_structure

        index = design.X.index.astype(str)
        table = self._structure_table(fallback)
        if table is None:
            return default_structure(index)
        cols = cohort_columns(
            table,
            site_column=self.site_column,
            subject_column=self.subject_column,
            timepoint_column=self.timepoint_column,
        )
        cols.index = cols.index.astype(str)
        cols = cols[~cols.index.duplicated()]
        base = default_structure(index)
        found = cols.reindex(index)
        for c in base.columns:
            base[c] = found[c].fillna(base[c]) if c == "subject_id" else found[c]
        missing = int(found["site"].isna().sum())
        if missing and found["site"].notna().any():
            design.notes.append(f"{missing} case(s) without a known site (site 'unknown')")
        return base

    def engine_options(self, design: Design, structure: pd.DataFrame) -> dict[str, Any]:
        """``scheme``, ``structure`` and ``harmonizer`` for :func:`run_engine`."""
        from radsurv.study.folds import parse_scheme
        from radsurv.study.harmonize import make_harmonizer

        scheme = parse_scheme(
            self.cv,
            min_site_size=self.min_site_size,
            train_sites=self.train_sites,
            test_sites=self.test_sites,
        )
        harmonizer = make_harmonizer(self.harmonize, design, structure, self.harmonize_covariates)
        return {"scheme": scheme, "structure": structure, "harmonizer": harmonizer}

    def site_info(
        self, run: EngineRun, design: Design, predictions: pd.DataFrame, endpoint: str, y: Any
    ) -> dict[str, Any]:
        """``groups``, ``pooled`` and ``harmonisation`` of metrics.json (empty without sites)."""
        from radsurv.study.folds import has_sites, sites_of
        from radsurv.study.harmonize import site_effect
        from radsurv.study.sites import group_metrics

        structure = run.structure
        if not has_sites(structure):
            return {}
        preds = predictions.copy()
        site = sites_of(structure)
        preds["site"] = site.reindex(preds["case_id"].astype(str)).to_numpy()
        plan = run.plan
        groups = plan.test_sites if plan.scheme.kind in ("site", "external") else None
        order = [s.name for s in run.specs]
        g, pooled = group_metrics(
            preds, endpoint, groups=groups, y_all=y, seed=self.seed, order=order
        )
        roles = {s.name: s.role for s in run.specs}
        info: dict[str, Any] = {"groups": g, "pooled": pooled, "group_roles": roles}
        harm = run.harmonizer
        if harm is not None:
            from radsurv.evaluation.cv import Fold

            cols = harm.feature_columns
            sites_x = site.reindex(design.X.index.astype(str))
            sites_x.index = design.X.index
            before_fx = site_effect(design.X[cols], sites_x)
            idx = np.arange(len(design.X))
            X_all, _ = harm.apply(design.X, Fold(0, 0, idx, idx[:0]))
            after_fx = site_effect(X_all[cols], sites_x)
            in_fold, unseen = [], set()
            for f in [f for f in run.folds if f.repeat == 0]:
                X, fi = harm.apply(design.X, f)
                unseen |= set(fi["unseen_sites"])
                rows = np.concatenate([f.train, f.test])
                fx = site_effect(X[cols].iloc[rows], sites_x.iloc[rows])
                in_fold.append(fx["fraction_p_lt_0.05"])
            after_fx["fraction_p_lt_0.05_in_fold"] = in_fold
            info["harmonisation"] = {
                "method": "ComBat (combatlearn.ComBat; johnson without covariates, fortin with)",
                "covariates": list(harm.covariates.columns),
                "fitted_on": "training rows of each fold only",
                "unseen_site_rule": UNSEEN_SITE_RULE,
                "unseen_sites": sorted(unseen),
                "before": {k: v for k, v in before_fx.items() if k != "p_values"},
                "after": {k: v for k, v in after_fx.items() if k != "p_values"},
                "after_definition": "after: features harmonised by ComBat fitted on all cases "
                "(the final model's input); fraction_p_lt_0.05_in_fold: per fold of the first "
                "repeat, the same test over its training and test rows as harmonised in that "
                "fold",
                "p_values_before": before_fx["p_values"],
                "p_values_after": after_fx["p_values"],
            }
        return info


UNSEEN_SITE_RULE = (
    "A test site training never saw is harmonised from its own feature distribution, "
    "without labels: a second combatlearn ComBat is fitted on the harmonised training rows "
    "(one reference batch, left unchanged) plus that site's test rows, so the site's "
    "location/scale are estimated on its own test rows and mapped onto the training "
    "distribution; sites with fewer than 3 test rows stay unharmonised."
)


# ------------------------------------------------------------------------------------ survival


class SurvivalStudy(_SiteOptions):
    """Cross-validated survival models against age baselines on the same folds.

    Parameters
    ----------
    clinical
        Any clinical CSV (id, time, event and covariate columns; BraTS ``survival_info.csv``
        as is) or a DataFrame indexed by case id with ``time``/``event``.
    features
        Features table (CSV or Parquet path, or a DataFrame indexed by case id), or None.
    manifest
        A ``data_manifest.csv`` instead of ``clinical``.
    covariates
        ``"age,idh:categorical,kps"`` or a list; forced into every model.
    models
        Survival model names (:data:`radsurv.models.survival.MODEL_NAMES`).
    cv, seed, n_jobs, k, selection, nested, inner_folds
        As ``radsurv survival``.
    gtr_only
        Keep gross-total resections only.
    permutations
        Label-permutation test of Harrell's C (0: off).
    feature_filter
        A function applied to the feature table before anything else; see
        :data:`radsurv.study.design.FeatureFilter`.
    robustness, min_icc
        A ``radsurv robustness`` table: only features with ICC >= ``min_icc`` are kept, before
        any in-fold step (the ICC uses no labels); the notes and ``cohort["robustness"]`` say
        how many were dropped.
    id_column, time_column, event_column
        Column names of a generic clinical table when they are not found by name.
    cohort
        A table (path or DataFrame) with the cases' ``site``, ``subject_id``, ``timepoint``
        (e.g. ``name_mapping.csv``: its ``BraTS_2019_subject_ID`` gives the site); default:
        the columns of the clinical table / manifest, when present.
    site_column, subject_column, timepoint_column
        Other names of those columns.
    min_site_size, train_sites, test_sites
        Site-wise schemes (:mod:`radsurv.study.folds`): ``cv="site"`` (leave one site out;
        smaller sites train only), ``cv="site:5x5"``, or external validation.
    harmonize, harmonize_covariates
        ``"combat"``: in-fold ComBat of the features across sites
        (:mod:`radsurv.study.harmonize`), preserving these clinical columns.
    """

    endpoint = "survival"

    def __init__(
        self,
        clinical: PathLike | pd.DataFrame | None = None,
        features: PathLike | pd.DataFrame | None = None,
        *,
        manifest: PathLike | None = None,
        covariates: str | Sequence[str | CovariateSpec] | None = "age",
        models: str | Sequence[str] | None = ("cox",),
        cv: str = "5x5",
        seed: int = 0,
        n_jobs: int = 1,
        k: int | None = 20,
        selection: str = "univariate",
        nested: bool = False,
        inner_folds: int = 3,
        gtr_only: bool = False,
        permutations: int = 0,
        feature_filter: FeatureFilter | None = None,
        robustness: PathLike | None = None,
        min_icc: float = 0.75,
        id_column: str | None = None,
        time_column: str | None = None,
        event_column: str | None = None,
        cohort: PathLike | pd.DataFrame | None = None,
        site_column: str | None = None,
        subject_column: str | None = None,
        timepoint_column: str | None = None,
        min_site_size: int = 10,
        train_sites: str | Sequence[str] | None = None,
        test_sites: str | Sequence[str] | None = None,
        harmonize: str | None = None,
        harmonize_covariates: str | Sequence[str] | None = None,
    ) -> None:
        self.clinical = clinical
        self.features = features
        self.manifest = manifest
        self.covariates = parse_covariates(covariates)
        self.models = _models(models, "cox")
        self.cv = cv
        self.seed = seed
        self.n_jobs = n_jobs
        self.k = k if (k is None or k > 0) else None
        self.selection = selection
        self.nested = nested
        self.inner_folds = inner_folds
        self.gtr_only = gtr_only
        self.permutations = permutations
        self.feature_filter = feature_filter
        self.robustness = robustness
        self.min_icc = min_icc
        self.id_column = id_column
        self.time_column = time_column
        self.event_column = event_column
        self._set_site_options(
            cohort=cohort,
            site_column=site_column,
            subject_column=subject_column,
            timepoint_column=timepoint_column,
            min_site_size=min_site_size,
            train_sites=train_sites,
            test_sites=test_sites,
            harmonize=harmonize,
            harmonize_covariates=harmonize_covariates,
        )

    def read_clinical(self) -> pd.DataFrame:
        """The clinical table this study reads (any CSV, a manifest, or the given frame)."""
        if (self.manifest is None) == (self.clinical is None):
            raise ConfigError("give exactly one of --manifest and --clinical")
        if self.manifest is not None:
            return read_manifest_clinical(self.manifest)
        if isinstance(self.clinical, pd.DataFrame):
            return self.clinical
        return read_clinical(
            self.clinical,
            id_column=self.id_column,
            time_column=self.time_column,
            event_column=self.event_column,
        )

    def _raw_cohort_table(self) -> pd.DataFrame | None:
        """The table the cohort structure falls back to (clinical table or raw manifest)."""
        if self.manifest is not None:
            t = pd.read_csv(self.manifest, dtype=str, keep_default_na=False)
            return t.set_index("case_id") if "case_id" in t.columns else None
        if isinstance(self.clinical, pd.DataFrame):
            return self.clinical
        return getattr(self, "_clinical_table", None)

    def build_design(self) -> Design:
        """The design step: clinical table + features + covariates (feature filter here)."""
        table = self.read_clinical()
        self._clinical_table = table
        name = (
            Path(str(self.clinical or self.manifest)).name
            if not isinstance(self.clinical, pd.DataFrame)
            else "clinical"
        )
        notes: list[str] = []
        for col in ("time", "event"):
            if col not in table.columns:
                raise ConfigError(
                    f"{name}: no survival {col} column; it has {list(table.columns)} (pass "
                    "--time-column/--event-column)"
                )
        no_target = table["time"].isna() | pd.isna(table["event"])
        if no_target.any():
            notes.append(
                f"{int(no_target.sum())} case(s) without survival time/event left out, e.g. "
                f"{list(table.index[no_target][:5])}"
            )
            table = table[~no_target]
        keep = None
        if self.gtr_only:
            if "resection" not in table.columns:
                raise ConfigError("--gtr-only needs a resection column in the clinical table")
            keep = (table["resection"].astype("string") == "GTR").fillna(False).astype(bool)
            notes.append(f"--gtr-only: {int(keep.sum())} of {len(table)} cases with GTR kept")
        feats, fname, self._settings_hash = _features(self.features)
        base = [CovariateSpec("age", NUMERIC), CovariateSpec("resection", CATEGORICAL)]
        feature_filter, robust_notes, robust_cohort = _robustness_filter(self)
        design = build_design(
            table,
            feats,
            self.covariates,
            baseline_covariates=base,
            feature_filter=feature_filter,
            keep=keep,
            clinical_name="clinical",
            features_name=fname or "features",
            source_name=name,
        )
        design.notes[:0] = notes
        design.notes.extend(robust_notes)
        design.cohort.update(robust_cohort)
        return design

    def run(self, progress: ProgressCallback | None = None) -> StudyResult:
        """Build the design, cross-validate, compare with the baselines, refit on all cases.

        ``progress(done, total, what)`` is called as CV tasks finish (the CLI draws a bar)."""
        from radsurv.clinical import survival_target

        design = self.build_design()
        return self.analyse(design, survival_target(design.clinical), progress=progress)

    def analyse(
        self,
        design: Design,
        y: Any,
        cohort: dict[str, Any] | None = None,
        progress: ProgressCallback | None = None,
    ) -> StudyResult:
        """Cross-validate, compare and refit on a built design (``run`` after its design step)."""
        from radsurv.evaluation.survival_metrics import SurvivalCVResult, summarise_folds
        from radsurv.evaluation.survival_report import (
            PREDICTED_DAYS_NOTE,
            SurvivalAnalysis,
            SurvivalData,
            _grid_text,
            _selection_text,
            _tuning_document,
        )
        from radsurv.study.endpoints.survival import (
            BASELINE_TEXT,
            REFERENCE_BASELINE,
            SurvivalEndpoint,
            survival_cohort,
            survival_specs,
        )

        self._settings_hash = getattr(self, "_settings_hash", None)
        notes = design.notes
        specs = survival_specs(design, self.models, notes)
        endpoint = SurvivalEndpoint(
            k=self.k,
            seed=self.seed,
            selection=self.selection,
            inner_folds=self.inner_folds if self.nested else None,
        )
        reference = REFERENCE_BASELINE if any(s.name == "age" for s in specs) else None
        structure = self.read_structure(design, self._raw_cohort_table())
        run = run_engine(
            endpoint,
            design,
            y,
            specs,
            cv=self.cv,
            seed=self.seed,
            n_jobs=self.n_jobs,
            permutations=self.permutations,
            reference=reference,
            progress=progress,
            **self.engine_options(design, structure),
        )
        flat = list(run.outputs)
        cvres = SurvivalCVResult(flat, n_splits=run.n_splits, n_repeats=run.n_repeats)
        cvres.summaries = summarise_folds(flat, run.n_repeats, seed=self.seed)
        for name, comp in run.comparisons.items():
            cvres.summaries[name]["vs_baseline"] = comp
        for name, perm in run.permutation.items():
            cvres.summaries[name]["permutation_test"] = perm
        finals, final_params = {}, {}
        for name in self.models:
            if name in run.finals:
                finals[name] = run.finals[name].estimator
                final_params[name] = run.finals[name].params
            else:
                notes.append(
                    f"final {name} model could not be fitted on all data: "
                    f"{run.final_errors.get(name)}"
                )
        requested = {s.name: endpoint.build(s, design) for s in specs if s.role == "model"}
        tuning = (
            _tuning_document(cvres, requested, final_params, self.inner_folds)
            if self.nested
            else {}
        )
        settings = {
            "clinical table": _input_name(self.clinical),
            "manifest": _input_name(self.manifest),
            "features file": _input_name(self.features)
            + (f" (extraction settings {self._settings_hash})" if self._settings_hash else ""),
            "robustness filter": f"{self.robustness} (ICC >= {self.min_icc:g})"
            if self.robustness is not None
            else "-",
            "models": ", ".join(self.models),
            "cv": run.plan.describe()
            + (" on event x time tertile" if run.plan.scheme.kind == "kfold" else ""),
            "harmonisation": (
                f"ComBat in-fold (training rows only), covariates preserved: "
                f"{', '.join(run.harmonizer.covariates.columns) or 'none'}"
                if run.harmonizer is not None
                else "none"
            ),
            "seed": self.seed,
            "covariates (forced in)": ", ".join(design.covariate_columns) or "none",
            "covariate types": "; ".join(c.describe() for c in design.encoder.covariates) or "none",
            "features": len(design.feature_columns),
            "in-fold selection": _selection_text(self.selection, self.k)
            if design.feature_columns
            else "-",
            "hyper-parameters": (
                f"nested: inner {self.inner_folds}-fold CV per outer training fold (Harrell's C)"
                if self.nested
                else "fixed defaults"
            ),
            "predicted days": PREDICTED_DAYS_NOTE,
            "jobs": self.n_jobs,
            "compared with": (
                f"{reference} baseline, paired on the same folds (Nadeau-Bengio corrected "
                "resampled t-test)"
                if reference
                else "-"
            ),
            "spread": SPREAD_NOTE["survival"],
            "baselines": BASELINE_TEXT,
        }
        for name, info in tuning.items():
            settings[f"tuned {name}: grid"] = _grid_text(info["grid"])
            settings[f"tuned {name}: chosen (folds)"] = "; ".join(
                f"{text} ({n})" for text, n in info["counts"].items()
            )
            settings[f"tuned {name}: final model"] = info["final_text"]
        for note in notes:
            log.warning(note)
        data = SurvivalData(
            design.X,
            y,
            design.covariate_columns,
            design.feature_columns,
            notes,
            cohort if cohort is not None else survival_cohort(design, y),
        )
        data.design = design
        analysis = SurvivalAnalysis(
            data,
            cvres,
            list(self.models),
            [s.name for s in specs if s.role == "baseline"],
            finals,
            settings,
            tuning=tuning,
        )
        inputs = {
            "clinical": None if isinstance(self.clinical, pd.DataFrame) else self.clinical,
            "manifest": self.manifest,
            "features": None
            if isinstance(self.features, pd.DataFrame)
            else (str(self.features) if self.features is not None else None),
            "features_settings_hash": self._settings_hash,
            "covariates": [s.text() for s in self.covariates],
            "seed": self.seed,
            "settings": {
                "cv": self.cv,
                "k": self.k,
                "selection": self.selection,
                "nested": self.nested,
                "inner_folds": self.inner_folds,
                "gtr_only": self.gtr_only,
                "models": list(self.models),
            },
        }
        inputs["settings"].update(
            min_site_size=self.min_site_size,
            train_sites=self.train_sites,
            test_sites=self.test_sites,
            harmonize=self.harmonize,
            harmonize_covariates=self.harmonize_covariates,
        )
        inputs = {k: (str(v) if isinstance(v, Path) else v) for k, v in inputs.items()}
        result = StudyResult(
            "survival",
            design,
            y,
            run,
            analysis,
            inputs=inputs,
            cohort_info=data.cohort,
            structure=structure,
        )
        preds = cvres.predictions(design.X.index, y)
        result.site_info = self.site_info(run, design, preds, "survival", y)
        return result


# ------------------------------------------------------------------------------------ binary


class BinaryStudy(_SiteOptions):
    """Cross-validated classifiers for a 0/1 endpoint against a clinical baseline.

    Parameters
    ----------
    features
        Features table (CSV or Parquet path, or a DataFrame indexed by case id).
    labels
        Label table path (case id + label column), or a parsed ``BinaryLabels``; default: the
        manifest's labels.
    label_column, positive, negative, drop_unknown
        As :func:`radsurv.clinical_labels.read_binary_labels`.
    covariates
        ``"age,resection"`` etc., from ``clinical`` (any CSV or DataFrame), else the
        ``manifest``, else the features table itself.
    models, cv, seed, k, nested, permutations, n_jobs, threshold_folds, n_boot, corr_threshold
        As ``radsurv classify`` / :class:`radsurv.evaluation.classify.ClassifySettings`.
    feature_filter
        Applied to the feature table before anything else.
    robustness, min_icc
        A ``radsurv robustness`` table: only features with ICC >= ``min_icc`` are kept, before
        any in-fold step; the notes and ``cohort["robustness"]`` say how many were dropped.
    cohort
        A table (path or DataFrame) with the cases' ``site``, ``subject_id``, ``timepoint``
        (e.g. ``name_mapping.csv``: its ``BraTS_2019_subject_ID`` gives the site); default:
        the columns of the clinical table / manifest, when present.
    site_column, subject_column, timepoint_column
        Other names of those columns.
    min_site_size, train_sites, test_sites
        Site-wise schemes (:mod:`radsurv.study.folds`): ``cv="site"`` (leave one site out;
        smaller sites train only), ``cv="site:5x5"``, or external validation.
    harmonize, harmonize_covariates
        ``"combat"``: in-fold ComBat of the features across sites
        (:mod:`radsurv.study.harmonize`), preserving these clinical columns.
    """

    endpoint = "binary"

    def __init__(
        self,
        features: PathLike | pd.DataFrame,
        labels: Any = None,
        *,
        label_column: str | None = None,
        positive: str | None = None,
        negative: str | None = None,
        drop_unknown: bool = False,
        covariates: str | Sequence[str | CovariateSpec] | None = None,
        clinical: PathLike | pd.DataFrame | None = None,
        manifest: PathLike | None = None,
        models: str | Sequence[str] | None = ("logreg",),
        cv: str = "5x5",
        seed: int = 0,
        k: int | None = 20,
        nested: bool = False,
        permutations: int = 20,
        n_jobs: int = 1,
        threshold_folds: int = 3,
        n_boot: int = 1000,
        corr_threshold: float | None = 0.95,
        feature_filter: FeatureFilter | None = None,
        robustness: PathLike | None = None,
        min_icc: float = 0.75,
        cohort: PathLike | pd.DataFrame | None = None,
        site_column: str | None = None,
        subject_column: str | None = None,
        timepoint_column: str | None = None,
        min_site_size: int = 10,
        train_sites: str | Sequence[str] | None = None,
        test_sites: str | Sequence[str] | None = None,
        harmonize: str | None = None,
        harmonize_covariates: str | Sequence[str] | None = None,
    ) -> None:
        self.features = features
        self.labels = labels
        self.label_column = label_column
        self.positive = positive
        self.negative = negative
        self.drop_unknown = drop_unknown
        self.covariates = parse_covariates(covariates)
        self.clinical = clinical
        self.manifest = manifest
        self.models = _models(models, "logreg")
        self.cv = cv
        self.seed = seed
        self.k = k if (k is None or k > 0) else None
        self.nested = nested
        self.permutations = permutations
        self.n_jobs = n_jobs
        self.threshold_folds = threshold_folds
        self.n_boot = n_boot
        self.corr_threshold = corr_threshold
        self.feature_filter = feature_filter
        self.robustness = robustness
        self.min_icc = min_icc
        self._set_site_options(
            cohort=cohort,
            site_column=site_column,
            subject_column=subject_column,
            timepoint_column=timepoint_column,
            min_site_size=min_site_size,
            train_sites=train_sites,
            test_sites=test_sites,
            harmonize=harmonize,
            harmonize_covariates=harmonize_covariates,
        )

    def settings(self) -> Any:
        from radsurv.evaluation.classify import ClassifySettings

        return ClassifySettings(
            models=tuple(self.models),
            cv=self.cv,
            seed=self.seed,
            k=self.k,
            corr_threshold=self.corr_threshold,
            nested=self.nested,
            threshold_folds=self.threshold_folds,
            permutations=self.permutations,
            n_boot=self.n_boot,
            n_jobs=self.n_jobs,
        )

    def read_labels(self) -> Any:
        from radsurv.clinical_labels import BinaryLabels, read_binary_labels
        from radsurv.evaluation.classify import ClassificationInputError

        if isinstance(self.labels, BinaryLabels):
            return self.labels
        path = self.labels or self.manifest
        if path is None:
            raise ClassificationInputError("no labels: pass --labels FILE (or --manifest M)")
        return read_binary_labels(
            path,
            label_column=self.label_column,
            positive=self.positive,
            negative=self.negative,
            drop_unknown=self.drop_unknown,
        )

    def _covariate_source(self) -> tuple[pd.DataFrame | None, str]:
        from radsurv.evaluation.classify import ClassificationInputError

        if isinstance(self.clinical, pd.DataFrame):
            return self.clinical, "clinical"
        if self.clinical is not None:
            return read_clinical(self.clinical), str(self.clinical)
        if self.manifest is not None:
            path = Path(self.manifest)
            if not path.is_file():
                raise ClassificationInputError(f"{path}: manifest not found")
            table = pd.read_csv(path, dtype={"case_id": str})
            if "case_id" not in table.columns:
                raise ClassificationInputError(f"{path}: no case_id column; is it a manifest?")
            return table.set_index("case_id"), str(path)
        return None, ""

    def build_design(self) -> tuple[Design, Any, dict[str, Any], list[str]]:
        """(design, parsed labels, cohort facts, warnings): the design step of the study."""
        from radsurv.clinical import join_tables
        from radsurv.evaluation.classify import ClassificationInputError

        parsed = self.read_labels()
        feats, fname, self._settings_hash = _features(self.features)
        if feats is None:
            raise ClassificationInputError("no features: pass --features FILE")
        lname = Path(str(parsed.source)).name
        joined = join_tables(feats[[]], parsed.y, left_name=fname, right_name=lname)
        warnings: list[str] = []
        cohort: dict[str, Any] = {
            "features file": str(self.features)
            if not isinstance(self.features, pd.DataFrame)
            else "DataFrame",
            "labels file": parsed.source,
            "join features + labels": joined.summary(),
        }
        if joined.only_left or joined.only_right:
            warnings.append(f"ids not matched between features and labels: {joined.summary()}")
        clin = joined.table[["label"]].copy()
        if self.covariates:
            source, sname = self._covariate_source()
            if source is None:
                names = [s.name for s in self.covariates]
                missing = [c for c in names if c not in feats.columns]
                if missing:
                    raise ClassificationInputError(
                        f"covariates {missing} are not in {self.features}; pass --clinical or "
                        "--manifest"
                    )
                clin = clin.join(feats[names])
                feats = feats.drop(columns=names)
            else:
                cols = [c for c in source.columns if c != "label"]
                cj = join_tables(
                    clin[[]],
                    source[cols],
                    how="left",
                    left_name="cohort",
                    right_name=Path(sname).name,
                )
                if cj.only_left:
                    warnings.append(
                        f"{len(cj.only_left)} cases have no row in {sname} "
                        f"(covariates imputed in-fold): {', '.join(cj.only_left[:5])}"
                    )
                cohort["join cohort + covariates"] = cj.summary()
                clin = clin.join(cj.table)
        feature_filter, robust_notes, robust_cohort = _robustness_filter(self)
        design = build_design(
            clin,
            feats.loc[clin.index],
            self.covariates,
            feature_filter=feature_filter,
            clinical_name="labels",
            features_name=fname,
            source_name=Path(str(self.clinical or self.manifest or self.features)).name
            if not isinstance(self.clinical, pd.DataFrame)
            else "DataFrame",
        )
        cohort.update(robust_cohort)
        design.notes.extend(robust_notes)
        design.cohort.update(cohort)
        return design, parsed, cohort, warnings

    def run(self, progress: ProgressCallback | None = None) -> StudyResult:
        """Build the design, cross-validate, compare with the baseline, refit on all cases.

        ``progress(done, total, what)`` is called as CV tasks finish (the CLI draws a bar)."""
        from radsurv.study.endpoints.binary import (
            BinaryEndpoint,
            binary_specs,
            classification_result,
        )

        settings = self.settings()
        settings.validate()
        design, parsed, cohort, warnings = self.build_design()
        y = design.clinical["label"].astype(int).to_numpy()
        specs = binary_specs(design, self.models)
        endpoint = BinaryEndpoint(settings, source=f"labels {parsed.source}")
        reference = specs[-1].name
        structure = self.read_structure(design, self._raw_cohort_table())
        run = run_engine(
            endpoint,
            design,
            y,
            specs,
            cv=settings.cv,
            seed=settings.seed,
            n_jobs=settings.n_jobs,
            permutations=settings.permutations,
            permutation_repeats=settings.permutation_repeats,
            reference=reference,
            progress=progress,
            **self.engine_options(design, structure),
        )
        cols = design.covariate_columns + design.feature_columns
        result = classification_result(run, design.X[cols], y, design.covariate_columns, settings)
        result.metrics["covariate_types"] = [c.describe() for c in design.encoder.covariates]
        inputs = {
            "features": None if isinstance(self.features, pd.DataFrame) else str(self.features),
            "labels": str(parsed.source),
            "clinical": None
            if isinstance(self.clinical, pd.DataFrame) or self.clinical is None
            else str(self.clinical),
            "manifest": str(self.manifest) if self.manifest else None,
            "features_settings_hash": self._settings_hash,
            "covariates": [s.text() for s in self.covariates],
            "seed": self.seed,
            "settings": {
                "features": str(self.features),
                "labels": str(self.labels or self.manifest),
                "label column": parsed.label_column,
                "positive class": parsed.positive,
                "covariates": ",".join(design.covariate_columns) or "none",
                "covariate types": "; ".join(c.describe() for c in design.encoder.covariates)
                or "none",
                "clinical": str(self.clinical or self.manifest or "")
                if not isinstance(self.clinical, pd.DataFrame)
                else "DataFrame",
                "compared with": f"{reference} baseline, paired on the same folds "
                "(Nadeau-Bengio corrected resampled t-test on per-fold ROC AUC)",
            },
        }
        if run.plan is not None:
            result.metrics["cv"]["scheme"] = run.plan.describe()
        out = StudyResult(
            "binary",
            design,
            y,
            run,
            result,
            inputs=inputs,
            labels=parsed,
            cohort_info=cohort,
            warnings=warnings,
            structure=structure,
        )
        out.site_info = self.site_info(run, design, result.predictions, "binary", y)
        return out

    def _raw_cohort_table(self) -> pd.DataFrame | None:
        """The table the cohort structure falls back to: clinical, manifest, else labels."""
        if isinstance(self.clinical, pd.DataFrame):
            return self.clinical
        for path in (self.clinical, self.manifest):
            if path is not None:
                t = pd.read_csv(path, dtype=str, keep_default_na=False)
                return read_clinical(path) if "case_id" not in t.columns else t.set_index("case_id")
        src = getattr(self.read_labels(), "source", None)
        if src and Path(str(src)).is_file():
            return read_clinical(src)
        return None


OUTPUTS_RECORD = ".radsurv-outputs.json"
# what runs of radsurv before the record existed wrote, cleared when no record is there
_KNOWN_OUTPUTS = ("report.html", "metrics.json", "predictions.csv", "folds.csv", "models")


def clear_previous_outputs(out: Path) -> list[Path]:
    """Remove the files an earlier run wrote into ``out``; return them.

    The earlier run's list is ``out/.radsurv-outputs.json``; without one, a folder that holds
    an older report (``metrics.json``) loses its known output names only.
    """
    import shutil

    record = out / OUTPUTS_RECORD
    removed: list[Path] = []
    if record.is_file():
        for rel in json.loads(record.read_text()).get("files", []):
            path = out / rel
            if path.is_file() and out.resolve() in path.resolve().parents:
                path.unlink()
                removed.append(path)
        record.unlink()
    elif (out / "metrics.json").is_file():
        for name in _KNOWN_OUTPUTS:
            path = out / name
            if path.is_dir():
                removed.extend(p for p in path.rglob("*") if p.is_file())
                shutil.rmtree(path)
            elif path.is_file():
                path.unlink()
                removed.append(path)
    for folder in sorted({p.parent for p in removed}, key=lambda p: -len(p.parts)):
        if folder != out and folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed


def record_outputs(out: Path, written: Iterable[PathLike]) -> None:
    """List the files a run wrote (``written``: files, or folders taken whole) in the record."""
    files: set[str] = set()
    for item in written:
        path = Path(item)
        if not path.is_absolute():
            path = out / path
        found = [path] if path.is_file() else (list(path.rglob("*")) if path.is_dir() else [])
        files.update(str(f.relative_to(out)) for f in found if f.is_file())
    (out / OUTPUTS_RECORD).write_text(json.dumps({"files": sorted(files)}, indent=1) + "\n")


def _input_name(value: Any) -> str:
    """How an input appears in a report's settings: its path, "DataFrame", or "-"."""
    if value is None:
        return "-"
    if isinstance(value, pd.DataFrame):
        return f"DataFrame ({len(value)} rows)"
    return str(Path(value).resolve())


def _robustness_filter(
    study: Any,
) -> tuple[FeatureFilter | None, list[str], dict[str, Any]]:
    """The study's feature filter, followed by its robustness filter (``--robustness``).

    Returns the filter and the note list and cohort dict it fills when it runs.
    """
    notes: list[str] = []
    cohort: dict[str, Any] = {}
    if study.robustness is None:
        return study.feature_filter, notes, cohort
    from radsurv.features.icc import apply_robustness_option

    covariates = tuple(spec.name for spec in study.covariates)
    inner = study.feature_filter

    def robust(features: pd.DataFrame) -> pd.DataFrame:
        if inner is not None:
            features = inner(features)
        return apply_robustness_option(
            features, study.robustness, study.min_icc, covariates, notes, cohort
        )

    return robust, notes, cohort


def summary_lines(result: StudyResult) -> list[str]:
    """The terminal lines of a result: main metric per model and baseline, spreads named."""
    out = []
    entries = result._entries()
    metric = "harrell_c" if result.endpoint == "survival" else "roc_auc"
    label = "Harrell C" if metric == "harrell_c" else "ROC AUC"
    for spec in result.run.specs:
        e = entries.get(spec.name, {}).get(metric, {})
        ci = e.get("ci95", [math.nan, math.nan])
        estimate = format_estimate(e.get("mean", math.nan), e.get("sd", math.nan), ci)
        line = f"{spec.name:>16}: {label} {estimate}"
        comp = result.run.comparisons.get(spec.name)
        if comp and np.isfinite(comp.get("difference", math.nan)):
            lo, hi = comp["ci95"]
            line += (
                f"; vs {comp['reference']} {comp['difference']:+.3f} "
                f"[{lo:+.3f}, {hi:+.3f}], p {comp['p_value']:.3f}"
            )
        perm = entries.get(spec.name, {}).get("permutation_test")
        if perm:
            line += f", permutation p {perm['p_value']:.3f}"
        if spec.role == "baseline":
            line += " (baseline)"
        out.append(line)
    out.append(f"({SPREAD_NOTE[result.endpoint]})")
    groups = result.site_info.get("groups") or {}
    pooled = result.site_info.get("pooled") or {}
    for spec in result.run.specs if groups else []:
        cells = [
            f"{site} {block[spec.name][metric]['mean']:.3f} (n {block[spec.name]['n']})"
            for site, block in groups.items()
            if spec.name in block
        ]
        if spec.name in pooled:
            cells.append(f"pooled {pooled[spec.name][metric]['mean']:.3f}")
        out.append(f"{spec.name:>16} by site: " + ", ".join(cells))
    return out
