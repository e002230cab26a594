"""radsurv CLI commands: data."""

from pathlib import Path

import typer

from radsurv.cli.app import app

# --- manifest / convert (NIfTI folders, the sample sheet, layout conversion) -----------------


def _parse_modality_options(items: list[str] | None) -> dict[str, str] | None:
    """``["flair=Flair*.nii.gz", ...]`` -> ``{"flair": "Flair*.nii.gz"}`` (t1ce means t1gd)."""
    from radsurv.data.labels import MODALITIES
    from radsurv.errors import ConfigError

    if not items:
        return None
    patterns: dict[str, str] = {}
    for item in items:
        name, sep, pattern = item.partition("=")
        name = name.strip().lower()
        name = "t1gd" if name == "t1ce" else name
        if not sep or not pattern.strip() or name not in MODALITIES:
            raise ConfigError(
                f"--modality {item!r}: expected NAME=PATTERN with NAME one of "
                f"{', '.join(MODALITIES)}, e.g. --modality flair=Flair_subtrMeanDivStd.nii.gz"
            )
        patterns[name] = pattern.strip()
    return patterns


_FORMAT_HELP = "Input layout: kaggle (alias kaggle_hdf5) or nifti (default: detected)."
_JOBS_HELP = "Worker processes reading the cases (results identical to --jobs 1, same order)."
_PROGRESS_HELP = "Progress bar (default: on a terminal; log lines otherwise)."
_MODALITY_HELP = (
    "NIfTI file pattern per modality, NAME=GLOB (repeatable), e.g. flair=*_FLAIR.nii.gz."
)
_SEG_HELP = "NIfTI label mask pattern (default: *_seg.nii* or *-seg.nii*)."
_CONVENTION_HELP = (
    "Label convention of NIfTI masks: brats2015, brats2020 or brats2023 (default: detected)."
)


