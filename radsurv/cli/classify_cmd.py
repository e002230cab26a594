"""radsurv CLI commands: classify (pseudoprogression or any binary endpoint), fit | predict |
evaluate. Every command body is one call of :mod:`radsurv.study`."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from radsurv.cli import _site_options as _so
from radsurv.cli.app import app

logger = logging.getLogger(__name__)

classify_app = typer.Typer(
    help="Cross-validate classifiers for a binary endpoint; fit, predict, evaluate.",
    add_completion=False,
)
app.add_typer(classify_app, name="classify")

_FEATURES = typer.Option(None, "--features", help="Features table, CSV or Parquet.")
_LABELS = typer.Option(
    None, "--labels", help="Label table (case id + label); default: the manifest's labels."
)
_LABEL_COLUMN = typer.Option(
    None, "--label-column", help="Label column (default: label/target/outcome/...)."
)
_POSITIVE = typer.Option(
    None, "--positive", help="Positive class as written, e.g. pseudoprogression or LGG."
)
_NEGATIVE = typer.Option(None, "--negative", help="Negative class (default: every other label).")
_DROP = typer.Option(
    False, "--drop-unknown", help="Leave out rows with missing/unknown labels (reported)."
)
_MODEL = typer.Option(
    None, "--model", help="logreg, xgb, rf (repeatable or comma-separated; default logreg)."
)
_COVARIATES = typer.Option(
    None,
    "--covariates",
    help="Clinical covariates, e.g. age,resection,idh:categorical (forced into every model).",
)
_CLINICAL = typer.Option(
    None, "--clinical", help="Clinical CSV (any table with an id column) for the covariates."
)
_MANIFEST = typer.Option(
    None, "--manifest", help="data_manifest.csv (covariates, and labels without --labels)."
)
_CV = typer.Option("5x5", "--cv", help=_so.CV_HELP)
_SEED = typer.Option(0, "--seed", help="Seed of folds, models, permutations.")
_JOBS = typer.Option(1, "--jobs", "-j", help="Parallel processes for the folds.")
_K = typer.Option(20, "--k", "-k", help="Features kept by in-fold selection (0: all).")
_NESTED = typer.Option(False, "--nested", help="Tune hyper-parameters by inner CV.")
_PERM = typer.Option(20, "--permutations", help="Label permutations for the AUC test (0: off).")
_ROBUST = typer.Option(
    None, "--robustness", help="robustness.csv: keep only features with ICC >= --min-icc."
)
_MIN_ICC = typer.Option(0.75, "--min-icc", help="ICC(2,1) threshold of --robustness.")
_OUT = typer.Option(None, "--out", help="Output folder.")


def _run(locked: bool, **kw) -> None:  # noqa: ANN003
    from radsurv.errors import ConfigError
    from radsurv.study import BinaryStudy
    from radsurv.study.study import summary_lines

    if kw["out"] is None:
        raise ConfigError("--out is required (the output folder)")
    if kw["features"] is None:
        raise ConfigError("--features is required (the features table)")
    study = BinaryStudy(
        kw["features"],
        kw["labels"],
        label_column=kw["label_column"],
        positive=kw["positive"],
        negative=kw["negative"],
        drop_unknown=kw["drop_unknown"],
        covariates=kw["covariates"],
        clinical=kw["clinical"],
        manifest=kw["manifest"],
        models=kw["model"],
        cv=kw["cv"],
        seed=kw["seed"],
        k=kw["k"],
        nested=kw["nested"],
        permutations=kw["permutations"],
        n_jobs=kw["jobs"],
        robustness=kw["robustness"],
        min_icc=kw["min_icc"],
        **_so.site_kwargs(kw),
    )
    labels = study.read_labels()
    study.labels = labels
    typer.echo(f"positive class: '{labels.positive}' (label 1); {labels.summary()}")
    from radsurv.cli.progress import progress_display

    with progress_display("classify") as progress:
        result = study.run(progress=progress)
    for line in result.describe_covariates():
        typer.echo(f"covariate {line}")
    paths = result.save(kw["out"])
    for line in summary_lines(result):
        typer.echo(line)
    typer.echo(f"report: {paths['report']}")
    if locked:
        typer.echo(f"locked model: {result.save_model(Path(kw['out']) / 'model')}")


@classify_app.callback(invoke_without_command=True)
def classify(
    ctx: typer.Context,
    features: Path | None = _FEATURES,
    labels: Path | None = _LABELS,
    label_column: str | None = _LABEL_COLUMN,
    positive: str | None = _POSITIVE,
    negative: str | None = _NEGATIVE,
    drop_unknown: bool = _DROP,
    model: list[str] | None = _MODEL,
    covariates: str | None = _COVARIATES,
    clinical: Path | None = _CLINICAL,
    manifest: Path | None = _MANIFEST,
    cv: str = _CV,
    seed: int = _SEED,
    jobs: int = _JOBS,
    k: int = _K,
    nested: bool = _NESTED,
    permutations: int = _PERM,
    robustness: Path | None = _ROBUST,
    min_icc: float = _MIN_ICC,
    out: Path | None = _OUT,
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
    """Cross-validate classifiers for a binary endpoint against a clinical baseline.

    Without a subcommand: the CV report in --out. `fit` adds a locked model (DIR/model/);
    `predict` and `evaluate` apply one to new cases.
    """
    if ctx.invoked_subcommand is not None:
        return
    kw = {k_: v for k_, v in locals().items() if k_ != "ctx"}
    _run(False, **kw)


@classify_app.command("fit")
def classify_fit(
    features: Path | None = _FEATURES,
    labels: Path | None = _LABELS,
    label_column: str | None = _LABEL_COLUMN,
    positive: str | None = _POSITIVE,
    negative: str | None = _NEGATIVE,
    drop_unknown: bool = _DROP,
    model: list[str] | None = _MODEL,
    covariates: str | None = _COVARIATES,
    clinical: Path | None = _CLINICAL,
    manifest: Path | None = _MANIFEST,
    cv: str = _CV,
    seed: int = _SEED,
    jobs: int = _JOBS,
    k: int = _K,
    nested: bool = _NESTED,
    permutations: int = _PERM,
    robustness: Path | None = _ROBUST,
    min_icc: float = _MIN_ICC,
    out: Path | None = _OUT,
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
    """The CV report (as `radsurv classify`) plus DIR/model/: the models refitted on all cases."""
    _run(True, **dict(locals()))


@classify_app.command("predict")
def classify_predict(
    model_dir: Path = typer.Option(..., "--model", help="Locked model folder (fit's DIR/model)."),
    features: Path = typer.Option(..., "--features", help="Features table, CSV or Parquet."),
    clinical: Path | None = typer.Option(None, "--clinical", help="Clinical table (covariates)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    name: str | None = typer.Option(None, "--name", help="Which model (default: the first)."),
) -> None:
    """predictions.csv: probability and the class from the threshold chosen in training."""
    from radsurv.study.locked import predict_locked

    res = predict_locked(model_dir, features, clinical, out=out, model_name=name)
    typer.echo(f"{len(res.predictions)} cases predicted with {res.model_name}: {res.paths}")


@classify_app.command("evaluate")
def classify_evaluate(
    model_dir: Path = typer.Option(..., "--model", help="Locked model folder (fit's DIR/model)."),
    features: Path = typer.Option(..., "--features", help="Features table, CSV or Parquet."),
    labels: Path = typer.Option(..., "--labels", help="Label table of the external cohort."),
    label_column: str | None = _LABEL_COLUMN,
    clinical: Path | None = typer.Option(None, "--clinical", help="Clinical table (covariates)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    name: str | None = typer.Option(None, "--name", help="Which model (default: the first)."),
    n_boot: int = typer.Option(200, "--bootstrap", help="Bootstrap resamples for the CIs."),
) -> None:
    """Score a locked classifier on a labelled external cohort (metrics with CIs, calibration).

    Metrics use the threshold chosen in training; the baseline is the training-fitted one.
    """
    from radsurv.study.locked import evaluate_locked

    res = evaluate_locked(
        model_dir,
        features,
        clinical,
        labels=labels,
        label_column=label_column,
        out=out,
        model_name=name,
        n_boot=n_boot,
    )
    for line in res.lines():
        typer.echo(line)
    typer.echo(f"report: {res.paths.get('report')}")
