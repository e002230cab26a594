"""radsurv CLI: `radsurv synth`, the synthetic BraTS-like cohort."""

from __future__ import annotations

from pathlib import Path

import typer

from radsurv.cli.app import app


@app.command("synth")
def synth(
    out: Path = typer.Argument(..., help="Output folder (cohort written under OUT/data/)."),
    cases: int = typer.Option(
        48, "--cases", "-n", min=1, help="Number of cases (subjects with --timepoints 2)."
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (deterministic output)."),
    shape: tuple[int, int, int] = typer.Option(
        (40, 96, 96), "--shape", help="Volume shape Z Y X in 1 mm voxels."
    ),
    timepoints: int = typer.Option(
        1,
        "--timepoints",
        min=1,
        max=2,
        help="2: a baseline and a follow-up scan per subject (pseudoprogression vs true "
        "progression judged on the follow-up; cohort.csv gives subject_id and timepoint).",
    ),
) -> None:
    """Write a synthetic cohort in the Kaggle HDF5 layout plus clinical tables and its truth."""
    from radsurv.data.synthetic import synthesize_cohort

    cohort = synthesize_cohort(out, n_cases=cases, seed=seed, shape=shape, timepoints=timepoints)
    if timepoints == 2:
        typer.echo(f"wrote {cases} subjects x 2 scans to {cohort.data_dir} (cohort.csv)")
    else:
        typer.echo(f"wrote {cases} cases to {cohort.data_dir}")
    typer.echo(
        f"clinical tables: {cohort.survival_csv.name}, {cohort.name_mapping_csv.name}, "
        f"{cohort.labels_csv.name}; generative truth: {cohort.truth_json.name}"
    )