@app.command("manifest")
def manifest(
    data: Path = typer.Argument(..., help="Kaggle pack root / slice folder, or NIfTI dataset."),
    output: Path = typer.Option(Path("data_manifest.csv"), "--output", "-o", help="Manifest CSV."),
    clinical: Path | None = typer.Option(None, "--clinical", help="survival_info.csv"),
    name_mapping: Path | None = typer.Option(
        None,
        "--name-mapping",
        help="name_mapping.csv: grade, and site from the BraTS 2019 id (BraTS19_<SITE>_...), "
        "else the TCGA tissue-source code (TCGA-06), else 'unknown'.",
    ),
    labels: Path | None = typer.Option(
        None, "--labels", help="Endpoint labels, e.g. pseudoprogression.csv"
    ),
    fmt: str | None = typer.Option(None, "--format", help=_FORMAT_HELP),
    modality: list[str] | None = typer.Option(None, "--modality", help=_MODALITY_HELP),
    seg: str | None = typer.Option(None, "--seg", help=_SEG_HELP),
    label_convention: str | None = typer.Option(None, "--label-convention", help=_CONVENTION_HELP),
    checksum: bool = typer.Option(True, "--checksum/--no-checksum", help="Content checksums."),
    cohort_table: Path | None = typer.Option(
        None,
        "--cohort-table",
        help="Table (CSV/TSV/Parquet, one row per scan, a case id column) giving subject_id, "
        "timepoint and/or site; may be the --clinical or --name-mapping file. Default: "
        "cohort.csv beside the data.",
    ),
    cohort_id_column: str | None = typer.Option(
        None, "--cohort-id-column", help="Case id column of --cohort-table (default: detected)."
    ),
    site_column: str | None = typer.Option(
        None, "--site-column", help="Site column of --cohort-table (default: 'site' if any)."
    ),
    subject_column: str | None = typer.Option(
        None,
        "--subject-column",
        help="Subject (patient) column of --cohort-table (default: 'subject_id' if any).",
    ),
    timepoint_column: str | None = typer.Option(
        None,
        "--timepoint-column",
        help="Time point column of --cohort-table: days from baseline or an ordinal "
        "(default: 'timepoint' if any).",
    ),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help=_JOBS_HELP),
    progress: bool | None = typer.Option(None, "--progress/--no-progress", help=_PROGRESS_HELP),
) -> None:
    """Write the sample sheet (one row per case) that every later command takes."""
    from radsurv.cli.progress import progress_display
    from radsurv.data.manifest import build_manifest, write_manifest

    with progress_display("manifest", progress) as on_progress:
        df = build_manifest(
            data,
            fmt=fmt,
            clinical=clinical,
            name_mapping=name_mapping,
            labels=labels,
            modality_patterns=_parse_modality_options(modality),
            seg_pattern=seg,
            label_convention=label_convention,
            relative_to=output.resolve().parent,
            checksum=checksum,
            cohort_table=cohort_table,
            cohort_id_column=cohort_id_column,
            site_column=site_column,
            subject_column=subject_column,
            timepoint_column=timepoint_column,
            jobs=jobs,
            on_progress=on_progress,
        )
    write_manifest(df, output)
    with_time = int(df["time"].notna().sum())
    with_mask = int((df["has_mask"] == True).sum())  # noqa: E712  (NaN on problem rows)
    typer.echo(
        f"wrote {output}: {len(df)} {df['format'].iloc[0]} case(s), "
        f"{with_mask} with a mask, {with_time} with survival data"
    )
    n_subjects = df["subject_id"].nunique()
    if n_subjects < len(df):
        typer.echo(f"subjects: {n_subjects} ({len(df)} scans)")
    if (df["site"] != "").any():
        counts = df["site"].value_counts()
        typer.echo("sites: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    bad = df[df["problem"] != ""]
    for case_id, problem in zip(bad["case_id"], bad["problem"], strict=True):
        typer.echo(f"problem: {case_id}: {problem}", err=True)
    if len(bad):
        raise typer.Exit(1)


@app.command("convert")
def convert(
    src: Path = typer.Argument(..., help="Kaggle pack, NIfTI dataset or manifest CSV."),
    dst: Path = typer.Argument(..., help="Output folder."),
    to: str = typer.Option(..., "--to", help="Output layout: nifti or kaggle."),
    fmt: str | None = typer.Option(None, "--format", help=_FORMAT_HELP),
    modality: list[str] | None = typer.Option(None, "--modality", help=_MODALITY_HELP),
    seg: str | None = typer.Option(None, "--seg", help=_SEG_HELP),
    label_convention: str | None = typer.Option(None, "--label-convention", help=_CONVENTION_HELP),
    cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Volume cache (Kaggle input)."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Per-case lines."),
) -> None:
    """Convert a dataset to BraTS 2020 NIfTI folders or to the Kaggle HDF5 slice layout."""
    from radsurv.data.convert import convert_dataset

    def show(result) -> None:
        if progress:
            state = "ok" if result.ok else f"FAILED: {result.error}"
            typer.echo(f"{result.case_id}: {state}")

    report = convert_dataset(
        src,
        dst,
        to,
        fmt=fmt,
        modality_patterns=_parse_modality_options(modality),
        seg_pattern=seg,
        label_convention=label_convention,
        cache_dir=cache_dir,
        on_case=show,
    )
    n_failed = len(report.failed)
    n_ok = len(report.results) - n_failed
    typer.echo(f"converted {n_ok} of {len(report.results)} case(s) to {to} under {dst}")
    if n_failed:
        for result in report.failed:
            typer.echo(f"failed: {result.case_id}: {result.error}", err=True)
        raise typer.Exit(1)


# --- check (validate a dataset; confirm the image channel order) ------------------------------


