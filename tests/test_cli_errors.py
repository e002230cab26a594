"""A RadsurvError from any command becomes one clear line and exit code 2, not a traceback."""

from __future__ import annotations

import subprocess
import sys

import typer
from typer.testing import CliRunner

from radsurv.cli.app import app
from radsurv.errors import DataError


def test_radsurv_error_becomes_exit_code_2() -> None:
    probe = typer.Typer()

    @probe.command("fail")
    def fail() -> None:
        raise DataError("case BraTS20_Training_001: volume_1_slice_3.h5 is truncated")

    @probe.command("other")
    def other() -> None:
        """A second command so typer keeps the sub-app a group."""

    app.add_typer(probe, name="probe-errors")
    result = CliRunner().invoke(app, ["probe-errors", "fail"])
    assert result.exit_code == 2
    assert "error: case BraTS20_Training_001: volume_1_slice_3.h5 is truncated" in result.output
    assert "Traceback" not in result.output


def test_import_radsurv_stays_light() -> None:
    code = (
        "import sys, radsurv, radsurv.cli; "
        "heavy = [m for m in ('torch', 'monai', 'radiomics', 'SimpleITK', 'lifelines', "
        "'xgboost', 'sksurv', 'pandas') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
