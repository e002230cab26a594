"""`radsurv classify --robustness robustness.csv --min-icc X` keeps only robust features."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from radsurv.cli import app


def test_min_icc_drops_features_and_the_report_says_how_many(
    tmp_path: Path, cohort_files: dict[str, Path]
) -> None:
    columns = [c for c in pd.read_csv(cohort_files["features"]).columns if "_F" in c]
    assert len(columns) == 20
    # the 2 signal columns and 6 more are robust; 12 are not
    icc = [0.9] * 8 + [0.3] * 12
    pd.DataFrame({"feature": columns, "icc": icc}).to_csv(tmp_path / "rob.csv", index=False)
    out = tmp_path / "out"
    args = [
        "classify", "--features", str(cohort_files["features"]), "--labels",
        str(cohort_files["labels"]), "--model", "logreg", "--cv", "2x1", "--permutations", "0",
        "--robustness", str(tmp_path / "rob.csv"), "--min-icc", "0.9", "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "metrics.json").read_text())
    rob = doc["cohort"]["robustness"]
    assert (rob["n_features"], rob["n_kept"], rob["n_dropped"]) == (20, 8, 12)
    assert doc["features"] == 8  # the models saw the robust features only
    assert "kept 8 of 20 features, dropped 12" in (out / "report.html").read_text()
