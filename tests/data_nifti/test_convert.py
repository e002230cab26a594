"""radsurv convert: NIfTI <-> Kaggle layout round trips, batch failures, the CLI."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radsurv.cli.app import app
from radsurv.data.convert import assign_volumes, convert_dataset
from radsurv.data.hdf5 import read_volume, scan_pack, standardise_per_volume
from radsurv.data.nifti import read_nifti_case
from radsurv.data.synthetic import synthesize_cohort


def test_nifti_to_kaggle_to_nifti(tmp_path: Path, make_case_folder) -> None:
    src = tmp_path / "src"
    make_case_folder(src, "BraTS20_Training_007", seed=7)
    make_case_folder(src, "BraTS20_Training_008", modalities=("flair", "t1gd"), seed=8)
    report = convert_dataset(src, tmp_path / "k", "kaggle")
    assert report.ok and len(report.results) == 2
    assert (tmp_path / "k" / "data" / "volume_7_slice_5.h5").is_file()
    meta = pd.read_csv(tmp_path / "k" / "data" / "meta_data.csv")
    assert len(meta) == 2 * 6 and set(meta["volume"]) == {7, 8}
    assert meta["slice_path"].iloc[0].startswith("/content/data/volume_")
    back = convert_dataset(tmp_path / "k", tmp_path / "n", "nifti")
    assert back.ok
    for case_id in ("BraTS20_Training_007", "BraTS20_Training_008"):
        original = read_nifti_case(src / case_id)
        result = read_nifti_case(tmp_path / "n" / case_id)
        np.testing.assert_array_equal(result.labels, original.labels)  # labels exactly
        assert result.modalities == original.modalities  # absent channels stay absent
        for modality, array in original.images.items():
            np.testing.assert_allclose(
                result.images[modality], standardise_per_volume(array), atol=1e-5
            )
    names = sorted(p.name for p in (tmp_path / "n" / "BraTS20_Training_008").iterdir())
    assert names == [
        "BraTS20_Training_008_flair.nii.gz",
        "BraTS20_Training_008_seg.nii.gz",
        "BraTS20_Training_008_t1ce.nii.gz",
    ]


def test_kaggle_to_nifti_to_kaggle(tmp_path: Path) -> None:
    cohort = synthesize_cohort(tmp_path / "syn", n_cases=2, seed=3, shape=(6, 20, 20))
    assert convert_dataset(cohort.root, tmp_path / "n", "nifti").ok
    assert convert_dataset(tmp_path / "n", tmp_path / "k", "kaggle").ok
    before, after = scan_pack(cohort.data_dir), scan_pack(tmp_path / "k")
    assert list(before) == list(after)
    for case_id in before:
        a, b = read_volume(before[case_id]), read_volume(after[case_id])
        np.testing.assert_array_equal(b.labels, a.labels)
        for modality in a.images:
            np.testing.assert_allclose(b.images[modality], a.images[modality], atol=1e-5)


def test_failing_case_is_reported_and_the_rest_converted(tmp_path: Path, make_case_folder) -> None:
    src = tmp_path / "src"
    make_case_folder(src, "good", seed=1)
    bad = make_case_folder(src, "bad", seed=2)
    (bad / "bad_t2.nii.gz").write_bytes(b"\x1f\x8b truncated")
    report = convert_dataset(src, tmp_path / "out", "nifti")
    assert [r.case_id for r in report.failed] == ["bad"]
    assert "bad_t2.nii.gz" in report.failed[0].error
    assert (tmp_path / "out" / "good" / "good_flair.nii.gz").is_file()
    frame = report.to_frame()
    assert list(frame.columns) == ["case_id", "ok", "output", "error"]


def test_assign_volumes() -> None:
    numbers = assign_volumes(["BraTS20_Training_002", "p1", "BraTS20_Training_001", "p2"])
    assert numbers == {"BraTS20_Training_002": 2, "BraTS20_Training_001": 1, "p1": 3, "p2": 4}


def test_cli_manifest_and_convert(tmp_path: Path, make_case_folder) -> None:
    naming = {"flair": "Flair_x.nii.gz", "t1gd": "T1c_x.nii.gz", "seg": "OT.nii.gz"}
    for i in (1, 2):
        make_case_folder(tmp_path / "ds", f"pat{i}", naming, ("flair", "t1gd"), (1, 2, 3, 4), i)
    runner = CliRunner()
    out = tmp_path / "sheet" / "m.csv"
    args = ["manifest", str(tmp_path / "ds"), "-o", str(out), "--format", "nifti"]
    args += ["--modality", "flair=Flair_*.nii.gz", "--modality", "t1ce=T1c_*.nii.gz"]
    args += ["--seg", "OT.nii.gz", "--label-convention", "brats2015"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 nifti case(s), 2 with a mask" in result.output
    table = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(table["source"]) == ["../ds/pat1", "../ds/pat2"]
    assert set(table["modalities"]) == {"flair,t1gd"}
    result = runner.invoke(app, ["convert", str(out), str(tmp_path / "n"), "--to", "nifti"])
    assert result.exit_code == 0, result.output
    case = read_nifti_case(tmp_path / "n" / "pat1")
    assert set(np.unique(case.labels)) == {0, 1, 2, 4}  # 3 (NET) -> 1
    result = runner.invoke(app, ["manifest", str(tmp_path / "ds"), "--modality", "bogus"])
    assert result.exit_code == 2 and "NAME=PATTERN" in result.output
    result = runner.invoke(app, ["convert", str(out), str(tmp_path / "x"), "--to", "dicom"])
    assert result.exit_code == 2 and "unknown target layout" in result.output


def test_cli_convert_exit_1_when_a_case_fails(tmp_path: Path, make_case_folder) -> None:
    make_case_folder(tmp_path / "ds", "ok1")
    bad = make_case_folder(tmp_path / "ds", "bad1", labels=(1, 2, 3, 4))
    assert bad.is_dir()
    result = CliRunner().invoke(
        app,
        ["convert", str(tmp_path / "ds"), str(tmp_path / "o"), "--to", "nifti"]
        + ["--label-convention", "brats2020"],
    )
    assert result.exit_code == 1
    assert "converted 1 of 2" in result.output
    assert "bad1" in result.output and "--label-convention" in result.output


@pytest.mark.slow
def test_real_brats2015_cases(shared_data: Path, tmp_path: Path) -> None:
    """The 4 real DeepMedic/BraTS 2015 cases: manifest + load_case, 2 modalities, canonical."""
    root = shared_data / "brats2015_deepmedic"
    out = tmp_path / "m.csv"
    args = ["manifest", str(root), "--format", "nifti"]
    args += ["--modality", "flair=Flair_subtrMeanDivStd.nii.gz"]
    args += ["--modality", "t1gd=T1c_subtrMeanDivStd.nii.gz"]
    args += ["--seg", "OTMultiClass.nii.gz", "--label-convention", "brats2015", "-o", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    from radsurv.data.manifest import Manifest

    manifest = Manifest.read(out)
    expected = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert manifest.case_ids == expected and len(expected) == 4
    assert set(manifest.table["shape"]) == {"155x240x240"}
    for case_id in manifest.case_ids:
        case = manifest.load_case(case_id)
        case.validate()
        assert case.modalities == ["flair", "t1gd"]
        values = set(np.unique(case.labels).tolist())
        assert values <= {0, 1, 2, 4} and {2, 4} <= values
        assert case.provenance["label_convention"] == "brats2015"
