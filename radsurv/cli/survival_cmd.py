"""radsurv CLI commands: survival."""

from radsurv.cli.app import app  # noqa: F401
