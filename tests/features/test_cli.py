"""`radsurv extract-features` on a manifest: outputs, --masks DIR, exit codes, kill -9 + resume."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from radsurv.cli import app
from radsurv.data.case import Case


def _args(manifest: Path, out: Path, params: Path, *extra: str) -> list[str]:
    return [
        "extract-features", "--manifest", str(manifest), "-o", str(out),
        "--params", str(params), "--jobs", "1", "--no-progress", *extra,
    ]  # fmt: skip


def test_cli_writes_table_status_and_provenance(
    tmp_path: Path, manifest: Path, fast_params: Path
) -> None:
    out = tmp_path / "features.csv"
    args = _args(manifest, out, fast_params, "--regions", "ET,WT", "--modalities", "flair,t1gd")
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    import pandas as pd

    table = pd.read_csv(out)
    assert table.columns[0] == "case_id" and len(table) == 6
    assert "t1gd_ET_original_firstorder_Mean" in table.columns
    assert not any(c.startswith("t2_") for c in table.columns)
    prov = json.loads((tmp_path / "features.provenance.json").read_text())
    assert prov["n_ok"] == 6 and prov["settings"]["regions"] == ["ET", "WT"]
    assert (tmp_path / "features.status.csv").is_file()


def test_cli_masks_dir_missing_mask_exit_1(
    tmp_path: Path, manifest: Path, fast_params: Path, phantoms: list[Case]
) -> None:
    import SimpleITK as sitk

    masks = tmp_path / "masks"
    masks.mkdir()
    for case in phantoms[:5]:
        sitk.WriteImage(case.to_sitk(case.labels), str(masks / f"{case.case_id}.nii.gz"))
    out = tmp_path / "f.csv"
    result = CliRunner().invoke(
        app, _args(manifest, out, fast_params, "--regions", "WT", "--masks", str(masks))
    )
    assert result.exit_code == 1
    import pandas as pd

    status = pd.read_csv(tmp_path / "f.status.csv").set_index("case_id")
    assert (status["status"] == "failed").sum() == 2  # cases 5 and 6 have no mask file
    assert status["error"].dropna().str.contains("not found").all()


def test_cli_bad_params_exit_2(tmp_path: Path, manifest: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("setting:\n  binWidth: wide\n")
    cmd = [sys.executable, "-c", "from radsurv.cli import main; main()"]
    proc = subprocess.run(
        cmd + _args(manifest, tmp_path / "f.csv", bad), capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "bad.yaml" in proc.stderr


@pytest.mark.slow
def test_kill_9_then_rerun_gives_the_uninterrupted_table(
    tmp_path: Path, manifest: Path, fast_params: Path
) -> None:
    from radsurv.features.runner import extract_features

    ref = tmp_path / "ref.csv"
    small = {"regions": ["ET", "WT"], "modalities": ["flair", "t1gd"]}
    extract_features(manifest, params=str(fast_params), jobs=1, output=ref, **small)
    out = tmp_path / "run.csv"
    args = _args(manifest, out, fast_params, "--regions", "ET,WT", "--modalities", "flair,t1gd")
    cmd = [sys.executable, "-c", "from radsurv.cli import main; main()", *args]
    # The first run kills itself with SIGKILL right after its 2nd case is saved: a deterministic
    # "kill -9 mid-run" (no race of the test against the subprocess, whatever the machine load).
    killer = (
        "import os, signal, sys\n"
        "from radsurv.features.store import PartStore\n"
        "save, saved = PartStore.save, []\n"
        "def save_then_die(self, record):\n"
        "    path = save(self, record)\n"
        "    saved.append(path)\n"
        "    if len(saved) == 2:\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "    return path\n"
        "PartStore.save = save_then_die\n"
        "sys.argv = ['radsurv', *sys.argv[1:]]\n"
        "from radsurv.cli import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", killer, *args], capture_output=True)
    parts = out.with_name(out.name + ".parts")
    done = sorted(parts.glob("*.json"))
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert len(done) == 2, "the run must be killed mid-way"
    assert not out.exists()
    for part in done:  # atomic writes: every part is whole
        json.loads(part.read_text())
    rerun = subprocess.run(cmd, capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert out.read_bytes() == ref.read_bytes()
    import pandas as pd

    status = pd.read_csv(tmp_path / "run.status.csv")
    assert status["resumed"].sum() == len(done)
    assert np.isfinite(pd.read_csv(out).filter(like="WT_").to_numpy()).all()
