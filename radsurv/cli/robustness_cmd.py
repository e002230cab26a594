"""radsurv CLI command: ``radsurv robustness`` (feature ICC under perturbations and masks)."""

from __future__ import annotations

from pathlib import Path

import typer

from radsurv.cli import feature_options as opt
from radsurv.cli.app import app
from radsurv.cli.progress import progress_display


@app.command("robustness")
def robustness_cmd(
    manifest: Path = typer.Option(..., "--manifest", help="data_manifest.csv to read cases from."),
    output: Path = typer.Option(
        ..., "-o", "--output", help="robustness.csv (one row per feature); more files beside it."
    ),
    perturbations: str = typer.Option(
        "erode,dilate,contour,translate,rotate:-5,rotate:5,noise",
        "--perturbations",
        help="Comma-separated: erode[:n], dilate[:n], contour[:sd], translate[:voxels], "
        "rotate[:degrees], noise[:x noise SD]; none for no perturbation.",
    ),
    masks: list[str] = typer.Option(
        None,
        "--masks",
        help="Other segmentations to compare: DIR (<case_id>.nii.gz) or NAME=DIR; repeatable. "
        "DIR may be a path template with {case_id}.",
    ),
    reference: str = typer.Option(
        "ground-truth",
        "--reference",
        help="Segmentation that is perturbed and called original: ground-truth or a --masks NAME.",
    ),
    params: str = opt.PARAMS,
    intensity: str = opt.INTENSITY,
    regions: str = opt.REGIONS,
    modalities: str = opt.MODALITIES,
    seed: int = typer.Option(0, "--seed", help="Seed of the random perturbations."),
    jobs: int = opt.JOBS,
    dask: str = opt.DASK,
    progress: bool = opt.PROGRESS,
) -> None:
    """ICC(2,1) of every feature under perturbations and across segmentations.

    Writes OUT (feature, icc, icc_low, icc_high, n_cases, n_perturbations, feature_class,
    image_type, modality, region), <name>_features.csv (long form the ICC is computed from),
    <name>.html, <name>.status.csv, <name>.provenance.json and, with --masks,
    <name>_segmentations.csv (CV per case across segmentations). Exit code 1 when a case failed.
    """
    from radsurv.data.labels import parse_modalities, parse_regions
    from radsurv.features.robustness import compute_robustness

    with progress_display("robustness", progress) as callback:
        result = compute_robustness(
            manifest,
            perturbations=perturbations,
            masks=masks or None,
            reference=reference,
            params=params,
            intensity=intensity,
            regions=parse_regions(regions),
            modalities=parse_modalities(modalities),
            seed=seed,
            jobs=jobs,
            dask=dask,
            output=output,
            progress=callback,
        )
    typer.echo(
        f"{result.provenance['n_ok']}/{result.provenance['n_cases']} case(s) ok, "
        f"{len(result.robustness)} features: ICC >= 0.75 for {result.fraction_at_least(0.75):.0%}, "
        f">= 0.9 for {result.fraction_at_least(0.9):.0%} -> {output}"
    )
    if result.failed:
        typer.echo(f"failed: {', '.join(result.failed)}", err=True)
        raise typer.Exit(1)
