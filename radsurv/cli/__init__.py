"""The ``radsurv`` command line: thin commands that parse options and call the library.

Each command module registers its commands on :data:`radsurv.cli.app.app`; heavy imports
happen inside the commands so ``radsurv --help`` stays fast.
"""

from __future__ import annotations

from radsurv.cli import (  # noqa: F401  (imported for their command registrations)
    classify_cmd,
    data_cmds,
    delta_cmd,
    demo_cmd,
    features_cmd,
    robustness_cmd,
    segment_cmd,
    survival_cmd,
    synth_cmd,
)
from radsurv.cli.app import app


def main() -> None:
    """Entry point of the ``radsurv`` script (errors are handled by the app's group class)."""
    app()


__all__ = ["app", "main"]
