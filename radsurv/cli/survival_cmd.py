"""radsurv CLI commands: survival (cross-validated report), survival fit | predict | evaluate.

``radsurv survival OPTIONS`` (no subcommand) writes the CV report; ``radsurv survival fit
OPTIONS --out DIR`` writes the same report plus the locked model ``DIR/model/``;
``predict`` and ``evaluate`` apply a locked model to new cases. Every command body is one call
of :mod:`radsurv.study`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from radsurv.cli import _site_options as _so
from radsurv.cli.app import app

log = logging.getLogger(__name__)

survival_app = typer.Typer(
    help="Cross-validated survival models against age baselines; fit, predict, evaluate.",
    add_completion=False,
)
app.add_typer(survival_app, name="survival")

_OUT = typer.Option(None, "--out", "-o", help="Output folder.")
_FEATURES = typer.Option(None, "--features", help="Features table, CSV or Parquet (case_id, ...).")
_MANIFEST = typer.Option(None, "--manifest", help="data_manifest.csv.")
_CLINICAL = typer.Option(
    None,
    "--clinical",
    help="Clinical CSV: BraTS survival_info.csv, or any table with an id, time and event column.",
)
_COVARIATES = typer.Option(
    "age",
    "--covariates",
    help="Comma-separated clinical columns, forced into every model; name:categorical or "
    "name:numeric forces a type (e.g. age,resection,idh:categorical,kps).",
)
_MODEL = typer.Option(
    ["cox"], "--model", help="cox | xgb-cox | xgb-aft[-logistic|-extreme] | rsf (repeatable)."
)
_CV = typer.Option("5x5", "--cv", help=_so.CV_HELP)
_SEED = typer.Option(0, "--seed", help="Random seed of folds and models.")
_GTR = typer.Option(False, "--gtr-only", help="Keep gross-total resections only.")
_JOBS = typer.Option(1, "--jobs", "-j", help="Parallel processes for the folds.")
_K = typer.Option(
    20, "--k", "-k", help="Features kept by in-fold selection (0: all), covariates extra."
)
_SELECTION = typer.Option(
    "univariate",
    "--selection",
    help="In-fold selection: univariate (Cox score test) | penalised (elastic-net Cox path).",
)
_NESTED = typer.Option(
    False,
    "--nested/--no-nested",
    help="Tune hyper-parameters by an inner CV on every outer training fold.",
)
_INNER = typer.Option(3, "--inner-folds", help="Folds of the inner (nested) CV.")
_PERM = typer.Option(0, "--permutations", help="Permutation test of Harrell's C (0: off).")
_ROBUST = typer.Option(
    None, "--robustness", help="robustness.csv: keep only features with ICC >= --min-icc."
)
_MIN_ICC = typer.Option(0.75, "--min-icc", help="ICC(2,1) threshold of --robustness.")
_ID = typer.Option(None, "--id-column", help="Id column of a generic clinical table.")
_TIME = typer.Option(None, "--time-column", help="Time (days) column of a generic table.")
_EVENT = typer.Option(None, "--event-column", help="Event (1 death, 0 censored) column.")


def _study(**kw):  # noqa: ANN003, ANN202
    from radsurv.study import SurvivalStudy

    return SurvivalStudy(
        clinical=kw["clinical"],
        features=kw["features"],
        manifest=kw["manifest"],
        covariates=kw["covariates"],
        models=kw["model"],
        cv=kw["cv"],
        seed=kw["seed"],
        n_jobs=kw["jobs"],
        k=kw["k"],
        selection=kw["selection"],
        nested=kw["nested"],
        inner_folds=kw["inner_folds"],
        gtr_only=kw["gtr_only"],
        permutations=kw["permutations"],
        id_column=kw["id_column"],
        time_column=kw["time_column"],
        event_column=kw["event_column"],
        robustness=kw["robustness"],
        min_icc=kw["min_icc"],
        **_so.site_kwargs(kw),
    )


def _run_and_report(out: Path | None, locked: bool, **kw) -> None:  # noqa: ANN003
    from radsurv.errors import ConfigError
    from radsurv.study.study import summary_lines

    if out is None:
        raise ConfigError("--out is required (the output folder)")
    from radsurv.cli.progress import progress_display

    with progress_display("survival") as progress:
        result = _study(**kw).run(progress=progress)
    for line in result.describe_covariates():
        typer.echo(f"covariate {line}")
    paths = result.save(out)
    for line in summary_lines(result):
        typer.echo(line)
    typer.echo(f"report: {paths['report']}")
    if locked:
        model_dir = result.save_model(Path(out) / "model")
        typer.echo(f"locked model: {model_dir}")
    summaries = result.report.cv.summaries
    failed = [n for n in summaries if "failed_folds" in summaries[n]]
    if failed:
        typer.echo(f"some folds failed for {failed}; see metrics.json", err=True)
        raise typer.Exit(1)


@survival_app.callback(invoke_without_command=True)
def survival(
    ctx: typer.Context,
    out: Path | None = _OUT,
    features: Path | None = _FEATURES,
    manifest: Path | None = _MANIFEST,
    clinical: Path | None = _CLINICAL,
    covariates: str = _COVARIATES,
    model: list[str] = _MODEL,
    cv: str = _CV,
    seed: int = _SEED,
    gtr_only: bool = _GTR,
    jobs: int = _JOBS,
    k: int = _K,
    selection: str = _SELECTION,
    nested: bool = _NESTED,
    inner_folds: int = _INNER,
    permutations: int = _PERM,
    robustness: Path | None = _ROBUST,
    min_icc: float = _MIN_ICC,
    id_column: str | None = _ID,
    time_column: str | None = _TIME,
    event_column: str | None = _EVENT,
    cohort: Path | None = _so.COHORT,
    site_column: str | None = _so.SITE_COLUMN,
    subject_column: str | None = _so.SUBJECT_COLUMN,
    timepoint_column: str | None = _so.TIMEPOINT_COLUMN,
    min_site_size: int = _so.MIN_SITE,
    train_sites: str | None = _so.TRAIN_SITES,
    test_sites: str | None = _so.TEST_SITES,
    harmonize: str | None = _so.HARMONIZE,
    harmonize_covariates: str | None = _so.HARMONIZE_COV,
) -> None:
    """Cross-validated survival models against age baselines: report.html, metrics.json, ...

    Without a subcommand: the CV report in --out. `fit` adds a locked model (DIR/model/);
    `predict` and `evaluate` apply one to new cases.
    """
    if ctx.invoked_subcommand is not None:
        return
    kw = {k_: v for k_, v in locals().items() if k_ not in ("ctx", "out")}
    _run_and_report(out, False, **kw)


@survival_app.command("fit")
def survival_fit(
    out: Path | None = _OUT,
    features: Path | None = _FEATURES,
    manifest: Path | None = _MANIFEST,
    clinical: Path | None = _CLINICAL,
    covariates: str = _COVARIATES,
    model: list[str] = _MODEL,
    cv: str = _CV,
    seed: int = _SEED,
    gtr_only: bool = _GTR,
    jobs: int = _JOBS,
    k: int = _K,
    selection: str = _SELECTION,
    nested: bool = _NESTED,
    inner_folds: int = _INNER,
    permutations: int = _PERM,
    robustness: Path | None = _ROBUST,
    min_icc: float = _MIN_ICC,
    id_column: str | None = _ID,
    time_column: str | None = _TIME,
    event_column: str | None = _EVENT,
    cohort: Path | None = _so.COHORT,
    site_column: str | None = _so.SITE_COLUMN,
    subject_column: str | None = _so.SUBJECT_COLUMN,
    timepoint_column: str | None = _so.TIMEPOINT_COLUMN,
    min_site_size: int = _so.MIN_SITE,
    train_sites: str | None = _so.TRAIN_SITES,
    test_sites: str | None = _so.TEST_SITES,
    harmonize: str | None = _so.HARMONIZE,
    harmonize_covariates: str | None = _so.HARMONIZE_COV,
) -> None:
    """The CV report (as `radsurv survival`) plus DIR/model/: the models refitted on all cases."""
    kw = {k_: v for k_, v in locals().items() if k_ != "out"}
    _run_and_report(out, True, **kw)


@survival_app.command("predict")
def survival_predict(
    model_dir: Path = typer.Option(..., "--model", help="Locked model folder (fit's DIR/model)."),
    features: Path = typer.Option(..., "--features", help="Features table, CSV or Parquet."),
    clinical: Path | None = typer.Option(
        None, "--clinical", help="Clinical table of the new cases (e.g. BraTS validation form)."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    times: str = typer.Option("180,365,730", "--times", help="Days for survival probabilities."),
    name: str | None = typer.Option(None, "--name", help="Which model (default: the first)."),
) -> None:
    """predictions.csv (risk, S(t), predicted days, BraTS class); submission.csv for BraTS tables.

    A BraTS-form clinical table (e.g. BraTS20ID,Age,ResectionStatus) also gives submission.csv
    (BraTS20ID,Survival_days), one row per case of the table in its order.
    """
    from radsurv.study.locked import predict_locked

    days = [float(t) for t in times.split(",") if t.strip()]
    res = predict_locked(model_dir, features, clinical, out=out, times=days, model_name=name)
    typer.echo(f"{len(res.predictions)} cases predicted with {res.model_name}: {res.paths}")


@survival_app.command("evaluate")
def survival_evaluate(
    model_dir: Path = typer.Option(..., "--model", help="Locked model folder (fit's DIR/model)."),
    features: Path = typer.Option(..., "--features", help="Features table, CSV or Parquet."),
    clinical: Path = typer.Option(..., "--clinical", help="Labelled clinical table (time, event)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    name: str | None = typer.Option(None, "--name", help="Which model (default: the first)."),
    n_boot: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples for the CIs."),
) -> None:
    """Score a locked model on a labelled external cohort (metrics with CIs, calibration, KM).

    Kaplan-Meier curves use the risk groups defined on the training cohort; the age baseline is
    the one fitted on the training cohort.
    """
    from radsurv.study.locked import evaluate_locked

    res = evaluate_locked(model_dir, features, clinical, out=out, model_name=name, n_boot=n_boot)
    for line in res.lines():
        typer.echo(line)
    typer.echo(f"report: {res.paths.get('report')}")


def _read_clinical(manifest: Path | None, clinical: Path | None):  # noqa: ANN202
    """The clinical table of a survival run (kept for scripts; :class:`SurvivalStudy` reads)."""
    from radsurv.study import SurvivalStudy

    return SurvivalStudy(clinical=clinical, manifest=manifest).read_clinical()


def _read_features(path: Path):  # noqa: ANN202
    """A features table (CSV or Parquet) indexed by case id."""
    from radsurv.study.design import read_features

    return read_features(path)
