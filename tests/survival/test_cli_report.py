"""radsurv survival end to end: outputs, metrics.json schema, the report in a real browser."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radsurv.cli import app
from radsurv.evaluation.browser import check_html_in_browser, find_chromium

from .conftest import simulate


def _write_inputs(tmp_path: Path, n: int = 90) -> tuple[Path, Path]:
    X, y = simulate(n=n, p=25, seed=11)
    rng = np.random.default_rng(0)
    days = [
        str(int(t)) if e else f"ALIVE ({int(t)} days later)"
        for e, t in zip(y["event"], y["time"], strict=True)
    ]
    res = rng.choice(["GTR", "STR", "NA"], size=n, p=[0.5, 0.2, 0.3])
    clinical = pd.DataFrame(
        {
            "Brats20ID": X.index,
            "Age": X["age"].round(3),
            "Survival_days": days,
            "Extent_of_Resection": res,
        }
    )
    cpath = tmp_path / "survival_info.csv"
    clinical.to_csv(cpath, index=False, lineterminator="\r\n")
    feats = X.drop(columns=["age"]).iloc[3:]  # 3 clinical cases without features
    feats.index.name = "case_id"
    fpath = tmp_path / "features.csv"
    feats.to_csv(fpath)
    return cpath, fpath


@pytest.mark.slow
def test_survival_command_writes_all_outputs(tmp_path: Path) -> None:
    cpath, fpath = _write_inputs(tmp_path)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "survival",
            "--clinical",
            str(cpath),
            "--features",
            str(fpath),
            "--covariates",
            "age,resection",
            "--model",
            "cox",
            "--model",
            "xgb-aft",
            "--cv",
            "3x1",
            "--seed",
            "1",
            "-k",
            "5",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "metrics.json").read_text())
    assert set(doc["models"]) == {"cox", "xgb-aft"}
    assert set(doc["baselines"]) == {"age", "age+resection"}
    assert doc["n"] == 87 and doc["cohort"]["only_clinical"] == 3
    for key in ("harrell_c", "uno_c", "td_auc", "ibs", "brats_accuracy", "mse", "spearman_r"):
        entry = doc["models"]["cox"][key]
        assert set(entry) >= {"mean", "sd", "ci95"} and len(entry["ci95"]) == 2
    # the radiomics model sees the signal (f0, f1) that the age baselines cannot
    assert doc["models"]["cox"]["harrell_c"]["mean"] > doc["baselines"]["age"]["harrell_c"]["mean"]
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 87 * 1 * 4  # cases x repeats x (2 models + 2 baselines)
    assert (out / "models" / "cox.skops").is_file()
    assert any("only in clinical" in n for n in doc["notes"])
    html = out / "report.html"
    assert 'src="http' not in html.read_text()  # self-contained
    if find_chromium() is None:
        pytest.skip("no chromium on PATH: the browser check of the report is not run")
    check = check_html_in_browser(html, tmp_path / "report.png")
    assert check.console_errors == []
    assert check.images >= 5 and check.images_loaded == check.images
    assert (tmp_path / "report.png").stat().st_size > 10_000


def test_bad_inputs_give_clear_errors(tmp_path: Path) -> None:
    from radsurv.cli import main

    cpath, _ = _write_inputs(tmp_path, n=30)
    other = pd.DataFrame({"case_id": ["X1", "X2"], "f": [1.0, 2.0]})
    other.to_csv(tmp_path / "f.csv", index=False)
    runner = CliRunner()
    cases = [
        (["--features", str(tmp_path / "f.csv")], "no case id in common"),
        (["--cv", "40x1"], "too few"),
        (["--model", "svm"], "choose from"),
        (["--covariates", "grade"], "choose from"),
    ]
    for extra, message in cases:
        args = ["survival", "--clinical", str(cpath), "--out", str(tmp_path / "o"), *extra]
        result = runner.invoke(app, args)
        assert result.exit_code != 0
        assert message in str(result.exception) or message in result.output, (extra, result)
    assert callable(main)


def test_real_table_age_only(shared_data: Path, tmp_path: Path) -> None:
    """The real BraTS 2020 table with --covariates age (reference: C 0.624 +- 0.038, 5x5)."""
    result = CliRunner().invoke(
        app,
        [
            "survival",
            "--clinical",
            str(shared_data / "brats2020" / "survival_info.csv"),
            "--covariates",
            "age",
            "--cv",
            "5x1",
            "--out",
            str(tmp_path / "real"),
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "real" / "metrics.json").read_text())
    assert doc["n"] == 236 and doc["events"] == 235
    c = doc["baselines"]["age"]["harrell_c"]["mean"]
    assert 0.58 < c < 0.67
