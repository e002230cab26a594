"""Typer options shared by the commands that compute features (extract-features, robustness)."""

from __future__ import annotations

import typer

PARAMS = typer.Option(
    "brats-original",
    "--params",
    help="brats-original, brats-filters, or a PyRadiomics parameter file (.yaml).",
)
INTENSITY = typer.Option(
    "zscore-brain", "--intensity", help="zscore-brain (inside non-zero voxels) or as-is."
)
REGIONS = typer.Option(None, "--regions", help="Subset of NCR,ED,ET,TC,WT (default all).")
MODALITIES = typer.Option(
    None, "--modalities", help="Subset of flair,t1,t1gd,t2 (default: those every case has)."
)
JOBS = typer.Option(None, "--jobs", "-j", help="Worker processes (default all cores).")
DASK = typer.Option(
    None, "--dask", help="Address of a Dask scheduler (tcp://host:8786) to run the tasks on."
)
PROGRESS = typer.Option(
    None, "--progress/--no-progress", help="Progress bar (default: on a terminal)."
)