@app.command("check")
def check(
    data: Path = typer.Argument(..., help="Kaggle pack root or folder of volume_*_slice_*.h5."),
    json_out: Path | None = typer.Option(
        None,
        "--json",
        help='Write {"cases": [{"case_id", "ok", "problems"}]} to this file (with --channels '
        'also "channels": the channel-order verdict and its evidence).',
    ),
    channels: bool = typer.Option(
        False,
        "--channels",
        help="Also check --channel-order against MRI signatures (oedema on FLAIR/T2, CSF bright "
        "on T2 and dark on FLAIR, enhancement on T1Gd, T1 and T1Gd alike): consistent, wrong "
        "(with the order to use) or undetermined; with --json the verdict and evidence go under "
        '"channels".',
    ),
    channel_order: str = typer.Option(
        "flair,t1,t1gd,t2", "--channel-order", help="Modality of each image channel."
    ),
    channels_json: Path | None = typer.Option(
        None, "--channels-json", help="Write the channel report (with --channels) as JSON."
    ),
    fmt: str = typer.Option(
        "auto", "--format", help="Dataset layout: kaggle, nifti or manifest (auto: detected)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Progress bar."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help=_JOBS_HELP),
) -> None:
    """Validate every case of a dataset: a table of cases and problems; exit 1 if any is bad.

    With --channels, also exit 1 when the channel order is wrong (not when undetermined).
    """
    import json

    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table

    from radsurv.data.channel_order import ChannelStats
    from radsurv.data.check import check_dataset

    console = Console()
    stats = ChannelStats(channel_order) if channels else None
    with Progress(console=Console(stderr=True), transient=True, disable=not progress) as bar:
        task = bar.add_task("checking", total=None)

        def advance(result, done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=result.case_id)

        report = check_dataset(
            data,
            channel_order,
            fmt=fmt,
            on_case=stats.add if stats is not None else None,
            on_progress=advance,
            jobs=jobs,
        )
    table = Table(title=f"radsurv check {data}")
    for column in ("case", "status", "file", "problem"):
        table.add_column(column, overflow="fold")
    for case in report.cases:
        if case.ok:
            table.add_row(case.case_id, "[green]ok[/green]", "", "")
        for i, p in enumerate(case.problems):
            status = "[red]BAD[/red]" if i == 0 else ""
            table.add_row(case.case_id if i == 0 else "", status, Path(p.file).name, p.problem)
    console.print(table)
    console.print(report.summary())
    disagree = False
    channel_report = stats.report() if stats is not None else None
    if channel_report is not None:
        ctable = Table(
            title="image channels: median percentile within normal brain (0-1); the verdict's input"
        )
        for column in ("channel", "configured", "cases", "with ET", "ET", "NCR", "ED"):
            ctable.add_column(column, justify="right")
        for index, row in channel_report.table.iterrows():
            cells = [
                f"{row[f'{r}_rank']:.2f}" if row[f"{r}_rank"] == row[f"{r}_rank"] else "-"
                for r in ("ET", "NCR", "ED")
            ]
            counts = [str(row["cases"]), str(row["cases_with_ET"])]
            ctable.add_row(str(index), row["modality"], *counts, *cells)
        console.print(ctable)
        which = "implied" if channel_report.evidence.get("implied") else "configured"
        order = channel_report.implied if which == "implied" else channel_report.configured
        stable = Table(title=f"signatures of the {which} order {','.join(order or ())}")
        for column in ("signature", "channels", "modalities", "value", "threshold", "outcome"):
            stable.add_column(
                column, justify="right" if column in ("value", "threshold") else "left"
            )
        for sig in channel_report.evidence.get(which, []):
            value = f"{sig.value:+.3f}" if sig.value == sig.value else "-"
            stable.add_row(
                sig.name,
                f"{sig.channels[0]} vs {sig.channels[1]}",
                f"{sig.modalities[0]} vs {sig.modalities[1]}",
                value,
                f"{sig.threshold:g}",
                sig.outcome,
            )
        if channel_report.evidence.get(which):
            console.print(stable)
        colour = {True: "green", False: "red", None: "yellow"}[channel_report.agrees]
        console.print(f"[{colour}]{channel_report.verdict}[/{colour}]", highlight=False)
        for note in channel_report.notes:
            console.print(f"note: {note}", highlight=False)
        if channels_json is not None:
            channels_json.write_text(json.dumps(channel_report.to_dict(), indent=2) + "\n")
            console.print(f"wrote {channels_json}")
        disagree = channel_report.agrees is False
    if json_out is not None:
        document = report.to_dict()
        if channel_report is not None:
            document["channels"] = channel_report.to_dict()
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(document, indent=2) + "\n")
        console.print(f"wrote {json_out}")
    if not report.ok or disagree:
        raise typer.Exit(1)
