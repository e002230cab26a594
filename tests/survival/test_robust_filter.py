"""`radsurv survival --robustness robustness.csv --min-icc X` keeps only robust features."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from radsurv.cli import app

from .conftest import simulate


def test_min_icc_drops_features_and_the_report_says_how_many(tmp_path: Path) -> None:
    X, y = simulate(n=60, p=10, seed=3)
    clinical = pd.DataFrame(
        {"Brats20ID": X.index, "Age": X["age"].round(2),
         "Survival_days": [int(t) if e else f"ALIVE ({int(t)} days later)"
                           for e, t in zip(y["event"], y["time"], strict=True)],
         "Extent_of_Resection": "GTR"}
    )  # fmt: skip
    clinical.to_csv(tmp_path / "survival_info.csv", index=False)
    feats = X.drop(columns=["age"])
    feats.index.name = "case_id"
    feats.to_csv(tmp_path / "features.csv")
    # f0..f5 robust (f5 exactly at the threshold), f6, f7 not, f8 undefined, f9 not assessed
    icc = [0.95, 0.9, 0.8, 0.99, 0.76, 0.75, 0.5, 0.1, float("nan")]
    pd.DataFrame({"feature": [f"f{i}" for i in range(9)], "icc": icc}).to_csv(
        tmp_path / "robustness.csv", index=False
    )
    out = tmp_path / "out"
    args = [
        "survival", "--clinical", str(tmp_path / "survival_info.csv"), "--features",
        str(tmp_path / "features.csv"), "--covariates", "age", "--model", "cox", "--cv", "2x1",
        "-k", "0", "--robustness", str(tmp_path / "robustness.csv"), "--min-icc", "0.75",
        "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "metrics.json").read_text())
    rob = doc["cohort"]["robustness"]
    assert (rob["n_features"], rob["n_kept"], rob["n_dropped"]) == (10, 6, 4)
    assert (rob["n_dropped_low_icc"], rob["n_dropped_undefined_icc"]) == (2, 1)
    assert rob["n_not_assessed"] == 1 and rob["min_icc"] == 0.75
    assert any("dropped 4" in note for note in doc["notes"])
    assert "kept 6 of 10 features, dropped 4" in (out / "report.html").read_text()
