"""Study-engine test data: small synthetic cohorts written as files (clinical, features)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def make_cohort(n: int = 90, p: int = 12, seed: int = 0, prefix: str = "BraTS20_Training_"):
    """Features f0..f{p-1} (f0, f1 drive survival and the label), age, IDH/MGMT/KPS, resection."""
    rng = np.random.default_rng(seed)
    ids = [f"{prefix}{i:03d}" for i in range(1, n + 1)]
    feats = pd.DataFrame(
        rng.normal(size=(n, p)),
        columns=[f"t1gd_ET_original_firstorder_F{i}" for i in range(p)],
        index=pd.Index(ids, name="case_id"),
    )
    age = rng.normal(60, 10, n).round(1)
    idh = rng.choice(["wildtype", "mutant"], n, p=[0.7, 0.3])
    mgmt = rng.choice(["methylated", "unmethylated", ""], n, p=[0.45, 0.45, 0.1])
    kps = rng.choice([60, 70, 80, 90, 100], n).astype(float)
    lp = (
        1.1 * feats.iloc[:, 0]
        - 0.8 * feats.iloc[:, 1]
        + 0.03 * (age - 60)
        - 0.6 * (idh == "mutant")
    )
    t_event = rng.exponential(450 * np.exp(-lp))
    t_cens = rng.uniform(300, 1800, n)
    time = np.maximum(1, np.round(np.minimum(t_event, t_cens)))
    event = (t_event <= t_cens).astype(int)
    res = rng.choice(["GTR", "STR", "NA"], n, p=[0.5, 0.2, 0.3])
    clinical = pd.DataFrame(
        {"case_id": ids, "age": age, "time": time, "event": event, "idh": idh, "mgmt": mgmt,
         "kps": kps, "resection": res}
    )  # fmt: skip
    label = (lp + rng.normal(0, 0.5, n) > np.quantile(lp, 0.6)).astype(int)
    labels = pd.DataFrame(
        {"case_id": ids, "label": np.where(label == 1, "pseudoprogression", "progression")}
    )
    return feats, clinical, labels


def brats_form(clinical: pd.DataFrame) -> pd.DataFrame:
    """The BraTS 2020 training form of a generic table (ALIVE for censored cases)."""
    days = [
        str(int(t)) if e else f"ALIVE ({int(t)} days later)"
        for t, e in zip(clinical["time"], clinical["event"], strict=True)
    ]
    return pd.DataFrame(
        {"Brats20ID": clinical["case_id"], "Age": clinical["age"], "Survival_days": days,
         "Extent_of_Resection": clinical["resection"]}
    )  # fmt: skip


@pytest.fixture(scope="module")
def cohort():
    return make_cohort()


@pytest.fixture(scope="module")
def cohort_files(tmp_path_factory, cohort) -> dict[str, Path]:
    """Training (first 60 cases) and held-out (last 30) files: features as CSV and Parquet."""
    feats, clinical, labels = cohort
    d = tmp_path_factory.mktemp("study")
    train, held = clinical.iloc[:60], clinical.iloc[60:]
    paths = {"dir": d}
    feats.loc[train.case_id].to_parquet(d / "train_features.parquet")
    feats.loc[train.case_id].to_csv(d / "train_features.csv")
    feats.loc[held.case_id].to_csv(d / "held_features.csv")
    feats.to_csv(d / "all_features.csv")
    train.to_csv(d / "train_generic.csv", index=False)
    held.to_csv(d / "held_generic.csv", index=False)
    clinical.to_csv(d / "all_generic.csv", index=False)
    brats_form(train).to_csv(d / "train_survival_info.csv", index=False, lineterminator="\r\n")
    brats_form(held).to_csv(d / "held_survival_info.csv", index=False, lineterminator="\r\n")
    labels.to_csv(d / "labels.csv", index=False)
    labels.iloc[:60].to_csv(d / "train_labels.csv", index=False)
    labels.iloc[60:].to_csv(d / "held_labels.csv", index=False)
    for name in ("train", "held", "all"):
        paths[f"{name}_generic"] = d / f"{name}_generic.csv"
        paths[f"{name}_features"] = d / f"{name}_features.csv"
    for name in ("train", "held"):
        paths[f"{name}_brats"] = d / f"{name}_survival_info.csv"
        paths[f"{name}_labels"] = d / f"{name}_labels.csv"
    paths["train_parquet"] = d / "train_features.parquet"
    paths["labels"] = d / "labels.csv"
    return paths


@pytest.fixture(scope="session")
def cohort_factory():
    """:func:`make_cohort` itself, for tests that build their own variants."""
    return make_cohort
