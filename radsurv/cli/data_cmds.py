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


_FORMAT_HELP = "Input layout: kaggle or nifti (default: detected)."
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
    name_mapping: Path | None = typer.Option(None, "--name-mapping", help="name_mapping.csv"),
    labels: Path | None = typer.Option(
        None, "--labels", help="Endpoint labels, e.g. pseudoprogression.csv"
    ),
    fmt: str | None = typer.Option(None, "--format", help=_FORMAT_HELP),
    modality: list[str] | None = typer.Option(None, "--modality", help=_MODALITY_HELP),
    seg: str | None = typer.Option(None, "--seg", help=_SEG_HELP),
    label_convention: str | None = typer.Option(None, "--label-convention", help=_CONVENTION_HELP),
    checksum: bool = typer.Option(True, "--checksum/--no-checksum", help="Content checksums."),
) -> None:
    """Write the sample sheet (one row per case) that every later command takes."""
    from radsurv.data.manifest import build_manifest, write_manifest

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
    )
    write_manifest(df, output)
    with_time = int(df["time"].notna().sum())
    typer.echo(
        f"wrote {output}: {len(df)} {df['format'].iloc[0]} case(s), "
        f"{int(df['has_mask'].sum())} with a mask, {with_time} with survival data"
    )


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
