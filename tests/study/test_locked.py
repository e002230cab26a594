"""Locked models through the CLI: fit -> predict -> evaluate, the BraTS submission, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radsurv.cli import app


def _invoke(args: list[str]):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


@pytest.fixture(scope="module")
def survival_fit(cohort_files) -> Path:
    """`radsurv survival fit` on the 60 training cases (Parquet features, BraTS form)."""
    out = cohort_files["dir"] / "fit"
    result = _invoke(
        ["survival", "fit", "--clinical", cohort_files["train_brats"],
         "--features", cohort_files["train_parquet"], "--covariates", "age,resection",
         "--model", "cox", "--cv", "3x1", "-k", "4", "--out", out]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "covariate resection: categorical" in result.output
    return out


def test_fit_writes_report_and_locked_model(survival_fit):
    assert (survival_fit / "report.html").is_file() and (survival_fit / "metrics.json").is_file()
    doc = json.loads((survival_fit / "model" / "model.json").read_text())
    assert doc["endpoint"] == "survival" and doc["primary"] == "cox"
    assert len(doc["features"]) == 12
    res = next(c for c in doc["covariates"] if c["name"] == "resection")
    assert res["type"] == "categorical" and res["levels"] == ["GTR", "STR"]
    assert res["reference"] == "STR" and res["missing_indicator"]
    assert doc["training_cohort"]["n"] == 60
    assert set(doc["models"]) >= {"cox", "age"}
    assert (survival_fit / "model" / doc["models"]["cox"]["file"]).is_file()
    assert "harrell_c" in doc["models"]["cox"]["cv_metrics"]
    assert doc["versions"]["scikit-survival"]


def test_held_out_cases_keep_their_signal(survival_fit, cohort_files, tmp_path):
    """Predict and evaluate the 30 held-out cases with the locked model."""
    pred = tmp_path / "pred"
    result = _invoke(
        ["survival", "predict", "--model", survival_fit / "model",
         "--features", cohort_files["held_features"], "--clinical", cohort_files["held_brats"],
         "--out", pred]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    p = pd.read_csv(pred / "predictions.csv")
    assert list(p.columns[:5]) == ["case_id", "risk", "S_180d", "S_365d", "S_730d"]
    assert {"predicted_days", "brats_class"} <= set(p.columns) and len(p) == 30
    assert set(p.brats_class) <= {"short", "mid", "long"}
    assert (p.S_180d >= p.S_730d).all()
    held = pd.read_csv(cohort_files["held_generic"])
    from sksurv.metrics import concordance_index_censored

    c = concordance_index_censored(held.event.astype(bool), held.time, p.risk)[0]
    assert c > 0.65, c
    ev = tmp_path / "eval"
    result = _invoke(
        ["survival", "evaluate", "--model", survival_fit / "model",
         "--features", cohort_files["held_features"], "--clinical", cohort_files["held_generic"],
         "--bootstrap", "30", "--out", ev]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads((ev / "metrics.json").read_text())
    cox = doc["models"]["cox"]["harrell_c"]
    assert cox["value"] == pytest.approx(c)
    assert cox["ci95"][0] < cox["value"] < cox["ci95"][1]
    assert (
        doc["models"]["cox"]["harrell_c"]["value"] > doc["baselines"]["age"]["harrell_c"]["value"]
    )
    assert set(doc["km"]["cox"]["groups"]) == {"low", "high"}
    assert len(doc["calibration"]["cox"]) >= 2
    assert (ev / "report.html").is_file()


def test_prediction_from_a_brats_validation_form(survival_fit, cohort_files, tmp_path):
    """BraTS20ID,Age,ResectionStatus (no survival) -> submission.csv in the table's order."""
    held = pd.read_csv(cohort_files["held_generic"]).iloc[::-1]  # order differs from features
    val = pd.DataFrame(
        {"BraTS20ID": held.case_id, "Age": held.age, "ResectionStatus": held.resection}
    )
    vpath = tmp_path / "survival_evaluation.csv"
    val.to_csv(vpath, index=False)
    result = _invoke(
        ["survival", "predict", "--model", survival_fit / "model",
         "--features", cohort_files["held_features"], "--clinical", vpath, "--out", tmp_path / "p"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    sub = pd.read_csv(tmp_path / "p" / "submission.csv")
    assert list(sub.columns) == ["BraTS20ID", "Survival_days"]
    assert sub.BraTS20ID.tolist() == held.case_id.tolist()
    assert sub.Survival_days.dtype.kind == "i" and (sub.Survival_days > 0).all()
    doc = json.loads((survival_fit / "model" / "model.json").read_text())
    lo, hi = doc["training_cohort"]["follow_up_days"]
    assert sub.Survival_days.between(np.floor(lo), np.ceil(hi)).all()


def test_refusals_name_each_problem(cohort, tmp_path):
    """Missing features, another settings hash and unseen covariate levels: one clear error."""
    feats, clinical, _ = cohort
    train, held = clinical.iloc[:60], clinical.iloc[60:].copy()
    feats.loc[train.case_id].to_csv(tmp_path / "train.csv")
    (tmp_path / "train.provenance.json").write_text(json.dumps({"settings_hash": "aaaa1111"}))
    train.to_csv(tmp_path / "train_clin.csv", index=False)
    out = tmp_path / "fit"
    result = _invoke(
        ["survival", "fit", "--clinical", tmp_path / "train_clin.csv",
         "--features", tmp_path / "train.csv", "--covariates", "age,idh", "--cv", "3x1",
         "-k", "3", "--out", out]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads((out / "model" / "model.json").read_text())["features_settings_hash"] == (
        "aaaa1111"
    )
    bad = feats.loc[held.case_id].drop(columns=["t1gd_ET_original_firstorder_F3"])
    bad.to_csv(tmp_path / "new.csv")
    (tmp_path / "new.provenance.json").write_text(json.dumps({"settings_hash": "bbbb2222"}))
    held.loc[held.index[:2], "idh"] = "codeleted"
    held.to_csv(tmp_path / "new_clin.csv", index=False)
    result = _invoke(
        ["survival", "predict", "--model", out / "model", "--features", tmp_path / "new.csv",
         "--clinical", tmp_path / "new_clin.csv", "--out", tmp_path / "p"]
    )  # fmt: skip
    assert result.exit_code == 2
    text = result.output
    assert "t1gd_ET_original_firstorder_F3" in text
    assert "bbbb2222" in text and "aaaa1111" in text
    assert "'idh'" in text and "codeleted" in text  # all three named at once
    # with the right features, the unseen level alone still refuses
    feats.loc[held.case_id].to_csv(tmp_path / "ok.csv")
    (tmp_path / "ok.provenance.json").write_text(json.dumps({"settings_hash": "aaaa1111"}))
    result = _invoke(
        ["survival", "predict", "--model", out / "model", "--features", tmp_path / "ok.csv",
         "--clinical", tmp_path / "new_clin.csv", "--out", tmp_path / "p"]
    )  # fmt: skip
    assert result.exit_code == 2
    assert "'idh'" in result.output and "codeleted" in result.output
    assert "never seen in training" in result.output
    assert not (tmp_path / "p" / "predictions.csv").exists()


def test_generic_table_with_idh_mgmt_kps(cohort_files, tmp_path):
    """Any clinical CSV: types inferred and printed, a forced type, all forced into the model."""
    out = tmp_path / "out"
    result = _invoke(
        ["survival", "--clinical", cohort_files["all_generic"],
         "--covariates", "age,idh,mgmt,kps:categorical", "--cv", "3x1", "--out", out]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "covariate idh: categorical (inferred)" in result.output
    assert "covariate kps: categorical (forced)" in result.output
    assert "mgmt_missing" in result.output
    doc = json.loads((out / "metrics.json").read_text())
    enc = {c["name"]: c for c in doc["covariate_encoding"]}
    assert enc["age"]["type"] == "numeric" and enc["kps"]["levels"] == [
        "60",
        "70",
        "80",
        "90",
        "100",
    ]
    assert set(doc["baselines"]) == {"age", "age+resection", "clinical"}
    forced = doc["settings"]["covariates (forced in)"]
    for col in ("age", "idh_wildtype", "mgmt_unmethylated", "mgmt_missing", "kps_100"):
        assert col in forced


def test_classify_fit_predict_evaluate(cohort_files, tmp_path):
    out = tmp_path / "fit"
    result = _invoke(
        ["classify", "fit", "--features", cohort_files["train_parquet"],
         "--labels", cohort_files["train_labels"], "--covariates", "age,idh",
         "--clinical", cohort_files["all_generic"], "--cv", "3x1", "--permutations", "0",
         "--out", out]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads((out / "model" / "model.json").read_text())
    assert doc["endpoint"] == "binary" and doc["positive_class"] == "pseudoprogression"
    thr = doc["models"]["logreg"]["threshold"]
    assert 0 < thr < 1
    result = _invoke(
        ["classify", "predict", "--model", out / "model", "--features",
         cohort_files["held_features"], "--clinical", cohort_files["held_generic"],
         "--out", tmp_path / "p"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    p = pd.read_csv(tmp_path / "p" / "predictions.csv")
    assert len(p) == 30 and p.probability.between(0, 1).all()
    assert (
        p.predicted_class == np.where(p.probability >= thr, "pseudoprogression", "progression")
    ).all()
    result = _invoke(
        ["classify", "evaluate", "--model", out / "model", "--features",
         cohort_files["held_features"], "--clinical", cohort_files["held_generic"],
         "--labels", cohort_files["held_labels"], "--bootstrap", "30", "--out", tmp_path / "e"]
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    ev = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert ev["models"]["logreg"]["roc_auc"]["value"] > 0.7
    assert "clinical" in ev["baselines"]
