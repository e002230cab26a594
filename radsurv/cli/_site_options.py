"""CLI options of site-wise validation and harmonisation, shared by survival and classify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

CV_HELP = (
    "FOLDSxREPEATS (stratified; grouped by subject when a subject has several rows), site "
    "(leave one site out), or site:FOLDSxREPEATS (K-fold grouped by site)."
)
COHORT = typer.Option(
    None,
    "--cohort",
    help="Table with the cases' site / subject_id / timepoint (e.g. name_mapping.csv: site "
    "from BraTS_2019_subject_ID); default: the manifest or --clinical table's columns.",
)
SITE_COLUMN = typer.Option(None, "--site-column", help="Site column (default: site).")
SUBJECT_COLUMN = typer.Option(
    None, "--subject-column", help="Subject column (default: subject_id, else the case id)."
)
TIMEPOINT_COLUMN = typer.Option(None, "--timepoint-column", help="Time-point column.")
MIN_SITE = typer.Option(
    10, "--min-site-size", help="--cv site: smaller sites are never test sites (train only)."
)
TRAIN_SITES = typer.Option(None, "--train-sites", help="External validation: training sites A,B.")
TEST_SITES = typer.Option(None, "--test-sites", help="External validation: test sites C,D.")
HARMONIZE = typer.Option(
    None, "--harmonize", help="combat: ComBat of the features across sites, inside each fold."
)
HARMONIZE_COV = typer.Option(
    None, "--harmonize-covariates", help="Clinical columns ComBat preserves, e.g. age,grade."
)

NAMES = (
    "cohort",
    "site_column",
    "subject_column",
    "timepoint_column",
    "min_site_size",
    "train_sites",
    "test_sites",
    "harmonize",
    "harmonize_covariates",
)


def site_kwargs(kw: dict[str, Any]) -> dict[str, Any]:
    """The study keyword arguments of these options."""
    out = {n: kw.get(n) for n in NAMES}
    if out["min_site_size"] is None:
        out["min_site_size"] = 10
    if isinstance(out["cohort"], Path):
        out["cohort"] = str(out["cohort"])
    return out
