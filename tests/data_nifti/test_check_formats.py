"""`radsurv check` on BraTS NIfTI folders and on manifests (any naming, any convention)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radsurv.cli.app import app
from radsurv.data.check import check_dataset
from radsurv.data.convert import convert_dataset
from radsurv.data.manifest import build_manifest, write_manifest
from radsurv.data.synthetic import synthesize_cohort

SHAPE = (12, 40, 40)


@pytest.fixture()
def nifti_dataset(tmp_path: Path) -> Path:
    cohort = synthesize_cohort(tmp_path / "synth", n_cases=3, seed=2, shape=SHAPE)
    report = convert_dataset(cohort.data_dir, tmp_path / "nifti", "nifti")
    assert not report.failed
    return tmp_path / "nifti"


def test_check_nifti_folders_finds_a_broken_file(nifti_dataset: Path, tmp_path: Path) -> None:
    report = check_dataset(nifti_dataset)
    assert report.format == "nifti" and report.ok and len(report.cases) == 3
    broken = nifti_dataset / "BraTS20_Training_002" / "BraTS20_Training_002_t2.nii.gz"
    broken.write_bytes(broken.read_bytes()[:200])  # truncated
    report = check_dataset(nifti_dataset)
    assert [c.case_id for c in report.bad_cases] == ["BraTS20_Training_002"]
    (problem,) = report.bad_cases[0].problems
    assert "BraTS20_Training_002" in problem.file

    out = tmp_path / "check.json"
    result = CliRunner().invoke(app, ["check", str(nifti_dataset), "--json", str(out)])
    assert result.exit_code == 1, result.output
    doc = json.loads(out.read_text())
    assert [c["ok"] for c in doc["cases"]] == [True, False, True]


def test_check_a_manifest_with_channel_order_check(tmp_path: Path) -> None:
    cohort = synthesize_cohort(tmp_path / "synth", n_cases=3, seed=2, shape=SHAPE)
    manifest = write_manifest(
        build_manifest(cohort.data_dir, relative_to=tmp_path), tmp_path / "m.csv"
    )
    result = CliRunner().invoke(app, ["check", str(manifest), "--channels"])
    assert result.exit_code == 0, result.output
    assert "BraTS20_Training_003" in result.output


@pytest.mark.slow
def test_check_the_real_two_modality_cases_through_their_manifest(
    shared_data: Path, tmp_path: Path
) -> None:
    manifest = write_manifest(
        build_manifest(
            shared_data / "brats2015_deepmedic",
            fmt="nifti",
            modality_patterns={
                "flair": "Flair_subtrMeanDivStd.nii.gz",
                "t1gd": "T1c_subtrMeanDivStd.nii.gz",
            },
            seg_pattern="OTMultiClass.nii.gz",
            label_convention="brats2015",
            relative_to=tmp_path,
            checksum=False,
        ),
        tmp_path / "m.csv",
    )
    report = check_dataset(manifest)
    assert report.format == "manifest" and report.ok and len(report.cases) == 4
