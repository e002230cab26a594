"""radsurv CLI commands: segment."""

from radsurv.cli.app import app  # noqa: F401
