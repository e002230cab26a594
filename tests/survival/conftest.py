"""Survival test data: simulated arrays (no files) and a small synthetic radiomics cohort."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sksurv.util import Surv


def simulate(n: int = 200, p: int = 30, seed: int = 0, signal: float = 1.0):
    """Weibull-free exponential PH data: risk from f0, f1 and age; uniform censoring."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{i}" for i in range(p)])
    X.index = [f"BraTS20_Training_{i:03d}" for i in range(1, n + 1)]
    X["age"] = rng.normal(60, 10, n)
    lp = signal * (0.9 * X["f0"] - 0.6 * X["f1"]) + 0.04 * (X["age"] - 60)
    t_event = rng.exponential(450 * np.exp(-lp))
    t_cens = rng.uniform(200, 1600, n)
    time = np.maximum(1, np.round(np.minimum(t_event, t_cens)))
    event = t_event <= t_cens
    return X, Surv.from_arrays(event, time, name_event="event", name_time="time")


@pytest.fixture(scope="module")
def sim():
    return simulate()


# A cheap but real radiomics set-up: 100 phantom cases at (24, 64, 64), PyRadiomics shape +
# first-order features of NCR, ET and WT on T1Gd (the modality where necrosis, enhancement and
# the tumour texture show). The generative truth (radsurv.data.synthetic) makes survival depend
# on age, resection, grade, NCR and ET volume and tumour heterogeneity.
SYNTH_CASES = 100
SYNTH_SHAPE = (24, 64, 64)
SYNTH_SEED = 0
SYNTH_PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {"shape": None, "firstorder": None},
    "setting": {"binWidth": 0.1, "label": 1, "minimumROIDimensions": 2, "minimumROISize": 10},
}


@dataclass(frozen=True)
class RadiomicsCohort:
    root: Path
    manifest: Path
    features: Path
    truth: Path


@pytest.fixture(scope="session")
def radiomics_cohort(tmp_path_factory) -> RadiomicsCohort:
    """Synthetic cohort -> data_manifest.csv -> features.csv (real PyRadiomics), once per run."""
    from radsurv.data.manifest import build_manifest, write_manifest
    from radsurv.data.synthetic import synthesize_cohort
    from radsurv.features import extract_features

    root = tmp_path_factory.mktemp("radiomics_cohort")
    cohort = synthesize_cohort(root / "cohort", SYNTH_CASES, SYNTH_SEED, SYNTH_SHAPE)
    manifest = write_manifest(
        build_manifest(cohort.root, relative_to=root, checksum=False), root / "data_manifest.csv"
    )
    features = root / "features.csv"
    result = extract_features(
        manifest,
        params=SYNTH_PARAMS,
        regions=["NCR", "ET", "WT"],
        modalities=["t1gd"],
        jobs=2,
        output=features,
        progress=False,
    )
    assert result.failed == [], result.status
    return RadiomicsCohort(root, manifest, features, cohort.truth_json)
