"""Intraclass correlation ICC(2,1) of features across raters, and robust-feature selection.

The form used everywhere in radsurv is **ICC(2,1)** (Shrout & Fleiss 1979; ICC(A,1) of McGraw
& Wong 1996): two-way random effects, absolute agreement, single measurement. With ``n``
subjects (cases, rows) rated by ``k`` raters (perturbations or segmentations, columns), from the
two-way ANOVA without replication:

- ``MSR = k * sum_i (mean_i. - mean..)^2 / (n - 1)``            (between subjects)
- ``MSC = n * sum_j (mean_.j - mean..)^2 / (k - 1)``            (between raters)
- ``MSE = (SST - SSR - SSC) / ((n - 1)(k - 1))``                (residual)
- ``ICC(2,1) = (MSR - MSE) / (MSR + (k - 1) MSE + k (MSC - MSE) / n)``

Its 95 % CI is McGraw & Wong's F-based interval (their case 2A, with Satterthwaite's degrees of
freedom ``v``): with ``a = k ICC / (n (1 - ICC))`` and ``b = 1 + k ICC (n - 1) / (n (1 - ICC))``,
``v = (a MSC + b MSE)^2 / ((a MSC)^2 / (k - 1) + (b MSE)^2 / ((n - 1)(k - 1)))``,
``F_L = F_{0.975}(n - 1, v)``, ``F_U = F_{0.975}(v, n - 1)``,

- ``low  = n (MSR - F_L MSE) / (F_L (k MSC + (k n - k - n) MSE) + n MSR)``
- ``high = n (F_U MSR - MSE) / (k MSC + (k n - k - n) MSE + n F_U MSR)``

Koo & Li (2016) read ICC < 0.5 as poor, 0.5-0.75 moderate, 0.75-0.9 good and >= 0.9 excellent
reliability (:data:`KOO_LI_BANDS`).

Example
-------
>>> import numpy as np
>>> x = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9],
...               [6, 2, 4, 7]], dtype=float)        # Shrout & Fleiss (1979), Table 2
>>> round(icc_a1(x).icc, 2)
0.29
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsurv.errors import ConfigError

#: Koo & Li (2016) reliability bands: (lower bound, name).
KOO_LI_BANDS: tuple[tuple[float, str], ...] = (
    (0.9, "excellent"),
    (0.75, "good"),
    (0.5, "moderate"),
    (-math.inf, "poor"),
)

#: Columns of the long-form table that are not features.
LONG_KEYS = ("case_id", "perturbation")


@dataclass(frozen=True)
class ICCResult:
    """ICC(2,1) of one feature with its 95 % CI and the ANOVA it comes from."""

    icc: float
    low: float
    high: float
    n: int
    k: int
    msr: float
    msc: float
    mse: float

    def as_dict(self) -> dict[str, Any]:
        """Plain dict (for tables and JSON)."""
        return asdict(self)


_NAN = ICCResult(math.nan, math.nan, math.nan, 0, 0, math.nan, math.nan, math.nan)


def icc_a1(ratings: np.ndarray, alpha: float = 0.05) -> ICCResult:
    """ICC(2,1) (two-way random, absolute agreement, single rater) of an (n, k) table.

    Parameters
    ----------
    ratings
        Subjects (rows) x raters (columns); no missing values (leave incomplete rows out first).
    alpha
        1 - confidence level of the interval (0.05: 95 % CI).

    Returns
    -------
    ICCResult
        NaN ICC (and CI) when fewer than 2 subjects or raters, or when every value is equal.
    """
    x = np.asarray(ratings, dtype=float)
    if x.ndim != 2:
        raise ConfigError(f"ICC needs a 2-D subjects x raters table, got shape {x.shape}")
    n, k = x.shape
    if n < 2 or k < 2 or not np.all(np.isfinite(x)):
        return ICCResult(math.nan, math.nan, math.nan, n, k, math.nan, math.nan, math.nan)
    grand = x.mean()
    ssr = k * float(((x.mean(axis=1) - grand) ** 2).sum())
    ssc = n * float(((x.mean(axis=0) - grand) ** 2).sum())
    sst = float(((x - grand) ** 2).sum())
    sse = max(sst - ssr - ssc, 0.0)
    msr = ssr / (n - 1)
    msc = ssc / (k - 1)
    mse = sse / ((n - 1) * (k - 1))
    denom = msr + (k - 1) * mse + k * (msc - mse) / n
    scale = max(abs(grand), float(np.abs(x).max()), 1e-300)
    if denom <= 0 or sst <= (1e-12 * scale) ** 2 * x.size:
        return ICCResult(math.nan, math.nan, math.nan, n, k, msr, msc, mse)
    icc = (msr - mse) / denom
    low, high = _mcgraw_wong_ci(icc, n, k, msr, msc, mse, alpha)
    return ICCResult(float(icc), low, high, n, k, msr, msc, mse)


def _mcgraw_wong_ci(
    icc: float, n: int, k: int, msr: float, msc: float, mse: float, alpha: float
) -> tuple[float, float]:
    from scipy.stats import f as f_dist

    if icc >= 1.0 or mse <= 0:
        return (1.0, 1.0) if icc >= 1.0 else (math.nan, math.nan)
    a = k * icc / (n * (1 - icc))
    b = 1 + k * icc * (n - 1) / (n * (1 - icc))
    num = (a * msc + b * mse) ** 2
    den = (a * msc) ** 2 / (k - 1) + (b * mse) ** 2 / ((n - 1) * (k - 1))
    v = num / den if den > 0 else math.inf
    fl = float(f_dist.ppf(1 - alpha / 2, n - 1, v))
    fu = float(f_dist.ppf(1 - alpha / 2, v, n - 1))
    c = k * msc + (k * n - k - n) * mse
    low = n * (msr - fl * mse) / (fl * c + n * msr)
    high = n * (fu * msr - mse) / (c + n * fu * msr)
    return float(low), float(high)


def koo_li_band(icc: float) -> str:
    """Koo & Li (2016) band of an ICC: poor, moderate, good, excellent (``n/a`` for NaN)."""
    if not np.isfinite(icc):
        return "n/a"
    return next(name for bound, name in KOO_LI_BANDS if icc >= bound)


def icc_table(long: pd.DataFrame, features: list[str] | None = None) -> pd.DataFrame:
    """ICC(2,1) of every feature of a long-form table (``case_id, perturbation``, features).

    Each distinct ``perturbation`` is one rater, each ``case_id`` one subject; for each feature
    the cases with a missing value under any rater are left out.

    Returns
    -------
    DataFrame
        Index ``feature``; columns ``icc, icc_low, icc_high, n_cases, n_perturbations``.
    """
    missing = [c for c in LONG_KEYS if c not in long.columns]
    if missing:
        raise ConfigError(f"long-form table lacks columns {missing}")
    if long.duplicated(list(LONG_KEYS)).any():
        raise ConfigError("long-form table has repeated (case_id, perturbation) rows")
    features = features or [c for c in long.columns if c not in LONG_KEYS]
    raters = list(dict.fromkeys(long["perturbation"]))
    cases = list(dict.fromkeys(long["case_id"]))
    indexed = long.set_index(["case_id", "perturbation"])
    full = pd.MultiIndex.from_product([cases, raters], names=["case_id", "perturbation"])
    cube = indexed.reindex(full)[features].to_numpy(dtype=float)
    cube = cube.reshape(len(cases), len(raters), len(features))
    rows = []
    for j, name in enumerate(features):
        x = cube[:, :, j]
        x = x[np.all(np.isfinite(x), axis=1)]
        r = icc_a1(x) if x.size else _NAN
        rows.append(
            {
                "feature": name,
                "icc": r.icc,
                "icc_low": r.low,
                "icc_high": r.high,
                "n_cases": int(x.shape[0]),
                "n_perturbations": len(raters),
            }
        )
    return pd.DataFrame(rows).set_index("feature")


# ------------------------------------------------------------------------ robust selection


@dataclass
class RobustSelection:
    """Which features a robustness table lets through, and why the others were dropped."""

    source: str
    min_icc: float
    n_features: int
    kept: list[str]
    dropped_low_icc: list[str]
    dropped_undefined: list[str]
    not_assessed: list[str]

    @property
    def n_dropped(self) -> int:
        """Features dropped for any reason."""
        return self.n_features - len(self.kept)

    def summary(self) -> dict[str, Any]:
        """What reports and metrics.json record."""
        return {
            "robustness_file": self.source,
            "min_icc": self.min_icc,
            "icc_form": "ICC(2,1), two-way random, absolute agreement, single rater",
            "n_features": self.n_features,
            "n_kept": len(self.kept),
            "n_dropped": self.n_dropped,
            "n_dropped_low_icc": len(self.dropped_low_icc),
            "n_dropped_undefined_icc": len(self.dropped_undefined),
            "n_not_assessed": len(self.not_assessed),
        }

    def text(self) -> str:
        """One line for a report's notes."""
        return (
            f"robust features only (ICC(2,1) >= {self.min_icc:g} in {self.source}): kept "
            f"{len(self.kept)} of {self.n_features} features, dropped {self.n_dropped} "
            f"({len(self.dropped_low_icc)} below the threshold, {len(self.dropped_undefined)} "
            f"with undefined ICC, {len(self.not_assessed)} not in the robustness table)"
        )


