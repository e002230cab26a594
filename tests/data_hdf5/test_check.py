"""check_dataset, check_channel_order and the `radsurv check` command."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from typer.testing import CliRunner

import radsurv.cli  # noqa: F401  (registers the commands)
from radsurv.cli.app import app
from radsurv.data.case import Case
from radsurv.data.channel_order import ChannelReport, check_channel_order
from radsurv.data.check import check_dataset
from radsurv.data.hdf5 import read_volume, scan_pack, slice_filename, write_kaggle_volume
from radsurv.data.synthetic import make_phantom_case

runner = CliRunner()


@pytest.fixture
def cohort(tmp_path: Path, phantom: Case, lgg_phantom: Case) -> Path:
    """Three cases in the default channel order; volume 2 is LGG (no ET)."""
    folder = tmp_path / "cohort"
    write_kaggle_volume(phantom, folder, 1)
    write_kaggle_volume(lgg_phantom, folder, 2)
    write_kaggle_volume(phantom, folder, 3)
    return folder


@pytest.fixture
def broken(cohort: Path) -> Path:
    """Volume 1 with three problems (zero-byte, NaN, missing slice); volumes 2 and 3 fine."""
    (cohort / slice_filename(1, 2)).write_bytes(b"")
    (cohort / slice_filename(1, 9)).unlink()
    with h5py.File(cohort / slice_filename(1, 11), "r+") as f:
        f["image"][3, 4, 1] = np.nan
    return cohort


def test_check_dataset_records_all_problems_per_case(broken: Path) -> None:
    seen: list[str] = []
    report = check_dataset(broken, on_case=lambda case: seen.append(case.case_id))
    assert not report.ok
    assert [c.case_id for c in report.bad_cases] == ["BraTS20_Training_001"]
    problems = report.cases[0].problems
    assert [Path(p.file).name for p in problems] == [
        "volume_1_slice_9.h5",
        "volume_1_slice_2.h5",
        "volume_1_slice_11.h5",
    ]
    assert "zero-byte" in problems[1].problem and "1 NaN" in problems[2].problem
    assert seen == ["BraTS20_Training_002", "BraTS20_Training_003"]
    frame = report.to_frame()
    assert len(frame) == 5 and frame["ok"].tolist() == [False] * 3 + [True] * 2
    assert "volume_1_slice_2.h5" in report._repr_html_()


def test_check_json_shape(broken: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = runner.invoke(app, ["check", str(broken), "--json", str(out), "--no-progress"])
    assert result.exit_code == 1, result.output
    data = json.loads(out.read_text())
    assert list(data) == ["cases"]
    assert [c["case_id"] for c in data["cases"]] == [f"BraTS20_Training_00{i}" for i in (1, 2, 3)]
    for case in data["cases"]:
        assert list(case) == ["case_id", "ok", "problems"]
        assert case["ok"] is (not case["problems"])
        for problem in case["problems"]:
            assert list(problem) == ["file", "problem"]
            assert Path(problem["file"]).parent == broken
    assert len(data["cases"][0]["problems"]) == 3
    assert "BAD" in result.output and "volume_1_slice_2.h5" in result.output


def test_check_cli_exit_0_on_a_clean_dataset(cohort: Path) -> None:
    result = runner.invoke(app, ["check", str(cohort.parent), "--no-progress"])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())  # rich wraps long temporary paths
    assert "3 case(s) checked" in text and "all fine" in text


def test_check_cli_not_a_dataset_is_a_clear_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["check", str(tmp_path / "nope"), "--no-progress"])
    assert result.exit_code == 2
    assert "error:" in result.output and "nope" in result.output
    assert "Traceback" not in result.output


def test_channels_agree_on_the_right_order(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "channels.json"
    args = ["check", str(cohort), "--channels", "--channels-json", str(out), "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "agree with the channel order flair,t1,t1gd,t2" in result.output
    data = json.loads(out.read_text())
    assert data["agrees"] is True and data["implied"] == ["flair", "t1", "t1gd", "t2"]
    channels = {c["modality"]: c for c in data["channels"]}
    assert channels["t1gd"]["ET_contrast"] > max(
        channels[m]["ET_contrast"] for m in ("flair", "t1", "t2")
    )
    assert channels["t1gd"]["cases_with_ET"] == 2  # the LGG case has no ET
    assert data["status"] == "consistent" and data["evidence"]["configured"]
    # --json carries the same channel report beside the cases
    both = tmp_path / "check.json"
    result = runner.invoke(app, [*args, "--json", str(both)])
    assert result.exit_code == 0, result.output
    document = json.loads(both.read_text())
    assert list(document) == ["cases", "channels"] and document["channels"] == data


@pytest.mark.parametrize("order", ["t1gd,t1,flair,t2", "flair,t1gd,t1,t2", "t1,flair,t1gd,t2"])
def test_channels_disagree_on_a_permuted_order(cohort: Path, order: str) -> None:
    args = ["check", str(cohort), "--channels", "--channel-order", order, "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert f"disagree with the channel order {order}" in result.output
    assert "--channel-order flair,t1,t1gd,t2" in " ".join(result.output.split())


def test_check_channel_order_from_a_notebook(cohort: Path, lgg_phantom: Case) -> None:
    volumes = scan_pack(cohort)
    report = check_channel_order(read_volume(pv) for pv in volumes.values())
    assert isinstance(report, ChannelReport) and report.agrees is True
    assert report.table.loc[2, "modality"] == "t1gd"
    assert report.per_case["case_id"].nunique() == 3
    assert np.isnan(report.per_case.query("case_id == 'BraTS20_Training_002'")["ET_contrast"]).all()
    html = report._repr_html_()
    assert "agree" in html and "<table" in html
    # only LGG cases: no ET anywhere, so no verdict rather than a wrong one
    lgg_only = check_channel_order([lgg_phantom])
    assert lgg_only.agrees is None and "T1Gd vs T1 inconclusive" in lgg_only.verdict
    assert any("no case has ET" in note for note in lgg_only.notes)
    permuted = Case(
        "p",
        {n: lgg_phantom.images[m] for n, m in zip(("t2", "t1"), ("flair", "t1"), strict=True)},
        lgg_phantom.labels,
    )
    assert check_channel_order([permuted]).agrees is None  # two channels cannot decide


def test_phantom_cohort_every_permutation_comes_back(phantom: Case, lgg_phantom: Case) -> None:
    """The synthetic phantoms follow MRI contrasts (CSF, grey/white matter, enhancement)."""
    import itertools

    from radsurv.data.labels import MODALITIES

    cohort = [phantom, lgg_phantom, make_phantom_case(3, shape=phantom.shape)]
    for truth in itertools.permutations(MODALITIES):
        cases = [
            Case(
                c.case_id,
                {n: c.images[t] for n, t in zip(MODALITIES, truth, strict=True)},
                c.labels,
            )
            for c in cohort
        ]
        report = check_channel_order(cases)
        assert report.implied == truth, (truth, report.verdict)
        assert report.status == ("consistent" if truth == MODALITIES else "wrong")
    evidence = report.to_dict()["evidence"]["implied"]
    assert {s["name"] for s in evidence if s["outcome"] == "supports"} >= {"oedema", "csf", "et"}


def test_unknown_format_is_refused(cohort: Path) -> None:
    from radsurv.errors import DataError

    with pytest.raises(DataError, match="unknown dataset format 'dicom'"):
        check_dataset(cohort, fmt="dicom")
