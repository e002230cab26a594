"""radsurv CLI commands: data."""

from radsurv.cli.app import app  # noqa: F401