def read_robustness(path: str | Path) -> pd.DataFrame:
    """Read a ``robustness.csv`` (from ``radsurv robustness``), indexed by feature."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"--robustness {path}: file not found; make it with radsurv robustness")
    try:
        table = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--robustness {path}: cannot read it as CSV ({exc})") from exc
    if not {"feature", "icc"} <= set(table.columns):
        raise ConfigError(
            f"--robustness {path}: needs columns feature and icc (has {list(table.columns)[:6]})"
        )
    if table["feature"].duplicated().any():
        raise ConfigError(f"--robustness {path}: repeated feature names")
    return table.set_index("feature")


def select_robust_features(
    features: pd.DataFrame,
    robustness: str | Path | pd.DataFrame,
    min_icc: float = 0.75,
    keep: tuple[str, ...] | list[str] = (),
) -> tuple[pd.DataFrame, RobustSelection]:
    """Keep the feature columns whose ICC(2,1) is at least ``min_icc``.

    The ICC uses no outcome labels, so this filter may run once on the whole table before any
    cross-validation. Columns in ``keep`` (e.g. covariates) stay whatever their ICC.

    Parameters
    ----------
    features
        Feature table (cases x columns; an id index or column is kept as it is).
    robustness
        A ``robustness.csv`` path or its table (index or column ``feature``, column ``icc``).
    min_icc
        Threshold, e.g. 0.75 (Koo & Li "good") or 0.9 ("excellent").
    keep
        Columns kept without a robustness check (ids, covariates).

    Returns
    -------
    (filtered table, RobustSelection)
        Columns with ICC below the threshold, an undefined ICC, or absent from the robustness
        table are dropped and counted.
    """
    if not -1.0 <= float(min_icc) <= 1.0:
        raise ConfigError(f"--min-icc {min_icc}: give a value between -1 and 1, e.g. 0.75")
    if isinstance(robustness, pd.DataFrame):
        table = robustness.set_index("feature") if "feature" in robustness.columns else robustness
        source = "robustness table"
    else:
        table = read_robustness(robustness)
        source = str(robustness)
    keep_set = set(keep) | {"case_id"}
    candidates = [c for c in features.columns if c not in keep_set]
    icc = pd.to_numeric(table["icc"], errors="coerce")
    kept, low, undefined, absent = [], [], [], []
    for col in candidates:
        if col not in icc.index:
            absent.append(col)
        elif not np.isfinite(icc[col]):
            undefined.append(col)
        elif icc[col] >= min_icc:
            kept.append(col)
        else:
            low.append(col)
    selection = RobustSelection(
        source, float(min_icc), len(candidates), kept, low, undefined, absent
    )
    columns = [c for c in features.columns if c in keep_set or c in set(kept)]
    return features[columns], selection


def apply_robustness_option(
    features: pd.DataFrame,
    robustness: str | Path | None,
    min_icc: float = 0.75,
    keep: tuple[str, ...] | list[str] = (),
    notes: list[str] | None = None,
    cohort: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """``--robustness FILE --min-icc X`` of ``radsurv survival`` and ``radsurv classify``.

    Without ``robustness`` the table is returned as it is. Otherwise the non-robust columns are
    dropped (:func:`select_robust_features`), one line is appended to ``notes`` (shown in the
    report and metrics.json) and ``cohort["robustness"]`` gets the counts.
    """
    if robustness is None:
        return features
    filtered, selection = select_robust_features(features, robustness, min_icc, keep)
    if not selection.kept:
        raise ConfigError(
            f"--min-icc {min_icc:g}: no feature of {selection.n_features} reaches it in "
            f"{robustness}; lower --min-icc or drop --robustness"
        )
    if notes is not None:
        notes.append(selection.text())
    if cohort is not None:
        cohort["robustness"] = selection.summary()
    return filtered
