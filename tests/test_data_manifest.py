"""The committed data_manifest.csv is what `radsurv synth` + `radsurv manifest` produce."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_committed_manifest_matches_a_fresh_demo_cohort(tmp_path: Path) -> None:
    radsurv = [sys.executable, "-m", "radsurv.cli"]
    subprocess.run([*radsurv, "-q", "synth", "demo_out/cohort"], cwd=tmp_path, check=True)
    subprocess.run(
        [*radsurv, "-q", "manifest", "demo_out/cohort", "-o", "data_manifest.csv"],
        cwd=tmp_path,
        check=True,
    )
    fresh = pd.read_csv(tmp_path / "data_manifest.csv", keep_default_na=False)
    committed = pd.read_csv(ROOT / "data_manifest.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(fresh, committed)
