"""radsurv CLI: `radsurv delta`, longitudinal delta-radiomics."""

from __future__ import annotations

from pathlib import Path

import typer

from radsurv.cli.app import app


@app.command("delta")
def delta(
    features: Path = typer.Option(
        ..., "--features", help="Features table, one row per scan (.csv or .parquet)."
    ),
    manifest: Path | None = typer.Option(
        None, "--manifest", help="data_manifest.csv with subject_id and timepoint per scan."
    ),
    cohort_table: Path | None = typer.Option(
        None,
        "--cohort-table",
        help="Instead of --manifest: any table (e.g. the --clinical one) with a case id, "
        "subject and time point column per scan.",
    ),
    subject_column: str | None = typer.Option(
        None, "--subject-column", help="Subject column of --cohort-table (default: subject_id)."
    ),
    timepoint_column: str | None = typer.Option(
        None,
        "--timepoint-column",
        help="Time point column of --cohort-table (default: timepoint).",
    ),
    output: Path = typer.Option(..., "-o", "--output", help="Delta table (.csv or .parquet)."),
    baseline: str = typer.Option(
        "first",
        "--baseline",
        help="first (each subject's earliest scan) or timepoint=N (its scan at time point N).",
    ),
    kind: str = typer.Option(
        "difference",
        "--kind",
        help="difference (delta_<f> = f - b), relative (reldelta_<f> = (f - b) / |b|, NaN "
        "where b == 0) or both.",
    ),
) -> None:
    """Per subject, follow-up minus baseline of every feature: one row per follow-up scan."""
    from radsurv.data.cohort import read_cohort_columns
    from radsurv.data.manifest import Manifest
    from radsurv.errors import ConfigError
    from radsurv.features.delta import delta_features, read_features, write_table

    if (manifest is None) == (cohort_table is None):
        raise ConfigError("give exactly one of --manifest and --cohort-table")
    if manifest is not None:
        if subject_column or timepoint_column:
            raise ConfigError("--subject-column/--timepoint-column go with --cohort-table")
        cohort = Manifest.read(manifest).cohort()
    else:
        cohort = read_cohort_columns(
            cohort_table, subject_column=subject_column, timepoint_column=timepoint_column
        )
    table = delta_features(read_features(features), cohort, baseline=baseline, kind=kind)
    write_table(table, output)
    n_features = len(table.columns) - 5
    typer.echo(
        f"wrote {output}: {len(table)} follow-up scan(s) of {table['subject_id'].nunique()} "
        f"subject(s), {n_features} delta column(s)"
    )
