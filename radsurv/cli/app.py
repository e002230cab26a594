"""The typer application object and the options every command shares (-v/-q)."""

from __future__ import annotations

import logging

import typer
from typer.core import TyperGroup

from radsurv.errors import RadsurvError


class _RadsurvGroup(TyperGroup):
    """Turns a RadsurvError from any command into one clear line on stderr and exit code 2.

    An error with an ``exit_code`` attribute exits with it (an interrupted run: 3 or 130).
    """

    def invoke(self, ctx):  # noqa: ANN001, ANN201 (click's signature)
        try:
            return super().invoke(ctx)
        except RadsurvError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(getattr(exc, "exit_code", 2)) from exc


app = typer.Typer(
    cls=_RadsurvGroup,
    name="radsurv",
    help="Radiomics and survival prediction on multimodal brain-tumour MRI (BraTS).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _main(
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="More log output."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Only warnings and errors."),
) -> None:
    level = logging.WARNING if quiet else (logging.DEBUG if verbose > 1 else logging.INFO)
    # radsurv's own messages at the chosen level; other libraries only warn unless -vv
    logging.basicConfig(
        level=logging.DEBUG if verbose > 1 else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("radsurv").setLevel(level)
