"""The `radsurv segment` commands on a tiny synthetic Kaggle-layout cohort, and the GPU bench."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from radsurv.cli import app
from radsurv.data.manifest import Manifest, build_manifest, write_manifest
from radsurv.data.synthetic import synthesize_cohort

from .conftest import TINY_SHAPE

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cohort")
    cohort = synthesize_cohort(tmp / "cohort", n_cases=3, seed=1, shape=TINY_SHAPE)
    path = tmp / "data_manifest.csv"
    write_manifest(build_manifest(cohort.root, relative_to=tmp, checksum=False), path)
    return path


@pytest.mark.slow
def test_cli_train_predict_evaluate(manifest, tmp_path):
    runner = CliRunner()
    model = tmp_path / "model.pt"
    res = runner.invoke(
        app,
        [
            "segment",
            "train",
            "--manifest",
            str(manifest),
            "--out",
            str(model),
            "--epochs",
            "1",
            "--steps-per-epoch",
            "2",
            "--batch-size",
            "2",
            "--modalities",
            "flair,t1gd",
            "--device",
            "cpu",
            "--no-progress",
            "--val-fraction",
            "0.4",
        ],
    )
    assert res.exit_code == 0, res.output
    assert model.is_file() and "1 validation case" in res.output

    masks = tmp_path / "masks"
    res = runner.invoke(
        app,
        [
            "segment",
            "predict",
            "--model",
            str(model),
            "--manifest",
            str(manifest),
            "--out",
            str(masks),
            "--device",
            "cpu",
        ],
    )
    assert res.exit_code == 0, res.output
    m = Manifest.read(manifest)
    for case_id in m.case_ids:
        img = sitk.ReadImage(str(masks / f"{case_id}.nii.gz"))
        case = m.load_case(case_id)
        assert sitk.GetArrayFromImage(img).shape == case.shape
        assert np.allclose(img.GetSpacing(), case.spacing)
        assert set(np.unique(sitk.GetArrayFromImage(img))) <= {0, 1, 2, 4}
    with open(masks / "segment_status.csv") as f:
        assert {r["status"] for r in csv.DictReader(f)} == {"ok"}

    # remove one mask: evaluate scores the rest, names the missing case and exits 1
    missing = m.case_ids[0]
    (masks / f"{missing}.nii.gz").unlink()
    out_json = tmp_path / "scores.json"
    res = runner.invoke(
        app,
        [
            "segment",
            "evaluate",
            "--pred",
            str(masks),
            "--manifest",
            str(manifest),
            "--json",
            str(out_json),
        ],
    )
    assert res.exit_code == 1
    assert missing in res.output
    doc = json.loads(out_json.read_text())
    assert set(doc["mean"]) == {"WT", "TC", "ET"}
    assert 0.0 <= doc["mean"]["WT"]["dice"] <= 1.0
    assert [c["status"] for c in doc["cases"]] == ["failed", "ok", "ok"]
    assert (masks / "segment_scores.csv").is_file()


@pytest.mark.slow
def test_cli_errors_are_one_line(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "from radsurv.cli import main; main()",
            "segment",
            "predict",
            "--model",
            str(tmp_path / "none.pt"),
            "--manifest",
            str(tmp_path / "m.csv"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "none.pt" in proc.stderr


@pytest.mark.slow
def test_gpu_bench_runs_quick_on_cpu(tmp_path):
    out = tmp_path / "figures.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu_segment.py"), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for text in ("s/case", "fp32/AMP", "host/fast", "TTA/fast", "slices/s", "57,195 slices"):
        assert text in proc.stdout, text
    (fig,) = json.loads(out.read_text())
    assert fig["seconds_per_case_amp"] > 0 and fig["dim"] == "2d"
    assert fig["tta_flips"] == 4 and fig["seconds_per_case_tta"] > 0
    assert fig["train_samples_per_second"] > 0 and fig["pack_epoch_seconds_extrapolated"] > 0
    assert set(fig["fast_stage_seconds"]) == {
        "upload_normalise",
        "network",
        "labels_to_host",
        "postprocess",
    }
    assert fig["fp32_amp_label_agreement"] == 1.0  # no autocast on the CPU: the same path
