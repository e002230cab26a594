"""Issue 12 items 2, 3, 5: subject/site-aware fold plans, per-site figures, in-fold ComBat,
checkable predictions."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from radsurv.errors import ConfigError
from radsurv.study import BinaryStudy, SurvivalStudy
from radsurv.study.folds import (
    check_no_subject_split,
    cohort_columns,
    parse_scheme,
    plan_folds,
)


def _structure(n_subjects: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = []
    sites = ["A", "B", "C", "D"]
    for s in range(n_subjects):
        site = "E" if s in (0, 9, 18) else sites[s % 4]  # E: a small site (< 10 rows)
        for t in range(int(rng.integers(1, 4))):
            rows.append({"case_id": f"c{s:03d}_{t}", "subject_id": f"s{s:03d}",
                         "timepoint": str(t), "site": site})  # fmt: skip
    return pd.DataFrame(rows).set_index("case_id")


def _sides(folds, subjects):
    subjects = np.asarray(subjects)
    return [(set(subjects[f.train]), set(subjects[f.test])) for f in folds]


@pytest.mark.parametrize("cv", ["5x3", "site", "site:3x3"])
def test_fold_plans_never_split_a_subject(cv):
    rng = np.random.default_rng(0)
    st = _structure(60, rng)
    strata = rng.integers(0, 2, len(st))
    plan = plan_folds(parse_scheme(cv, min_site_size=10), strata, st, seed=1)
    for train, test in _sides(plan.folds, st["subject_id"]):
        assert not train & test
    # every case is tested once per repeat (K-fold schemes) / once per held-out site
    tested = pd.Series(np.concatenate([f.test for f in plan.folds])).value_counts()
    assert tested.max() == plan.n_repeats
    if cv == "5x3":
        assert plan.grouped_by == "subject"
    if cv == "site":
        assert plan.test_sites == ["A", "B", "C", "D"]  # E (< 10 cases) trains only
        e = np.flatnonzero(st["site"].to_numpy() == "E")
        assert all(set(e) <= set(f.train) for f in plan.folds)
        assert [f.group for f in plan.folds] == ["A", "B", "C", "D"]
    if cv.startswith("site:"):
        sites = st["site"].to_numpy()
        for f in plan.folds:
            assert not set(sites[f.train]) & set(sites[f.test])
    if plan.n_repeats > 1:  # repeats are different partitions
        parts = [
            sorted(tuple(sorted(f.test)) for f in plan.folds if f.repeat == r)
            for r in range(plan.n_repeats)
        ]
        assert parts[0] != parts[1]


def test_external_split_and_errors():
    st = _structure(60, np.random.default_rng(0))
    strata = np.zeros(len(st))
    plan = plan_folds(parse_scheme(train_sites="A,B", test_sites="C"), strata, st)
    (fold,) = plan.folds
    sites = st["site"].to_numpy()
    assert set(sites[fold.train]) == {"A", "B"} and set(sites[fold.test]) == {"C"}
    assert plan.left_out == int(np.isin(sites, ["D", "E"]).sum())
    with pytest.raises(ConfigError, match="both"):
        parse_scheme(train_sites="A", test_sites="A")
    with pytest.raises(ConfigError, match="no cases"):
        plan_folds(parse_scheme(train_sites="A", test_sites="Z"), strata, st)
    with pytest.raises(ConfigError, match="no site"):
        plan_folds(parse_scheme("site"), strata, st.assign(site=pd.NA))


def test_check_no_subject_split_raises():
    from radsurv.errors import ModelError
    from radsurv.evaluation.cv import Fold

    fold = Fold(0, 0, np.array([0, 1]), np.array([2]))
    with pytest.raises(ModelError, match="s1"):
        check_no_subject_split([fold], ["s0", "s1", "s1"])


def test_cohort_columns_from_name_mapping_form():
    table = pd.DataFrame(
        {"BraTS_2019_subject_ID": ["BraTS19_CBICA_AAB_1", "BraTS19_TCIA08_167_1", None]},
        index=pd.Index(["a", "b", "c"], name="case_id"),
    )
    cols = cohort_columns(table)
    assert cols["site"].tolist()[:2] == ["CBICA", "TCIA08"] and pd.isna(cols["site"].iloc[2])
    assert cols["subject_id"].tolist() == ["a", "b", "c"]


# --------------------------------------------------------------------------- survival, sites


def _site_cohort(make_cohort, n=90, seed=0):
    feats, clinical, labels = make_cohort(n=n, p=6, seed=seed)
    rng = np.random.default_rng(seed + 5)
    clinical["site"] = rng.choice(["A", "B", "C", "D"], n, p=[0.4, 0.3, 0.22, 0.08])
    clinical["subject_id"] = clinical["case_id"]
    return feats, clinical, labels


@pytest.fixture(scope="module")
def loso_run(tmp_path_factory, cohort_factory):
    feats, clinical, _ = _site_cohort(cohort_factory)
    d = tmp_path_factory.mktemp("loso")
    clinical.to_csv(d / "clinical.csv", index=False)
    feats.to_csv(d / "features.csv")
    result = SurvivalStudy(
        d / "clinical.csv", d / "features.csv", covariates="age", cv="site", k=3
    ).run()
    result.save(d / "out")
    return result, d / "out", clinical


@pytest.mark.slow
def test_leave_site_out_figures_equal_a_hand_computation(loso_run):
    from lifelines.utils import concordance_index
    from sksurv.metrics import concordance_index_censored

    result, out, clinical = loso_run
    doc = json.loads((out / "metrics.json").read_text())
    preds = pd.read_csv(out / "predictions.csv")
    assert {"case_id", "subject_id", "site", "timepoint", "repeat", "fold"} <= set(preds.columns)
    sites = clinical.set_index("case_id")["site"]
    assert (preds["site"] == preds["case_id"].map(sites)).all()
    assert set(doc["groups"]) == {"A", "B", "C"}  # D has < 10 cases: training only
    assert "D" not in set(preds["site"])
    per_site = []
    for site in ("A", "B", "C"):
        for model in ("cox", "age", "age+resection"):
            p = preds[(preds.model == model) & (preds.site == site)]
            c = concordance_index_censored(p.event.astype(bool), p.time, p.risk)[0]
            c_lifelines = concordance_index(p.time, -p.risk, p.event)
            g = doc["groups"][site][model]
            assert g["harrell_c"]["mean"] == pytest.approx(c, abs=1e-9)
            assert g["harrell_c"]["mean"] == pytest.approx(c_lifelines, abs=1e-6)
            assert g["n"] == len(p) == int((sites == site).sum())
            assert g["events"] == int(p.event.sum())
            lo, hi = g["harrell_c"]["ci95"]
            assert lo <= c <= hi
            if model == "cox":
                per_site.append(c)
    # one test fold per site: the usual mean over folds is the mean of the per-site C
    assert doc["models"]["cox"]["harrell_c"]["mean"] == pytest.approx(np.mean(per_site))
    pooled = preds[preds.model == "cox"]
    c_all = concordance_index_censored(pooled.event.astype(bool), pooled.time, pooled.risk)[0]
    assert doc["pooled"]["cox"]["harrell_c"]["mean"] == pytest.approx(c_all)


@pytest.mark.slow
def test_metrics_json_groups_structure(loso_run):
    _, out, _ = loso_run
    doc = json.loads((out / "metrics.json").read_text())
    for block in doc["groups"].values():
        assert set(block) == {"cox", "age", "age+resection"}
        for entry in block.values():
            assert {"n", "events", "harrell_c", "uno_c"} <= set(entry)
            assert {"mean", "sd", "ci95"} <= set(entry["harrell_c"])
    assert doc["groups"]["A"]["cox"]["harrell_c"]["mean"] > 0
    assert doc["models"]["cox"]["harrell_c"]["mean"] > 0  # where it always was
    assert doc["cv"]["kind"] == "site" and doc["cv"]["training_only_sites"] == ["D"]
    assert {r["held_out"] for r in doc["per_fold"]} == {"A", "B", "C"}
    html = (out / "report.html").read_text()
    assert "By held-out site" in html and "pooled" in html


@pytest.mark.slow
def test_predictions_keep_subject_site_timepoint_for_both_endpoints(tmp_path, cohort_factory):
    feats, clinical, labels = _site_cohort(cohort_factory, n=72, seed=3)
    clinical["subject_id"] = [f"s{i // 2}" for i in range(len(clinical))]  # two scans each
    clinical["timepoint"] = [i % 2 for i in range(len(clinical))]
    clinical["site"] = [["A", "B", "C"][(i // 2) % 3] for i in range(len(clinical))]
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    labels.to_csv(tmp_path / "labels.csv", index=False)
    r = BinaryStudy(
        feats,
        tmp_path / "labels.csv",
        clinical=tmp_path / "clinical.csv",
        covariates="age",
        cv="3x2",
        permutations=0,
        n_boot=50,
        k=3,
    ).run()
    assert r.run.plan.grouped_by == "subject"
    r.save(tmp_path / "b")
    p = pd.read_csv(tmp_path / "b" / "predictions.csv")
    assert list(p.columns[:4]) == ["case_id", "subject_id", "site", "timepoint"]
    assert {"repeat", "fold"} <= set(p.columns)
    for _, grp in p.groupby(["role", "model", "repeat"]):
        folds_of = grp.groupby("subject_id")["fold"].nunique()
        assert (folds_of == 1).all()  # both scans of a subject in the same test fold
    doc = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert set(doc["groups"]) == {"A", "B", "C"}
    assert {"roc_auc", "pr_auc", "brier", "n", "events"} <= set(doc["groups"]["A"]["logreg"])


# --------------------------------------------------------------------------- harmonisation


def test_combat_is_fitted_on_training_rows_only(monkeypatch, cohort_factory):
    import combatlearn

    feats, clinical, _ = _site_cohort(cohort_factory, n=80, seed=1)
    shift = clinical["site"].map({"A": 0.0, "B": 3.0, "C": -2.0, "D": 1.0}).to_numpy()
    feats = feats + shift[:, None]
    fits: list[tuple[set[str], list[str]]] = []
    real_fit = combatlearn.ComBat.fit

    def spy(self, X, y=None):
        batch = self.batch.loc[X.index]
        fits.append((set(X.index), sorted(set(batch))))
        return real_fit(self, X, y)

    monkeypatch.setattr(combatlearn.ComBat, "fit", spy)
    r = SurvivalStudy(
        clinical.set_index("case_id"), feats, covariates="age", cv="site", k=3,
        harmonize="combat", harmonize_covariates="age",
    ).run()  # fmt: skip
    ids = feats.index.astype(str)
    folds = r.run.folds
    train_sets = [set(ids[f.train]) for f in folds]
    test_sets = [set(ids[f.test]) for f in folds]
    primary = [f for f in fits if "(training, harmonised)" not in f[1]]
    secondary = [f for f in fits if "(training, harmonised)" in f[1]]
    # every primary fit saw exactly one fold's training rows (or, for the final model, all)
    for rows, _ in primary:
        assert rows in train_sets or rows == set(ids)
    # the unseen site's own fit: training rows (as the reference batch) + that site's rows
    for rows, _batches in secondary:
        assert any(rows == tr | te for tr, te in zip(train_sets, test_sets, strict=True))
    assert secondary  # leave-site-out: the test site was never seen in training
    # recompute one fold by hand with combatlearn: training rows
    harm = r.run.harmonizer
    f = folds[0]
    X_h, _ = harm.apply(r.design.X, f)
    train = r.design.X.index[f.train]
    cols = harm.feature_columns
    batch = harm.sites
    cov = pd.DataFrame({"age": r.design.clinical["age"].astype(float)})
    ref = real_fit(
        combatlearn.ComBat(batch=batch, continuous_covariates=cov, method="fortin"),
        r.design.X.loc[train, cols],
    ).transform(r.design.X.loc[train, cols])
    np.testing.assert_allclose(X_h.loc[train, cols].to_numpy(), ref.to_numpy(), atol=1e-8)
    site_fx = r.metrics["harmonisation"]
    assert site_fx["before"]["fraction_p_lt_0.05"] == 1.0
    assert site_fx["after"]["fraction_p_lt_0.05"] < 0.5
    assert max(site_fx["after"]["fraction_p_lt_0.05_in_fold"]) < 0.5


def _noise_cohort(seed=0):
    """Four sites whose survival differs; features: noise + a strong site shift only."""
    rng = np.random.default_rng(seed)
    sites = np.repeat(["A", "B", "C", "D"], 40)
    n = len(sites)
    hazard = pd.Series({"A": 0.3, "B": 1.0, "C": 2.0, "D": 4.0})[sites].to_numpy()
    t_event = rng.exponential(400 / hazard)
    t_cens = rng.uniform(500, 2000, n)
    ids = [f"case_{i:03d}" for i in range(n)]
    clinical = pd.DataFrame(
        {"time": np.maximum(1, np.round(np.minimum(t_event, t_cens))),
         "event": t_event <= t_cens, "age": rng.normal(60, 8, n).round(1), "site": sites},
        index=pd.Index(ids, name="case_id"),
    )  # fmt: skip
    offset = pd.Series({"A": -3.0, "B": -1.0, "C": 1.0, "D": 3.0})[sites].to_numpy()
    feats = pd.DataFrame(
        rng.normal(size=(n, 8)) + offset[:, None] * rng.uniform(0.5, 1.5, 8),
        columns=[f"t1_WT_noise_{i}" for i in range(8)],
        index=pd.Index(ids, name="case_id"),
    )
    return clinical, feats


@pytest.mark.slow
def test_noise_features_with_site_effects_give_c_near_half_under_site_cv():
    clinical, feats = _noise_cohort()
    common = {"covariates": None, "k": 4, "seed": 0}
    # random K-fold lets the site effect leak: noise "predicts" survival
    leaky = SurvivalStudy(clinical, feats, cv="4x1", **common).run()
    assert leaky.metric("cox", "harrell_c")["mean"] > 0.62
    for harmonize in (None, "combat"):
        r = SurvivalStudy(clinical, feats, cv="site", harmonize=harmonize, **common).run()
        c = r.metric("cox", "harrell_c")["mean"]  # mean over held-out sites
        assert abs(c - 0.5) < 0.08, (harmonize, c)
        for site in "ABCD":
            g = r.metrics["groups"][site]["cox"]["harrell_c"]
            assert g["ci95"][0] < 0.5 < g["ci95"][1] or abs(g["mean"] - 0.5) < 0.15
    # harmonised, even the pooled out-of-fold risk no longer carries the site
    assert abs(r.metrics["pooled"]["cox"]["harrell_c"]["mean"] - 0.5) < 0.08
    assert r.metrics["harmonisation"]["after"]["fraction_p_lt_0.05"] < 0.3


def test_harmonize_needs_sites_and_features(cohort_factory):
    feats, clinical, _ = cohort_factory(n=40, p=4)
    with pytest.raises(ConfigError, match="site"):
        SurvivalStudy(clinical.set_index("case_id"), feats, cv="3x1", harmonize="combat").run()
    with pytest.raises(ConfigError, match="choose"):
        SurvivalStudy(
            clinical.assign(site="A").set_index("case_id"), feats, cv="3x1", harmonize="zz"
        ).run()


def test_locked_model_of_a_harmonised_study_is_refused(tmp_path, cohort_factory):
    feats, clinical, _ = _site_cohort(cohort_factory, n=60, seed=2)
    r = SurvivalStudy(clinical.set_index("case_id"), feats, cv="3x1", k=2, harmonize="combat").run()
    with pytest.raises(ConfigError, match="harmonis"):
        r.save_model(tmp_path / "m")


# --------------------------------------------------------------------------- real BraTS 2020


@pytest.mark.slow
def test_real_brats2020_leave_site_out_with_age(shared_data, tmp_path):
    """The real survival table, sites parsed here from name_mapping.csv (BraTS19_<SITE>_),
    through the CLI with --cv site --covariates age; per-site C checked with lifelines."""
    import re

    from lifelines.utils import concordance_index
    from typer.testing import CliRunner

    from radsurv.cli import app

    root = shared_data / "brats2020"
    nm = pd.read_csv(root / "name_mapping.csv", dtype=str)
    site = {
        row.BraTS_2020_subject_ID: m.group(1)
        for row in nm.itertuples()
        if (m := re.match(r"BraTS19_([A-Za-z0-9]+)_", str(row.BraTS_2019_subject_ID)))
    }
    surv = pd.read_csv(root / "survival_info.csv", dtype=str)
    surv["site"] = surv["Brats20ID"].map(site)
    assert surv["site"].value_counts().to_dict()["CBICA"] == 129
    surv.to_csv(tmp_path / "survival_sites.csv", index=False)
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        ["survival", "--clinical", str(tmp_path / "survival_sites.csv"), "--covariates", "age",
         "--cv", "site", "--out", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["cv"]["test_sites"] == ["CBICA", "TCIA01", "TCIA02", "TCIA03"]
    assert "TCIA08" in doc["cv"]["training_only_sites"]  # 9 cases < --min-site-size 10
    preds = pd.read_csv(out / "predictions.csv")
    for s, n in {"CBICA": 129, "TCIA01": 19, "TCIA02": 22, "TCIA03": 12}.items():
        for model in ("cox", "age"):
            p = preds[(preds.site == s) & (preds.model == model)]
            g = doc["groups"][s][model]
            assert g["n"] == n == len(p)
            c = concordance_index(p.time, -p.risk, p.event)
            assert g["harrell_c"]["mean"] == pytest.approx(c, abs=1e-6)
    assert 0.55 < doc["groups"]["CBICA"]["cox"]["harrell_c"]["mean"] < 0.75
    assert 0.55 < doc["pooled"]["cox"]["harrell_c"]["mean"] < 0.72
    # the same sites straight from name_mapping.csv (--cohort) give the same figures
    r = SurvivalStudy(
        root / "survival_info.csv", covariates="age", cv="site", cohort=root / "name_mapping.csv"
    ).run()
    for s in doc["groups"]:
        assert r.metrics["groups"][s]["cox"]["harrell_c"]["mean"] == pytest.approx(
            doc["groups"][s]["cox"]["harrell_c"]["mean"]
        )


@pytest.mark.slow
def test_external_validation_by_site_with_harmonisation(cohort_factory, tmp_path):
    feats, clinical, _ = _site_cohort(cohort_factory, n=80, seed=4)
    clinical.to_csv(tmp_path / "clinical.csv", index=False)
    feats.to_csv(tmp_path / "features.csv")
    from typer.testing import CliRunner

    from radsurv.cli import app

    res = CliRunner().invoke(
        app,
        ["survival", "--clinical", str(tmp_path / "clinical.csv"), "--features",
         str(tmp_path / "features.csv"), "--covariates", "age", "-k", "2",
         "--train-sites", "A,B", "--test-sites", "C", "--harmonize", "combat",
         "--harmonize-covariates", "age", "--out", str(tmp_path / "out")],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(doc["groups"]) == ["C"] and doc["cv"]["kind"] == "external"
    assert doc["harmonisation"]["unseen_sites"] == ["C"]
    preds = pd.read_csv(tmp_path / "out" / "predictions.csv")
    assert set(preds["site"]) == {"C"}
    assert doc["groups"]["C"]["cox"]["n"] == int((clinical["site"] == "C").sum())
    assert "Site effect before and after" in (tmp_path / "out" / "report.html").read_text()


def test_sites_and_subjects_from_a_manifest(tmp_path):
    """The manifest's site/subject_id columns (issue 12 item 1) drive the site-wise CV."""
    from pathlib import Path

    manifest = pd.read_csv(Path(__file__).resolve().parents[2] / "data_manifest.csv", dtype=str)
    manifest["site"] = [["X", "Y", "Z"][i % 3] for i in range(len(manifest))]
    manifest["subject_id"] = manifest["case_id"]
    path = tmp_path / "manifest.csv"
    manifest.to_csv(path, index=False)
    r = SurvivalStudy(manifest=path, covariates="age", cv="site", min_site_size=5).run()
    assert r.run.plan.test_sites == ["X", "Y", "Z"]
    assert set(r.metrics["groups"]) == {"X", "Y", "Z"}
    assert r.case_columns()["site"].tolist() == manifest["site"].tolist()
