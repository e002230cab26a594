"""ICC(2,1) on a textbook example, its CI, and the robust-feature filter."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import f as f_dist

from radsurv.features.icc import icc_a1, icc_table, koo_li_band, select_robust_features

# Shrout & Fleiss (1979), Table 2: 6 targets rated by 4 judges
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
    dtype=float,
)


def _hand_anova(x: np.ndarray) -> tuple[float, float, float]:
    """MSR, MSC, MSE written out with explicit loops (no shared code with the library)."""
    n, k = x.shape
    grand = sum(sum(row) for row in x) / (n * k)
    row_means = [sum(row) / k for row in x]
    col_means = [sum(x[i][j] for i in range(n)) / n for j in range(k)]
    ssr = k * sum((m - grand) ** 2 for m in row_means)
    ssc = n * sum((m - grand) ** 2 for m in col_means)
    sst = sum((x[i][j] - grand) ** 2 for i in range(n) for j in range(k))
    sse = sst - ssr - ssc
    return ssr / (n - 1), ssc / (k - 1), sse / ((n - 1) * (k - 1))


def test_icc_on_the_shrout_fleiss_table() -> None:
    msr, msc, mse = _hand_anova(SHROUT_FLEISS)
    # the mean squares printed in Shrout & Fleiss (1979), Table 3: BMS, JMS, EMS
    assert (round(msr, 2), round(msc, 2), round(mse, 2)) == (11.24, 32.49, 1.02)
    n, k = SHROUT_FLEISS.shape
    expected = (msr - mse) / (msr + (k - 1) * mse + k * (msc - mse) / n)
    res = icc_a1(SHROUT_FLEISS)
    assert res.icc == pytest.approx(expected, abs=1e-12)
    assert round(res.icc, 2) == 0.29  # the published ICC(2,1)
    assert res.low < res.icc < res.high
    # McGraw & Wong (1996) case 2A interval, written out independently
    a = k * expected / (n * (1 - expected))
    b = 1 + k * expected * (n - 1) / (n * (1 - expected))
    v = (a * msc + b * mse) ** 2 / ((a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1)))
    fl, fu = f_dist.ppf(0.975, n - 1, v), f_dist.ppf(0.975, v, n - 1)
    low = n * (msr - fl * mse) / (fl * (k * msc + (k * n - k - n) * mse) + n * msr)
    high = n * (fu * msr - mse) / (k * msc + (k * n - k - n) * mse + n * fu * msr)
    assert (res.low, res.high) == pytest.approx((low, high), abs=1e-12)
    assert 0.0 < res.low < 0.2 and 0.6 < res.high < 0.9


def test_icc_ci_covers_the_true_value() -> None:
    """Simulated two-way random model with a known ICC: the 95 % CI covers it ~95 % of runs."""
    rng = np.random.default_rng(0)
    n, k, s_subject, s_rater, s_error = 30, 4, 1.0, 0.3, 0.5
    true = s_subject**2 / (s_subject**2 + s_rater**2 + s_error**2)
    hits, estimates = 0, []
    for _ in range(300):
        x = (
            rng.normal(0, s_subject, (n, 1))
            + rng.normal(0, s_rater, (1, k))
            + rng.normal(0, s_error, (n, k))
        )
        r = icc_a1(x)
        hits += r.low <= true <= r.high
        estimates.append(r.icc)
    assert 0.88 <= hits / 300 <= 0.99
    assert abs(np.mean(estimates) - true) < 0.03


def test_pure_noise_feature_has_icc_near_zero_and_stable_one_near_one() -> None:
    rng = np.random.default_rng(1)
    n, k = 40, 6
    noise = rng.normal(size=(n, k))  # values unrelated to the case
    stable = rng.normal(10, 3, size=(n, 1)) + rng.normal(0, 0.05, size=(n, k))
    assert abs(icc_a1(noise).icc) < 0.1
    assert icc_a1(stable).icc > 0.99


def test_degenerate_tables_give_nan() -> None:
    assert np.isnan(icc_a1(np.ones((5, 3))).icc)
    assert np.isnan(icc_a1(np.ones((1, 3))).icc)
    assert np.isnan(icc_a1(np.ones((4, 1))).icc)


def test_icc_table_leaves_out_incomplete_cases() -> None:
    rows = []
    for i, values in enumerate(SHROUT_FLEISS):
        for j, v in enumerate(values):
            rows.append({"case_id": f"c{i}", "perturbation": f"r{j}", "f": v, "g": v})
    long = pd.DataFrame(rows)
    long.loc[0, "g"] = np.nan  # case c0 is left out for g only
    table = icc_table(long)
    assert table.loc["f", "icc"] == pytest.approx(icc_a1(SHROUT_FLEISS).icc)
    assert table.loc["f", "n_cases"] == 6 and table.loc["g", "n_cases"] == 5
    assert table.loc["g", "icc"] == pytest.approx(icc_a1(SHROUT_FLEISS[1:]).icc)
    assert table.loc["f", "n_perturbations"] == 4


def test_koo_li_bands() -> None:
    assert [koo_li_band(v) for v in (0.95, 0.8, 0.6, 0.1, np.nan)] == [
        "excellent", "good", "moderate", "poor", "n/a",
    ]  # fmt: skip


def test_select_robust_features_counts_what_it_drops() -> None:
    feats = pd.DataFrame({"a": [1.0, 2], "b": [3.0, 4], "c": [5.0, 6], "d": [0.0, 1], "age": 1})
    rob = pd.DataFrame({"feature": ["a", "b", "c"], "icc": [0.9, 0.5, np.nan]})
    out, sel = select_robust_features(feats, rob, 0.75, keep=["age"])
    assert list(out.columns) == ["a", "age"]
    assert sel.summary()["n_dropped"] == 3 and sel.dropped_low_icc == ["b"]
    assert sel.dropped_undefined == ["c"] and sel.not_assessed == ["d"]
    assert "kept 1 of 4" in sel.text()
