"""radsurv CLI: `radsurv demo`, the whole pipeline on the embedded synthetic cohort."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from radsurv.cli.app import app


@app.command("demo")
def demo(
    out: Path = typer.Argument(Path("demo_out"), help="Output folder."),
    cases: int = typer.Option(48, "--cases", "-n", min=8, help="Synthetic cases."),
    seed: int = typer.Option(0, "--seed", help="Seed of the cohort, splits and models."),
    train_epochs: int = typer.Option(
        40, "--train-epochs", min=1, help="Epochs of the segmentation training (fixed budget)."
    ),
    train_minutes: float | None = typer.Option(
        None, "--train-minutes", help="Optional wall-clock cap of the segmentation training."
    ),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cuda or cpu."),
    cv: str = typer.Option("5x3", "--cv", help="FOLDSxREPEATS of the survival/classifier CV."),
    jobs: int = typer.Option(None, "--jobs", "-j", help="Feature-extraction processes."),
) -> None:
    """Synthesize a cohort, segment it, extract features, fit CV survival and classifier reports.

    Writes OUT/index.html linking every output with a one-screen summary.
    """
    from radsurv.demo import DemoSettings, run_demo

    settings = DemoSettings(
        out=out, cases=cases, seed=seed, train_epochs=train_epochs, train_minutes=train_minutes,
        device=device, cv=cv,
        jobs=jobs,
    )  # fmt: skip
    t0 = time.perf_counter()

    def show(i: int, n: int, message: str) -> None:
        typer.echo(f"[{i}/{n}] {message}", err=False)

    summary = run_demo(settings, on_stage=show)
    typer.echo(f"total {time.perf_counter() - t0:.0f} s; open {summary.index}")
    if not summary.ok:
        failed = [s.name for s in summary.stages if not s.ok]
        typer.echo(f"failed or skipped stages: {', '.join(failed)}", err=True)
        raise typer.Exit(1)
