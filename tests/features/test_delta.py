"""Delta-radiomics: follow-up minus baseline per subject (library and `radsurv delta`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radsurv.cli.app import app
from radsurv.features.delta import DeltaError, delta_features, parse_baseline


def _tables() -> tuple[pd.DataFrame, pd.DataFrame]:
    features = pd.DataFrame(
        {
            "case_id": ["a0", "a1", "a2", "b0", "b1", "c0"],
            "WT_volume": [100.0, 150.0, 50.0, 0.0, 10.0, 7.0],
            "t1gd_ET_mean": [2.0, 1.0, np.nan, -4.0, -2.0, 1.0],
            "note": ["x"] * 6,  # text: left out
        }
    )
    cohort = pd.DataFrame(
        {
            "subject_id": ["A", "A", "A", "B", "B", "C"],
            "timepoint": [0.0, 90.0, 30.0, 10.0, 70.0, np.nan],
            "site": ["s"] * 6,
        },
        index=pd.Index(["a0", "a1", "a2", "b0", "b1", "c0"], name="case_id"),
    )
    return features, cohort


def test_difference_and_relative_change() -> None:
    features, cohort = _tables()
    out = delta_features(features, cohort, kind="both")
    assert list(out.columns) == [
        "case_id",
        "subject_id",
        "timepoint",
        "baseline_case_id",
        "baseline_timepoint",
        "delta_WT_volume",
        "delta_t1gd_ET_mean",
        "reldelta_WT_volume",
        "reldelta_t1gd_ET_mean",
    ]
    # one row per follow-up scan, in time order per subject; C (single scan) gives none
    assert list(out["case_id"]) == ["a2", "a1", "b1"]
    assert list(out["baseline_case_id"]) == ["a0", "a0", "b0"]
    assert list(out["timepoint"]) == [30.0, 90.0, 70.0]
    assert list(out["baseline_timepoint"]) == [0.0, 0.0, 10.0]
    np.testing.assert_array_equal(out["delta_WT_volume"], [-50.0, 50.0, 10.0])
    np.testing.assert_array_equal(out["delta_t1gd_ET_mean"], [np.nan, -1.0, 2.0])
    # (f - b) / |b|; NaN where b == 0 (b1: baseline volume 0) or a value is missing
    np.testing.assert_array_equal(out["reldelta_WT_volume"], [-0.5, 0.5, np.nan])
    np.testing.assert_array_equal(out["reldelta_t1gd_ET_mean"], [np.nan, -0.5, 0.5])
    assert list(delta_features(features, cohort).columns)[5:] == [
        "delta_WT_volume",
        "delta_t1gd_ET_mean",
    ]
    rel = delta_features(features.set_index("case_id"), cohort.reset_index(), kind="relative")
    assert [c for c in rel.columns if "delta" in c] == [
        "reldelta_WT_volume",
        "reldelta_t1gd_ET_mean",
    ]


def test_baseline_at_a_timepoint() -> None:
    features, cohort = _tables()
    cohort.loc["b0", "timepoint"] = 0.0
    assert parse_baseline("timepoint=30") == 30.0 and parse_baseline("first") is None
    with pytest.raises(DeltaError, match=r"subject 'B' .*no baseline scan at time point 30 "):
        delta_features(features, cohort, baseline="timepoint=30")
    out = delta_features(features[features.case_id.str[0] == "a"], cohort.iloc[:3], "timepoint=30")
    # the scan before the baseline is left out; a1 - a2
    assert list(out["case_id"]) == ["a1"] and out["delta_WT_volume"].tolist() == [100.0]


def test_errors_name_the_subject() -> None:
    features, cohort = _tables()
    dup = cohort.copy()
    dup.loc["a2", "timepoint"] = 90.0
    with pytest.raises(DeltaError, match=r"subject 'A' \(scans a0, a1, a2\).*time point 90"):
        delta_features(features, dup)
    missing = cohort.copy()
    missing.loc["b1", "timepoint"] = np.nan
    with pytest.raises(DeltaError, match=r"subject 'B'.*no time point for b1"):
        delta_features(features, missing)
    with pytest.raises(DeltaError, match=r"subject 'A'.*baseline scan a0 has no features"):
        delta_features(features.iloc[1:], cohort)
    with pytest.raises(DeltaError, match="kind 'ratio'"):
        delta_features(features, cohort, kind="ratio")
    with pytest.raises(DeltaError, match="baseline 'last'"):
        delta_features(features, cohort, baseline="last")
    with pytest.raises(DeltaError, match="lacks"):
        delta_features(features, cohort.drop(columns="timepoint"))


def _manifest(tmp_path: Path, cohort: pd.DataFrame) -> Path:
    """A minimal manifest (the delta command reads only its cohort columns)."""
    table = cohort.reset_index().assign(format="nifti", source=".")
    path = tmp_path / "m.csv"
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_delta_command(tmp_path: Path, suffix: str) -> None:
    features, cohort = _tables()
    feats = tmp_path / f"features{suffix}"
    if suffix == ".csv":
        features.to_csv(feats, index=False)
    else:
        features.to_parquet(feats, index=False)
    out = tmp_path / f"delta{suffix}"
    args = ["delta", "--features", str(feats), "--manifest", str(_manifest(tmp_path, cohort))]
    result = CliRunner().invoke(app, [*args, "-o", str(out), "--kind", "both"])
    assert result.exit_code == 0, result.output
    assert "3 follow-up scan(s) of 2 subject(s), 4 delta column(s)" in result.output
    got = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    expected = delta_features(features, cohort, kind="both")
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    if suffix == ".csv":  # classify reads only the delta columns as features
        from radsurv.evaluation.classify import read_feature_table

        assert list(read_feature_table(out).columns) == list(expected.columns[5:])
    cohort.loc["a2", "timepoint"] = 0.0
    result = CliRunner().invoke(
        app, [*args[:3], "--manifest", str(_manifest(tmp_path, cohort)), "-o", str(out)]
    )
    assert result.exit_code == 2
    assert "error: subject 'A'" in result.output and "time point 0" in result.output


def test_delta_command_with_a_cohort_table(tmp_path: Path) -> None:
    features, cohort = _tables()
    features.to_csv(tmp_path / "f.csv", index=False)
    table = cohort.reset_index().rename(columns={"subject_id": "patient", "timepoint": "day"})
    table.to_csv(tmp_path / "clinical.csv", index=False)
    out = tmp_path / "d.csv"
    args = ["delta", "--features", str(tmp_path / "f.csv"), "-o", str(out)]
    table_args = ["--cohort-table", str(tmp_path / "clinical.csv")]
    table_args += ["--subject-column", "patient", "--timepoint-column", "day"]
    result = CliRunner().invoke(app, [*args, *table_args])
    assert result.exit_code == 0, result.output
    pd.testing.assert_frame_equal(pd.read_csv(out), delta_features(features, cohort))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "exactly one of --manifest and --cohort-table" in result.output
