"""The study engine on both endpoints: API, summary, shared metrics.json keys, comparisons."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radsurv.study import BinaryStudy, SurvivalStudy
from radsurv.study.design import (
    CovariateEncoder,
    CovariateSpec,
    infer_kind,
    parse_covariates,
    read_clinical,
)
from radsurv.study.engine import corrected_paired_t

SHARED = ("endpoint", "cohort", "cv", "models", "baselines", "per_fold", "settings", "versions")


def test_survival_study_api_summary_and_shared_keys(cohort_files, tmp_path):
    result = SurvivalStudy(
        cohort_files["train_generic"],
        cohort_files["train_parquet"],  # Parquet features
        covariates="age",
        models=["cox"],
        cv="3x1",
        k=4,
    ).run()
    summary = result.summary
    assert list(summary.index) == ["cox", "age", "age+resection"]
    assert summary.loc["cox", "harrell_c"] > summary.loc["age", "harrell_c"]
    comp = result.run.comparisons["cox"]
    assert comp["reference"] == "age" and comp["n_folds"] == 3
    assert comp["ci95"][0] < comp["difference"] < comp["ci95"][1] and 0 <= comp["p_value"] <= 1
    assert "<table" in result._repr_html_()
    paths = result.save(tmp_path / "out")
    doc = json.loads(paths["metrics"].read_text())
    assert set(SHARED) <= set(doc)
    assert doc["endpoint"] == "survival" and doc["cv"]["n_splits"] == 3
    assert math.isfinite(doc["models"]["cox"]["harrell_c"]["mean"])
    assert math.isfinite(doc["baselines"]["age"]["harrell_c"]["mean"])
    assert doc["models"]["cox"]["vs_baseline"]["reference"] == "age"
    assert {r["model"] for r in doc["per_fold"]} == {"cox", "age", "age+resection"}
    report = paths["report"].read_text()
    assert "Difference to the age baseline" in report
    # the report names its inputs and how the baselines are specified
    assert str(Path(cohort_files["train_generic"]).resolve()) in report
    assert "ridge penalizer 0.01" in report


def test_binary_study_api_same_engine(cohort_files, tmp_path):
    result = BinaryStudy(
        cohort_files["all_features"],
        cohort_files["labels"],
        covariates="age,idh",
        clinical=cohort_files["all_generic"],
        models="logreg",
        cv="3x1",
        permutations=2,
        n_boot=50,
    ).run()
    assert list(result.summary.index) == ["logreg", "clinical"]
    assert result.design.covariate_columns == ["age", "idh_wildtype"]
    assert result.summary.loc["logreg", "roc_auc"] > 0.7
    assert result.run.comparisons["logreg"]["reference"] == "clinical"
    paths = result.save(tmp_path / "out")
    doc = json.loads(paths["metrics"].read_text())
    assert set(SHARED) <= set(doc) and doc["endpoint"] == "binary"
    assert math.isfinite(doc["models"]["logreg"]["roc_auc"]["mean"])
    assert math.isfinite(doc["baselines"]["clinical"]["roc_auc"]["mean"])
    assert doc["models"]["logreg"]["permutation_test"]["n_permutations"] == 2
    assert "vs_baseline" in doc["models"]["logreg"]


def test_survival_permutation_test_runs(cohort):
    feats, clinical, _ = cohort
    table = read_clinical_frame(clinical)
    result = SurvivalStudy(
        table, feats, covariates="age", models=["cox"], cv="3x1", k=3, permutations=2
    ).run()
    perm = result.report.cv.summaries["cox"]["permutation_test"]
    assert perm["n_permutations"] == 2 and len(perm["permuted"]) == 2


def read_clinical_frame(clinical: pd.DataFrame) -> pd.DataFrame:
    t = clinical.set_index("case_id").copy()
    t["event"] = t["event"].astype(bool)
    return t


def test_nadeau_bengio_is_wider_than_the_naive_t():
    from scipy import stats

    d = np.array([0.05, 0.02, 0.08, 0.01, 0.04, 0.06, 0.03, 0.05, 0.02, 0.07])
    res = corrected_paired_t(d, n_train=80, n_test=20)
    naive = stats.ttest_1samp(d, 0.0).pvalue
    assert res["p_value"] > naive
    assert res["ci95"][0] < d.mean() < res["ci95"][1]
    # hand computation: var = (1/J + n_test/n_train) s^2
    var = (1 / 10 + 20 / 80) * d.var(ddof=1)
    t = d.mean() / np.sqrt(var)
    assert res["p_value"] == pytest.approx(2 * stats.t.sf(t, 9))


def test_one_encoder_types_levels_reference_missing():
    table = pd.DataFrame(
        {
            "age": [50, 60, np.nan, 70],
            "idh": ["mutant", "wildtype", "wildtype", None],
            "kps": [70, 80, 90, 100],
            "grade": ["1", "2", "2", "1"],
            "resection": ["GTR", "STR", None, "GTR"],
        },
        index=["a", "b", "c", "d"],
    )
    assert infer_kind(table["kps"]) == "numeric" and infer_kind(table["idh"]) == "categorical"
    assert infer_kind(table["grade"]) == "categorical"  # two values, not 0/1
    specs = parse_covariates("age,idh,kps:categorical,resection")
    enc = CovariateEncoder(specs).fit(table)
    assert enc.columns == [
        "age",
        "age_missing",
        "idh_wildtype",
        "idh_missing",
        "kps_80",
        "kps_90",
        "kps_100",
        "resection_GTR",
        "resection_missing",
    ]
    X = enc.transform(table)
    assert np.isnan(X.loc["c", "age"]) and X.loc["c", "age_missing"] == 1
    assert X.loc["d", ["idh_wildtype", "idh_missing"]].tolist() == [0.0, 1.0]
    new = pd.DataFrame({"age": [1], "idh": ["codel"], "kps": [50], "resection": ["GTR"]})
    assert enc.unseen_levels(new) == {"idh": ["codel"], "kps": ["50"]}
    again = CovariateEncoder.from_list(enc.to_list())
    pd.testing.assert_frame_equal(again.transform(table), X)
    with pytest.raises(Exception, match="numeric or categorical"):
        parse_covariates("age:integer")
    assert CovariateSpec("x", "categorical", "b").text() == "x:categorical:b"


def test_generic_table_without_resection(tmp_path, cohort):
    _, clinical, _ = cohort
    path = tmp_path / "tcga.csv"
    clinical[["case_id", "age", "time", "event"]].to_csv(path, index=False)
    table = read_clinical(path)
    assert list(table.columns) == ["time", "event", "age"]
    assert not table.attrs["brats_form"]
    result = SurvivalStudy(path, covariates="age", models=["cox"], cv="3x1").run()
    assert result.baselines == ["age"]
    assert any("no resection" in n for n in result.design.notes)


def test_feature_filter_runs_once_before_the_design(cohort):
    """The hook for e.g. a robustness filter: applied to the feature table before any fold."""
    feats, clinical, _ = cohort
    seen = []

    def keep_first_three(table: pd.DataFrame) -> pd.DataFrame:
        seen.append(table.shape)
        return table.iloc[:, :3]

    study = SurvivalStudy(
        read_clinical_frame(clinical), feats, covariates="age", feature_filter=keep_first_three
    )
    design = study.build_design()
    assert seen == [feats.shape]
    assert design.feature_columns == list(feats.columns[:3])
    assert any("feature filter kept 3 of 12" in n for n in design.notes)


def test_generic_table_names_and_codes(tmp_path, cohort):
    """TCGA-like spellings: os_days, vital_status Dead/Alive, resection codes beyond GTR/STR."""
    _, clinical, _ = cohort
    rng = np.random.default_rng(3)
    table = pd.DataFrame(
        {
            "submitter_id": clinical.case_id,
            "Age": clinical.age,
            "os_days": clinical.time.astype(int),
            "vital_status": np.where(clinical.event == 1, "Dead", "Alive"),
            "resection": rng.choice(["GTR", "STR", "biopsy", "NA"], len(clinical)),
        }
    )
    path = tmp_path / "tcga.csv"
    table.to_csv(path, index=False)
    read = read_clinical(path, id_column="submitter_id")
    assert read["event"].sum() == clinical.event.sum() and read["time"].iloc[0] > 0
    result = SurvivalStudy(
        path, covariates="age,resection", id_column="submitter_id", cv="3x1"
    ).run()
    enc = {c.name: c for c in result.design.encoder.covariates}
    assert enc["resection"].levels == ["GTR", "STR", "biopsy"]
    assert enc["resection"].reference == "STR"
    assert result.design.covariate_columns == [
        "age",
        "resection_GTR",
        "resection_biopsy",
        "resection_missing",
    ]
    assert result.cohort_info["n"] == len(clinical) and math.isfinite(
        result.cohort_info["age_mean"]
    )


def test_rerun_into_the_same_folder_leaves_no_stale_file(tmp_path) -> None:
    from radsurv.study.study import OUTPUTS_RECORD, clear_previous_outputs, record_outputs

    out = tmp_path / "run"
    (out / "models").mkdir(parents=True)
    for name in ("report.html", "metrics.json", "models/xgb-cox.skops", "models/cox.skops"):
        (out / name).write_text("old")
    (out / "my_notes.txt").write_text("mine")
    # an older run without a record: its known outputs go, the user's file stays
    clear_previous_outputs(out)
    assert sorted(p.name for p in out.iterdir()) == ["my_notes.txt"]
    # a run with a record: exactly what it wrote is removed next time
    (out / "models").mkdir()
    (out / "models" / "cox.skops").write_text("new")
    (out / "metrics.json").write_text("{}")
    record_outputs(out, [out / "models", out / "metrics.json"])
    assert (out / OUTPUTS_RECORD).is_file()
    removed = clear_previous_outputs(out)
    assert sorted(p.name for p in removed) == ["cox.skops", "metrics.json"]
    assert sorted(p.name for p in out.iterdir()) == ["my_notes.txt"]


def test_cox_on_the_baseline_covariates_alone_equals_that_baseline(cohort_files):
    # the same specification gives the same number (issue: 0.625 vs 0.630 unexplained)
    result = SurvivalStudy(
        cohort_files["train_generic"], covariates="age,resection", models=["cox"], cv="3x2"
    ).run()
    s = result.summary
    assert s.loc["cox", "harrell_c"] == s.loc["age+resection", "harrell_c"]
    assert any("equals the baseline with the same covariates" in n for n in result.design.notes)


def test_progress_is_reported_through_a_callback_and_logged_without_a_terminal(
    cohort_files, caplog
):
    import logging

    from radsurv.cli.progress import progress_display

    calls = []
    SurvivalStudy(cohort_files["train_generic"], covariates="age", cv="3x1").run(
        progress=lambda done, total, what: calls.append((done, total, what))
    )
    # 3 folds x (cox + 2 baselines), each reported once, in order
    assert calls == [(i, 9, "cross-validation") for i in range(1, 10)]
    with (
        caplog.at_level(logging.INFO, logger="radsurv.cli"),
        progress_display("survival", enabled=False) as progress,
    ):
        for done, total, what in calls:
            progress(done, total, what)
    lines = [r.getMessage() for r in caplog.records if r.name == "radsurv.cli"]
    assert lines[-1] == "survival: cross-validation 9/9" and len(lines) == 9
