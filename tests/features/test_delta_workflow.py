"""The delta workflow end to end on a synthetic longitudinal cohort with real PyRadiomics:
`synth --timepoints 2` -> `manifest` -> `extract-features` -> `delta`, then a subject-grouped
cross-validated classifier recovers pseudoprogression from delta features, not (as well) from
the follow-up scan alone, and not at all from shuffled labels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radsurv.cli.app import app

SUBJECTS = 40
SHAPE = (24, 48, 48)
PARAMS = """\
imageType:
  Original: {}
featureClass:
  shape:
  firstorder: [Mean, Median, Energy, Maximum, Minimum]
setting:
  binWidth: 0.5
  minimumROIDimensions: 2
  minimumROISize: 10
"""


@dataclass(frozen=True)
class Longitudinal:
    root: Path
    features: pd.DataFrame  # one row per scan
    delta: pd.DataFrame  # one row per follow-up scan
    labels: pd.DataFrame  # case_id (follow-up), subject_id, label


def _run(*args: str) -> None:
    result = CliRunner().invoke(app, ["-q", *args])
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def longitudinal(tmp_path_factory: pytest.TempPathFactory) -> Longitudinal:
    root = tmp_path_factory.mktemp("longitudinal")
    (root / "fast.yaml").write_text(PARAMS)
    cohort = root / "cohort"
    shape = [str(s) for s in SHAPE]
    _run("synth", str(cohort), "--cases", str(SUBJECTS), "--timepoints", "2", "--shape", *shape)
    manifest = root / "m.csv"
    _run("manifest", str(cohort), "-o", str(manifest), "--no-checksum")
    features = root / "features.csv"
    _run(
        "extract-features",
        "--manifest",
        str(manifest),
        "-o",
        str(features),
        "--params",
        str(root / "fast.yaml"),
        "--regions",
        "ED,TC,WT",
        "--modalities",
        "t1gd",
        "--jobs",
        "2",
        "--no-progress",
    )
    delta = root / "delta.csv"
    _run("delta", "--features", str(features), "--manifest", str(manifest), "-o", str(delta))
    return Longitudinal(
        root,
        pd.read_csv(features),
        pd.read_csv(delta),
        pd.read_csv(cohort / "pseudoprogression.csv"),
    )


def _cv_auc(X: pd.DataFrame, y: np.ndarray, groups: np.ndarray) -> float:
    """Out-of-fold ROC AUC of a logistic regression, folds grouped by subject."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(
        SimpleImputer(strategy="median"),
        StandardScaler(),
        LogisticRegression(C=0.5, max_iter=5000),
    )
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=0)
    proba = cross_val_predict(
        model, X.to_numpy(), y, groups=groups, cv=folds, method="predict_proba"
    )[:, 1]
    return float(roc_auc_score(y, proba))


@pytest.mark.slow
def test_delta_features_recover_pseudoprogression(longitudinal: Longitudinal) -> None:
    labels = longitudinal.labels.set_index("case_id")
    delta = longitudinal.delta.set_index("case_id").loc[labels.index]
    # one delta row per subject, for the follow-up scan that is judged
    assert len(delta) == SUBJECTS and (delta["subject_id"] == labels["subject_id"]).all()
    assert (delta["timepoint"] >= 60).all() and (delta["baseline_timepoint"] == 0).all()
    y = (labels["label"] == "pseudoprogression").to_numpy().astype(int)
    assert 10 <= y.sum() <= SUBJECTS - 10
    groups = labels["subject_id"].to_numpy()
    delta_X = delta[[c for c in delta.columns if c.startswith("delta_")]]
    follow_X = longitudinal.features.set_index("case_id").loc[labels.index]
    follow_X = follow_X[[c[len("delta_") :] for c in delta_X.columns]]
    assert delta_X.shape[1] > 20 and follow_X.shape == delta_X.shape

    auc_delta = _cv_auc(delta_X, y, groups)
    auc_follow = _cv_auc(follow_X, y, groups)
    rng = np.random.default_rng(0)
    auc_shuffled = [_cv_auc(delta_X, rng.permutation(y), groups) for _ in range(10)]
    print(
        f"AUC delta {auc_delta:.3f}, follow-up only {auc_follow:.3f}, "
        f"shuffled {np.mean(auc_shuffled):.3f} +- {np.std(auc_shuffled):.3f}"
    )
    assert auc_delta >= 0.9
    assert auc_delta >= auc_follow + 0.1
    assert abs(np.mean(auc_shuffled) - 0.5) < 0.12


@pytest.mark.slow
def test_radsurv_classify_on_delta_features(longitudinal: Longitudinal) -> None:
    """`radsurv classify` takes the delta table as it is (one row per subject, so its folds
    cannot split a subject) and beats the same model on the follow-up scans' features."""
    labels = longitudinal.root / "cohort" / "pseudoprogression.csv"
    aucs = {}
    for name in ("delta", "features"):
        out = longitudinal.root / f"classify_{name}"
        _run(
            "classify",
            "--features",
            str(longitudinal.root / f"{name}.csv"),
            "--labels",
            str(labels),
            "--model",
            "logreg",
            "--cv",
            "5x1",
            "--permutations",
            "0",
            "--out",
            str(out),
        )
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["n"] == SUBJECTS  # features: the follow-up scans only (labelled)
        aucs[name] = metrics["models"]["logreg"]["roc_auc"]["mean"]
    print(f"radsurv classify AUC: delta {aucs['delta']:.3f}, follow-up {aucs['features']:.3f}")
    assert aucs["delta"] >= 0.9 and aucs["delta"] >= aucs["features"] + 0.1
