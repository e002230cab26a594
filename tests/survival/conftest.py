"""Survival test data: simulated arrays (no files) and a small synthetic radiomics cohort."""

from __future__ import annotations

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
