"""radsurv CLI commands: survival."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from radsurv.cli.app import app

log = logging.getLogger(__name__)


def _read_clinical(manifest: Path | None, clinical: Path | None):
    from radsurv.errors import ConfigError

    if (manifest is None) == (clinical is None):
        raise ConfigError("give exactly one of --manifest and --clinical")
    if clinical is not None:
        from radsurv.clinical import read_survival_table

        return read_survival_table(clinical)
    import pandas as pd

    from radsurv.data.manifest import Manifest

    table = Manifest.read(manifest).clinical()
    for col in ("age", "time"):
        if col in table.columns:
            table[col] = pd.to_numeric(table[col], errors="coerce")
    if "resection" in table.columns:
        res = table["resection"].astype("string").str.strip().str.upper()
        table["resection"] = res.where(res.isin(["GTR", "STR"]))
    return table


def _read_features(path: Path):
    import pandas as pd

    from radsurv.errors import ConfigError

    try:
        df = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the features table ({exc})") from exc
    id_col = "case_id" if "case_id" in df.columns else df.columns[0]
    if df[id_col].duplicated().any():
        dup = df.loc[df[id_col].duplicated(), id_col].tolist()[:5]
        raise ConfigError(f"{path}: duplicate case ids in column {id_col}: {dup}")
    return df.set_index(id_col)


@app.command("survival")
def survival(
    out: Path = typer.Option(..., "--out", "-o", help="Output folder."),
    features: Path | None = typer.Option(
        None, "--features", help="features.csv (case_id, then feature columns)."
    ),
    manifest: Path | None = typer.Option(None, "--manifest", help="data_manifest.csv."),
    clinical: Path | None = typer.Option(
        None, "--clinical", help="survival_info.csv (BraTS form)."
    ),
    covariates: str = typer.Option(
        "age", "--covariates", help="Comma-separated clinical covariates: age, resection."
    ),
    model: list[str] = typer.Option(
        ["cox"],
        "--model",
        help="cox | xgb-cox | xgb-aft[-logistic|-extreme] | rsf (repeatable).",
    ),
    cv: str = typer.Option("5x5", "--cv", help="FOLDSxREPEATS."),
    seed: int = typer.Option(0, "--seed", help="Random seed of folds and models."),
    gtr_only: bool = typer.Option(False, "--gtr-only", help="Keep gross-total resections only."),
    jobs: int = typer.Option(1, "--jobs", "-j", help="Parallel processes for the folds."),
    k: int = typer.Option(
        20, "--k", "-k", help="Features kept by in-fold selection (0: all), covariates extra."
    ),
    selection: str = typer.Option(
        "univariate",
        "--selection",
        help="In-fold selection: univariate (Cox score test) | penalised (elastic-net Cox path).",
    ),
    nested: bool = typer.Option(
        False,
        "--nested/--no-nested",
        help="Tune hyper-parameters by an inner CV on every outer training fold.",
    ),
    inner_folds: int = typer.Option(3, "--inner-folds", help="Folds of the inner (nested) CV."),
    robustness: Path | None = typer.Option(
        None, "--robustness", help="robustness.csv: keep only features with ICC >= --min-icc."
    ),
    min_icc: float = typer.Option(0.75, "--min-icc", help="ICC(2,1) threshold of --robustness."),
) -> None:
    """Cross-validated survival models against age baselines: report.html, metrics.json, ..."""
    from radsurv.evaluation.survival_report import (
        build_design,
        run_survival_analysis,
        write_survival_outputs,
    )

    table = _read_clinical(manifest, clinical)
    feats = _read_features(features) if features is not None else None
    covs = [c.strip() for c in covariates.split(",") if c.strip()]
    robust_notes: list[str] = []
    robust_cohort: dict = {}
    if feats is not None:
        from radsurv.features.icc import apply_robustness_option

        feats = apply_robustness_option(
            feats, robustness, min_icc, covs, robust_notes, robust_cohort
        )
    data = build_design(table, feats, covs, gtr_only=gtr_only)
    data.notes += robust_notes
    data.cohort.update(robust_cohort)
    analysis = run_survival_analysis(
        data,
        model,
        cv=cv,
        seed=seed,
        n_jobs=jobs,
        k=k if k > 0 else None,
        selection=selection,
        nested=nested,
        inner_folds=inner_folds,
    )
    paths = write_survival_outputs(analysis, out)
    for name in analysis.models + analysis.baselines:
        c = analysis.cv.summaries[name]["harrell_c"]
        typer.echo(
            f"{name:>16}: Harrell C {c['mean']:.3f} +- {c['sd_folds']:.3f} (sd over folds), "
            f"95% CI [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]"
        )
    typer.echo(f"report: {paths['report']}")
    failed = [n for n in analysis.cv.summaries if "failed_folds" in analysis.cv.summaries[n]]
    if failed:
        typer.echo(f"some folds failed for {failed}; see metrics.json", err=True)
        raise typer.Exit(1)
