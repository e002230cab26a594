"""radsurv CLI commands: ``radsurv segment train | predict | evaluate``.

torch and MONAI are imported inside the command bodies so ``radsurv --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path

import typer

from radsurv.cli.app import app

seg_app = typer.Typer(
    help="Tumour segmentation with MONAI: train a model, predict masks, score them.",
    no_args_is_help=True,
)
app.add_typer(seg_app, name="segment")

_DEVICE_HELP = "auto (CUDA when available), cuda or cpu."


@seg_app.command("train")
def train(
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest CSV (cases with masks)."),
    out: Path = typer.Option(..., "--out", "-o", help="Best checkpoint, e.g. model.pt."),
    dim: str | None = typer.Option(
        None, "--dim", help="2d (default; axial slices, UNet) or 3d (SegResNet patches)."
    ),
    epochs: int = typer.Option(
        100, "--epochs", help="Epochs (50 batches each on CPU, 100 on CUDA); see --time-limit."
    ),
    time_limit: float | None = typer.Option(
        None, "--time-limit", help="Stop cleanly after this many minutes, keeping the best model."
    ),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    val_fraction: float = typer.Option(
        0.2, "--val-fraction", help="Fraction of cases (rounded down) for validation Dice."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the split, weights and sampling."),
    modalities: str | None = typer.Option(
        None, "--modalities", help="Input channels in order, e.g. flair,t1gd (default: all)."
    ),
    batch_size: int | None = typer.Option(
        None, "--batch-size", help="Default 2d: 8 CPU, 32 CUDA; 3d: 1, 2."
    ),
    steps_per_epoch: int | None = typer.Option(None, "--steps-per-epoch", help="Batches/epoch."),
    lr: float = typer.Option(3e-3, "--lr", help="Initial learning rate (AdamW, poly decay)."),
    resume: bool = typer.Option(
        False, "--resume", help="Continue from OUT's .last checkpoint (with --folds: each fold's)."
    ),
    folds: int | None = typer.Option(
        None,
        "--folds",
        help="Train a K-fold ensemble (K >= 2): OUT's folder gets K models "
        "(model.fold1.pt ...) and OUT becomes their index; --time-limit is then the total.",
    ),
    modality_dropout: float | None = typer.Option(
        None,
        "--modality-dropout",
        help="Probability of zeroing each input channel of a training sample (never all), "
        "so the model tolerates missing modalities (default 0).",
    ),
    context_slices: int | None = typer.Option(
        None,
        "--context-slices",
        help="2d: neighbouring axial slices on each side fed with each slice (2.5D); "
        "default 0 (plain 2d); 3d models take 0 only.",
    ),
    ncr_intensity_aug: float | None = typer.Option(
        None,
        "--ncr-intensity-aug",
        help="Share of training samples whose necrotic core gets a random intensity and "
        "contrast on each modality (dark cavity to bright solid necrosis).",
    ),
    spatial_aug: float | None = typer.Option(
        None,
        "--spatial-aug",
        help="Share of training samples rotated in the axial plane (up to 30 degrees) and "
        "zoomed (x0.85-1.25) (default 0).",
    ),
    loader: str = typer.Option(
        "memory",
        "--loader",
        help="memory: hold every case in memory; stream: read Kaggle-pack slice files in "
        "DataLoader workers (2d); mmap: memory-map prepared copies in a temporary folder "
        "(~25 MB per case). stream and mmap suit packs too large for memory.",
    ),
    num_workers: int | None = typer.Option(
        None, "--num-workers", help="DataLoader workers (default: 0 on CPU, up to 8 on CUDA)."
    ),
    amp: bool = typer.Option(
        True,
        "--amp/--no-amp",
        help="Mixed precision: bf16/fp16 autocast on CUDA; on the CPU bf16 for --dim 3d where "
        "the CPU computes it natively (AMX, AVX-512 BF16). --no-amp trains in float32.",
    ),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar (default: on a terminal)."
    ),
) -> None:
    """Train a segmentation model on the manifest's labelled cases."""
    from radsurv.cli.progress import progress_display
    from radsurv.data.labels import parse_modalities
    from radsurv.segmentation import train_segmentation

    with progress_display("training", progress) as callback:
        result = train_segmentation(
            manifest,
            out,
            dim=dim,
            modalities=parse_modalities(modalities),
            epochs=epochs,
            time_limit=time_limit,
            device=device,
            val_fraction=val_fraction,
            seed=seed,
            resume=resume,
            batch_size=batch_size,
            steps_per_epoch=steps_per_epoch,
            lr=lr,
            progress=callback,
            folds=folds,
            modality_dropout=modality_dropout,
            context_slices=context_slices,
            ncr_intensity_aug=ncr_intensity_aug,
            spatial_aug=spatial_aug,
            loader=loader,
            num_workers=num_workers,
            amp=amp,
        )
    stop = " (time limit reached)" if result.stopped_by_time else ""
    if folds is not None:
        for k, member in enumerate(result.members, start=1):
            typer.echo(
                f"fold {k}: wrote {member.best_path} (epoch {member.best_epoch}, validation Dice "
                f"{member.best_metric:.3f} on {len(member.val_cases)} case(s))"
            )
        typer.echo(
            f"wrote the {folds}-fold ensemble index {result.index_path} (mean fold Dice "
            f"{result.best_metric:.3f}){stop}; {len(result.train_cases)} case(s)"
        )
    else:
        typer.echo(
            f"wrote {result.best_path} (epoch {result.best_epoch}, Dice "
            f"{result.best_metric:.3f}) and {result.last_path}{stop}; "
            f"{len(result.train_cases)} training, {len(result.val_cases)} validation case(s)"
        )
    for case_id, error in result.skipped.items():
        typer.echo(f"skipped {case_id}: {error}", err=True)


