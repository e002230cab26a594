"""The ``radsurv`` command line: thin commands that parse options and call the library.

Each command module registers its commands on :data:`radsurv.cli.app.app`; heavy imports
happen inside the commands so ``radsurv --help`` stays fast.
"""

from __future__ import annotations

import sys

from radsurv.cli import (  # noqa: F401  (imported for their command registrations)
    classify_cmd,
    data_cmds,
    demo_cmd,
    features_cmd,
    segment_cmd,
    survival_cmd,
    synth_cmd,
)
from radsurv.cli.app import app
from radsurv.errors import RadsurvError


def main() -> None:
    """Entry point of the ``radsurv`` script: RadsurvError -> one clear line and exit code 2."""
    try:
        app(standalone_mode=False)
    except RadsurvError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except SystemExit:
        raise
    except Exception as exc:  # click's usage errors etc. are handled by typer itself
        import click

        if isinstance(exc, click.exceptions.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            print("aborted", file=sys.stderr)
            sys.exit(130)
        raise


__all__ = ["app", "main"]
