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
    manifest: Path = typer.Option(
        ..., "--manifest", help="data_manifest.csv with subject_id and timepoint per scan."
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
    from radsurv.data.manifest import Manifest
    from radsurv.features.delta import delta_features, read_features, write_table

    table = delta_features(
        read_features(features), Manifest.read(manifest).cohort(), baseline=baseline, kind=kind
    )
    write_table(table, output)
    n_features = len(table.columns) - 5
    typer.echo(
        f"wrote {output}: {len(table)} follow-up scan(s) of {table['subject_id'].nunique()} "
        f"subject(s), {n_features} delta column(s)"
    )