@seg_app.command("predict")
def predict(
    model: Path = typer.Option(
        ...,
        "--model",
        help="Checkpoint or ensemble index (--folds) from `radsurv segment train`.",
    ),
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest CSV of the cases."),
    out: Path = typer.Option(..., "--out", "-o", help="Masks folder: OUT/<case_id>.nii.gz."),
    device: str = typer.Option("auto", "--device", help=_DEVICE_HELP),
    postprocess: bool = typer.Option(
        True,
        "--postprocess/--no-postprocess",
        help="Small ET -> NCR, drop small islands, fill holes of TC and WT.",
    ),
    tta: bool = typer.Option(
        False,
        "--tta/--no-tta",
        help="Mirror test-time augmentation: average over flips (2D: 4 passes, 3D: 8).",
    ),
    allow_missing_modalities: bool = typer.Option(
        False,
        "--allow-missing-modalities",
        help="Segment cases lacking some of the model's modalities with the channels present "
        "(best with a model trained with --modality-dropout); recorded in the status file.",
    ),
    compile: bool = typer.Option(
        False, "--compile/--no-compile", help="torch.compile the network (GPU; falls back)."
    ),
    report: bool = typer.Option(
        True,
        "--report/--no-report",
        help="Without reference masks, write OUT/report.html: overlays of every prediction.",
    ),
) -> None:
    """Write one canonical label mask per case; failures go to OUT/segment_status.csv.

    When the cases have no reference masks, also writes a self-contained HTML page of the
    predictions to look at before trusting them (`segment evaluate` reports cases that have).
    """
    from radsurv.segmentation import predict_masks
    from radsurv.segmentation.predict import STATUS_FILE

    records = predict_masks(
        model,
        manifest,
        out,
        device=device,
        postprocess=postprocess,
        tta=tta,
        allow_missing_modalities=allow_missing_modalities,
        compile=compile,
        report=report,
    )
    failed = [r for r in records if r["status"] == "failed"]
    typer.echo(
        f"wrote {len(records) - len(failed)} mask(s) to {out}; status in {out / STATUS_FILE}"
    )
    if records.report is not None:
        typer.echo(f"report: {records.report}")
    partial = [r for r in records if r.get("missing_modalities") and r["status"] == "ok"]
    for r in partial:
        typer.echo(f"{r['case_id']}: segmented without {r['missing_modalities']}", err=True)
    notes = sorted({r["note"] for r in partial if r.get("note")})
    for note in notes:
        typer.echo(f"note: {note}", err=True)
    for r in failed:
        typer.echo(f"failed {r['case_id']}: {r['error']}", err=True)
    if failed:
        raise typer.Exit(1)


@seg_app.command("evaluate")
def evaluate(
    pred: Path = typer.Option(..., "--pred", help="Masks folder from `radsurv segment predict`."),
    manifest: Path = typer.Option(..., "--manifest", "-m", help="Manifest with reference masks."),
    json_path: Path | None = typer.Option(None, "--json", help="Write the JSON summary here."),
    csv_path: Path | None = typer.Option(
        None, "--csv", help="Per-case CSV (default: PRED/segment_scores.csv)."
    ),
    report: Path | None = typer.Option(
        None,
        "--report",
        help="HTML report: overlays, scores worst first, distributions "
        "(default: PRED/report.html).",
    ),
    no_report: bool = typer.Option(False, "--no-report", help="Write no HTML report."),
    progress: bool | None = typer.Option(
        None, "--progress/--no-progress", help="Progress bar (default: on a terminal)."
    ),
) -> None:
    """Dice and HD95 (mm) for WT, TC, ET per case and on average (BraTS empty-mask rules).

    Also writes a self-contained HTML report to look at the masks before trusting them.
    """
    from radsurv.cli.progress import progress_display
    from radsurv.segmentation import evaluate_masks

    if report is not None and no_report:
        raise typer.BadParameter("give either --report PATH or --no-report, not both")
    csv_path = csv_path or pred / "segment_scores.csv"
    with progress_display("segment evaluate", progress) as bar:
        result = evaluate_masks(
            pred,
            manifest,
            json_path=json_path,
            csv_path=csv_path,
            report=False if no_report else (report or True),
            progress=bar,
        )
    n_ok = len(result.cases) - len(result.failed)
    typer.echo(f"{n_ok} case(s) scored; per-case scores in {csv_path}")
    if result.report is not None:
        typer.echo(f"report: {result.report}")
    for region, scores in result.mean.items():
        typer.echo(f"{region}: Dice {scores['dice']:.4f}  HD95 {scores['hd95']:.2f} mm")
    for c in result.cases:
        if c["status"] != "ok":
            typer.echo(f"failed {c['case_id']}: {c['error']}", err=True)
    if result.failed:
        raise typer.Exit(1)
