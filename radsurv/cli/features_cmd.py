"""radsurv CLI commands: features."""

from radsurv.cli.app import app  # noqa: F401
