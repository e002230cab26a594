"""radsurv CLI commands: classify."""

from radsurv.cli.app import app  # noqa: F401
