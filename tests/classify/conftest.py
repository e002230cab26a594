"""Fixtures for the classification tests: feature tables with known signal, label files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest


def make_design(
    n: int = 80, n_features: int = 30, signal: float = 2.0, seed: int = 0
) -> tuple[pd.DataFrame, pd.Series]:
    """Features where f0 and f1 drive a 0/1 label (signal = their weight), plus noise columns."""
    rng = np.random.default_rng(seed)
    ids = [f"BraTS20_Training_{i:03d}" for i in range(1, n + 1)]
    X = pd.DataFrame(
        rng.normal(size=(n, n_features)),
        columns=[f"t1gd_ET_original_firstorder_F{i}" for i in range(n_features)],
        index=pd.Index(ids, name="case_id"),
    )
    lin = signal * (X.iloc[:, 0] + 0.8 * X.iloc[:, 1]) + rng.normal(size=n)
    y = pd.Series((lin > np.quantile(lin, 0.6)).astype(int), index=X.index, name="label")
    return X, y


@pytest.fixture
def design() -> tuple[pd.DataFrame, pd.Series]:
    return make_design()


@pytest.fixture
def design_factory():
    """:func:`make_design` itself (importlib mode: test modules cannot import conftest)."""
    return make_design


@pytest.fixture
def cohort_files(tmp_path: Path) -> dict[str, Path]:
    """:func:`write_cohort_files` in the test's tmp_path."""
    return write_cohort_files(tmp_path)


@pytest.fixture(scope="session")
def cohort_writer():
    """:func:`write_cohort_files` itself, for module-scoped fixtures."""
    return write_cohort_files


def write_cohort_files(tmp_path: Path) -> dict[str, Path]:
    """features.csv, labels.csv (pseudoprogression/progression, 2 unmatched ids each side) and a
    survival table with age and resection."""
    X, y = make_design(n=60, n_features=20, seed=1)
    features = X.reset_index()
    features["diagnostics_Versions"] = "v3.0.1"  # a non-numeric column the reader leaves out
    features.to_csv(tmp_path / "features.csv", index=False)
    words = np.where(y.to_numpy() == 1, "pseudoprogression", "progression")
    ids = list(X.index[:-2]) + ["BraTS20_Training_998", "BraTS20_Training_999"]
    labels = pd.DataFrame({"case_id": ids, "label": list(words[:-2]) + ["progression", "PsP"]})
    labels.to_csv(tmp_path / "labels.csv", index=False)
    rng = np.random.default_rng(2)
    pd.DataFrame(
        {
            "Brats20ID": X.index,
            "Age": rng.normal(60, 10, len(X)).round(2),
            "Survival_days": rng.integers(50, 1500, len(X)),
            "Extent_of_Resection": rng.choice(["GTR", "STR", "NA"], len(X)),
        }
    ).to_csv(tmp_path / "survival.csv", index=False, lineterminator="\r\n")
    return {
        "features": tmp_path / "features.csv",
        "labels": tmp_path / "labels.csv",
        "clinical": tmp_path / "survival.csv",
        "dir": tmp_path,
    }
