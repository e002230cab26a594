"""radsurv CLI commands: demo."""

from radsurv.cli.app import app  # noqa: F401
