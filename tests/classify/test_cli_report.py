"""radsurv classify end to end: outputs, report in a real headless browser, CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radsurv.cli.app import app
from radsurv.evaluation.browser import check_html_in_browser, find_chromium
from radsurv.models.classifiers import load_classifier


@pytest.fixture(scope="module")
def classify_run(tmp_path_factory, cohort_writer):
    """One CLI run shared by the output tests (the expensive part)."""
    from radsurv.cli import classify_cmd  # noqa: F401  (registers the command)

    base = tmp_path_factory.mktemp("classify")
    files = cohort_writer(base)
    out = base / "out"
    args = [
        "classify",
        "--features", str(files["features"]),
        "--labels", str(files["labels"]),
        "--covariates", "age,resection",
        "--clinical", str(files["clinical"]),
        "--model", "logreg",
        "--cv", "3x2",
        "--permutations", "2",
        "--seed", "3",
        "--out", str(out),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result, out, files


@pytest.mark.slow
def test_cli_writes_metrics_predictions_models(classify_run):
    result, out, files = classify_run
    assert "positive class: 'pseudoprogression' (label 1)" in result.output
    assert "logreg: ROC AUC" in result.output and "(baseline)" in result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {"logreg"}
    assert set(metrics["baselines"]) == {"clinical"}
    auc = metrics["models"]["logreg"]["roc_auc"]
    assert set(auc) >= {"mean", "sd", "ci95"} and len(auc["ci95"]) == 2
    assert auc["mean"] > 0.7  # the fixture's features carry signal
    assert metrics["n"] == 58 and metrics["positive_class"] == "pseudoprogression"
    assert metrics["positives"] == int(
        (pd.read_csv(files["labels"]).set_index("case_id")["label"] == "pseudoprogression")
        .reindex(pd.read_csv(files["features"])["case_id"])
        .sum()
    )
    # one encoder for every endpoint: STR is the reference level, unknown has an indicator
    assert metrics["covariates"] == ["age", "resection_GTR", "resection_missing"]
    assert "2 only in features.csv" in metrics["cohort"]["join features + labels"]
    assert metrics["models"]["logreg"]["permutation_test"]["n_permutations"] == 2
    preds = pd.read_csv(out / "predictions.csv")
    assert len(preds) == 58 * 2 * 2  # cases x repeats x (model + baseline)
    assert preds["probability"].between(0, 1).all()
    card = json.loads((out / "models" / "logreg.json").read_text())
    assert card["positive_class"] == "pseudoprogression" and 0 < card["threshold"] < 1
    model = load_classifier(out / "models" / "logreg.skops")
    feats = pd.read_csv(files["features"]).set_index("case_id")
    clinical = pd.read_csv(files["clinical"], keep_default_na=False).set_index("Brats20ID")
    X = feats[[c for c in card["input_columns"] if c in feats.columns]].assign(
        age=clinical["Age"].astype(float),
        resection_GTR=(clinical["Extent_of_Resection"] == "GTR").astype(float),
        resection_missing=(clinical["Extent_of_Resection"] == "NA").astype(float),
    )[card["input_columns"]]
    p = model.predict_proba(X)[:, 1]
    assert p.shape == (60,) and np.all((p > 0) & (p < 1))


@pytest.mark.slow
def test_report_opens_in_headless_chromium(classify_run, tmp_path):
    _, out, _ = classify_run
    html = (out / "report.html").read_text()
    assert "pseudoprogression" in html and "only in labels.csv" in html
    assert "http://" not in html and "https://" not in html  # self-contained
    if find_chromium() is None:
        pytest.skip("no chromium on PATH (install Debian's chromium to run this check)")
    check = check_html_in_browser(out / "report.html", tmp_path / "report.png")
    assert check.console_errors == []
    assert check.images >= 6 and check.images_loaded == check.images


def test_cli_bad_labels_exit_2_with_the_file_named(cohort_files):
    from radsurv.cli import classify_cmd  # noqa: F401

    bad = cohort_files["dir"] / "one_class.csv"
    pd.DataFrame(
        {"case_id": ["BraTS20_Training_001", "BraTS20_Training_002"], "label": [1, 1]}
    ).to_csv(bad, index=False)
    args = ["classify", "--features", str(cohort_files["features"]), "--labels", str(bad)]
    result = CliRunner().invoke(app, [*args, "--out", str(cohort_files["dir"] / "o")])
    assert result.exit_code == 2
    assert "error:" in result.output and "one_class.csv" in result.output
    assert "single class" in result.output


def test_cli_labels_and_covariates_from_a_manifest(cohort_files, tmp_path):
    from radsurv.cli import classify_cmd  # noqa: F401

    labels = pd.read_csv(cohort_files["labels"])
    manifest = labels.assign(format="kaggle", source="data", age=np.linspace(30, 80, len(labels)))
    manifest.to_csv(tmp_path / "data_manifest.csv", index=False)
    args = [
        "classify", "--features", str(cohort_files["features"]),
        "--manifest", str(tmp_path / "data_manifest.csv"), "--covariates", "age",
        "--cv", "3x1", "--permutations", "0", "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["covariates"] == ["age"] and metrics["labels"]["column"] == "label"
