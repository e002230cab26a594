"""radsurv CLI commands: features (``radsurv extract-features``)."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from radsurv.cli import feature_options as opt
from radsurv.cli.app import app

logger = logging.getLogger(__name__)


def _quiet_dask_logs() -> None:
    """Dask logs a lost connection with tracebacks; radsurv reports it in one line (-vv: Dask's).

    Dask's configuration gives some of its loggers their own levels, so each is set.
    """
    import distributed  # noqa: F401 - configures its loggers, which are then turned down

    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.CRITICAL)


@app.command("extract-features")
def extract_features_cmd(
    manifest: Path = typer.Option(..., "--manifest", help="data_manifest.csv to read cases from."),
    output: Path = typer.Option(..., "-o", "--output", help="Features table (.csv or .parquet)."),
    masks: str = typer.Option(
        "ground-truth", "--masks", help="ground-truth, or a folder with <case_id>.nii.gz masks."
    ),
    params: str = opt.PARAMS,
    intensity: str = opt.INTENSITY,
    regions: str = opt.REGIONS,
    modalities: str = opt.MODALITIES,
    jobs: int = opt.JOBS,
    dask: str = opt.DASK,
    dask_report: Path = typer.Option(
        None, "--dask-report", help="With --dask: write Dask's performance report (HTML) here."
    ),
    force: bool = typer.Option(False, "--force", help="Recompute cases finished earlier."),
    strict: bool = typer.Option(False, "--strict", help="Stop at the first failing case."),
    progress: bool = opt.PROGRESS,
) -> None:
    """Radiomic features per case x subregion x modality (PyRadiomics), resumable and parallel.

    Writes OUT, OUT's status table (<name>.status.csv), provenance (<name>.provenance.json) and
    finished cases under OUT.parts/ (rerun the same command to resume). Exit code 1 when a case
    failed (see the status table), 2 on bad options or input, 3 when the Dask scheduler was
    lost or unreachable, 130 after Ctrl-C (finished cases are saved: rerun to resume).
    """
    from radsurv.cli.progress import feature_progress
    from radsurv.data.labels import parse_modalities, parse_regions
    from radsurv.features.runner import extract_features

    mask_arg = masks if masks == "ground-truth" else Path(masks)
    if dask and logging.getLogger("radsurv").getEffectiveLevel() > logging.DEBUG:
        _quiet_dask_logs()
    result = extract_features(
        manifest,
        params=params,
        intensity=intensity,
        regions=parse_regions(regions),
        modalities=parse_modalities(modalities),
        masks=mask_arg,
        jobs=jobs,
        dask=dask,
        output=output,
        force=force,
        strict=strict,
        progress=feature_progress(progress),
        dask_report=dask_report,
    )
    n_ok = int((result.status["status"] == "ok").sum())
    typer.echo(
        f"{n_ok}/{len(result.status)} case(s) ok, {result.features.shape[1] - 1} feature columns "
        f"-> {output} (status: {result.provenance['status']})"
    )
    if result.failed:
        typer.echo(f"failed: {', '.join(result.failed)}", err=True)
        raise typer.Exit(1)
