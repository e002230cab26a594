"""Delta-radiomics: the change of each feature between a subject's baseline and follow-up scans.

Per subject (``subject_id`` of the cohort table, e.g. :meth:`Manifest.cohort`), the baseline is
its first scan (smallest ``timepoint``) or the scan at a given time point; every later scan of
the subject gives one row, keyed by its own ``case_id``, with

- ``delta_<feature>`` = follow-up - baseline (``kind="difference"``), and/or
- ``reldelta_<feature>`` = (follow-up - baseline) / |baseline| (``kind="relative"``): the
  relative change, NaN where the baseline value is 0 or missing,

plus ``subject_id``, ``timepoint`` (the follow-up's), ``baseline_case_id`` and
``baseline_timepoint``.

Example
-------
>>> feats = pd.DataFrame({"case_id": ["a0", "a1"], "WT_volume": [100.0, 150.0]})
>>> cohort = pd.DataFrame(
...     {"subject_id": ["a", "a"], "timepoint": [0.0, 90.0]}, index=["a0", "a1"]
... )
>>> delta_features(feats, cohort, kind="both")[["case_id", "delta_WT_volume",
...                                             "reldelta_WT_volume"]]
  case_id  delta_WT_volume  reldelta_WT_volume
0      a1             50.0                 0.5
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pandas as pd

from radsurv.errors import RadsurvError

logger = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("difference", "relative", "both")
#: Columns of a delta table that are not features.
KEY_COLUMNS: tuple[str, ...] = (
    "case_id",
    "subject_id",
    "timepoint",
    "baseline_case_id",
    "baseline_timepoint",
)
_NOT_FEATURES = frozenset({"case_id", "subject_id", "timepoint", "site"})
_BASELINE = re.compile(r"^timepoint\s*=\s*(-?\d+(?:\.\d+)?)$")


class DeltaError(RadsurvError):
    """Longitudinal features cannot be formed: missing baselines, duplicate time points, ..."""


def parse_baseline(baseline: str | float | int) -> float | None:
    """``"first"`` -> None; ``"timepoint=N"`` or a number -> N (float)."""
    if isinstance(baseline, int | float) and not isinstance(baseline, bool):
        return float(baseline)
    text = str(baseline).strip().lower()
    if text == "first":
        return None
    m = _BASELINE.match(text)
    if not m:
        raise DeltaError(
            f"baseline {baseline!r}: use 'first' (each subject's earliest scan) or "
            "'timepoint=N' (the scan at time point N, e.g. timepoint=0)"
        )
    return float(m.group(1))


def _examples(ids, limit: int = 5) -> str:
    ids = sorted(map(str, ids))
    more = f", ... (+{len(ids) - limit})" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def _feature_frame(features: pd.DataFrame) -> pd.DataFrame:
    """Numeric feature columns indexed by case id (``case_id`` column or the index)."""
    df = features
    if "case_id" in df.columns:
        df = df.set_index("case_id")
    df = df.copy()
    df.index = pd.Index(df.index.astype(str), name="case_id")
    dup = df.index[df.index.duplicated()]
    if len(dup):
        raise DeltaError(f"features: duplicate case ids {_examples(set(dup))}")
    df = df.drop(columns=[c for c in df.columns if c in _NOT_FEATURES])
    numeric = [
        c for c in df.columns if pd.api.types.is_numeric_dtype(df[c]) and df[c].dtype != bool
    ]
    skipped = [c for c in df.columns if c not in numeric]
    if skipped:
        logger.info("%d non-numeric column(s) left out (e.g. %s)", len(skipped), skipped[:3])
    if not numeric:
        raise DeltaError("features: no numeric feature column")
    return df[numeric].astype(float)


def _cohort_frame(cohort: pd.DataFrame) -> pd.DataFrame:
    df = cohort
    if "case_id" in df.columns:
        df = df.set_index("case_id")
    missing = [c for c in ("subject_id", "timepoint") if c not in df.columns]
    if missing:
        raise DeltaError(
            f"cohort table lacks {missing}: build the manifest with subject_id and timepoint "
            "(radsurv manifest --cohort-table FILE --subject-column S --timepoint-column T)"
        )
    out = pd.DataFrame(index=pd.Index(df.index.astype(str), name="case_id"))
    subject = df["subject_id"].astype("string").replace("", pd.NA)
    out["subject_id"] = subject.fillna(pd.Series(out.index, index=df.index, dtype="string"))
    out["subject_id"] = out["subject_id"].to_numpy(dtype=object)
    out["timepoint"] = pd.to_numeric(df["timepoint"], errors="coerce").to_numpy(dtype=float)
    return out


def delta_features(
    features: pd.DataFrame,
    cohort: pd.DataFrame,
    baseline: str | float = "first",
    kind: str = "difference",
) -> pd.DataFrame:
    """Follow-up minus baseline of every feature, one row per follow-up scan.

    Parameters
    ----------
    features
        One row per scan: a ``case_id`` column (or index) and numeric feature columns (e.g.
        ``radsurv extract-features`` output). Non-numeric columns are left out.
    cohort
        ``subject_id`` and ``timepoint`` per case id (a ``case_id`` column or the index), e.g.
        :meth:`radsurv.data.manifest.Manifest.cohort` or
        :func:`radsurv.data.cohort.read_cohort_columns`.
    baseline
        ``"first"``: each subject's earliest scan; ``"timepoint=N"`` (or the number N): the
        subject's scan at time point N, which every subject with a follow-up must have.
    kind
        ``"difference"`` (``delta_<f>`` = f - b), ``"relative"`` (``reldelta_<f>`` =
        (f - b) / |b|, NaN where b == 0 or either is NaN) or ``"both"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``case_id`` (the follow-up scan), ``subject_id``, ``timepoint``,
        ``baseline_case_id``, ``baseline_timepoint``, then the delta columns in feature order
        (all ``delta_`` columns before the ``reldelta_`` ones). Rows in subject order of the
        cohort, then by time point. Only scans after the baseline give rows; subjects with one
        scan give none (both are logged).

    Raises
    ------
    DeltaError
        Unknown ``kind``/``baseline``; a subject with several scans and a missing time point,
        with two scans at one time point, without a scan at ``timepoint=N`` or whose baseline
        scan has no features (each naming the subject and its scans).
    """
    if kind not in KINDS:
        raise DeltaError(f"kind {kind!r}: choose from {', '.join(KINDS)}")
    at = parse_baseline(baseline)
    feats = _feature_frame(features)
    coh = _cohort_frame(cohort)
    unknown = feats.index.difference(coh.index)
    if len(unknown):
        logger.warning(
            "%d featured case(s) not in the cohort table left out: %s",
            len(unknown),
            _examples(unknown),
        )
    rows: list[tuple[str, str, float, str, float]] = []
    singles, before, no_features = [], [], []
    for subject, scans in coh.groupby("subject_id", sort=False):
        if len(scans) < 2:
            singles.append(subject)
            continue
        where = f"subject {subject!r} (scans {', '.join(scans.index)})"
        if scans["timepoint"].isna().any():
            bad = list(scans.index[scans["timepoint"].isna()])
            raise DeltaError(f"{where}: no time point for {', '.join(bad)}; give every scan one")
        dup = scans[scans["timepoint"].duplicated(keep=False)]
        if len(dup):
            raise DeltaError(
                f"{where}: several scans at time point {dup['timepoint'].iloc[0]:g} "
                f"({', '.join(dup.index)}); each scan of a subject needs its own time point"
            )
        scans = scans.sort_values("timepoint", kind="stable")
        if at is None:
            base_id = scans.index[0]
        else:
            hit = scans.index[scans["timepoint"] == at]
            if not len(hit):
                have = ", ".join(f"{t:g}" for t in scans["timepoint"])
                raise DeltaError(
                    f"{where}: no baseline scan at time point {at:g} (it has {have}); "
                    "use --baseline first or another timepoint=N"
                )
            base_id = hit[0]
        base_t = float(scans.loc[base_id, "timepoint"])
        if base_id not in feats.index:
            raise DeltaError(
                f"{where}: the baseline scan {base_id} has no features; extract them or drop "
                "the subject"
            )
        for case_id, t in scans["timepoint"].items():
            if case_id == base_id:
                continue
            if t < base_t:
                before.append(case_id)
                continue
            if case_id not in feats.index:
                no_features.append(case_id)
                continue
            rows.append((case_id, subject, float(t), base_id, base_t))
    if singles:
        logger.info("%d subject(s) with a single scan give no delta row", len(singles))
    if before:
        logger.warning(
            "%d scan(s) before their subject's baseline left out: %s",
            len(before),
            _examples(before),
        )
    if no_features:
        logger.warning(
            "%d follow-up scan(s) without features left out: %s",
            len(no_features),
            _examples(no_features),
        )
    keys = pd.DataFrame(rows, columns=list(KEY_COLUMNS))
    follow = feats.reindex(keys["case_id"]).to_numpy()
    base = feats.reindex(keys["baseline_case_id"]).to_numpy()
    parts = [keys]
    names = list(feats.columns)
    diff = follow - base
    if kind in ("difference", "both"):
        parts.append(pd.DataFrame(diff, columns=[f"delta_{c}" for c in names]))
    if kind in ("relative", "both"):
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(base != 0, diff / np.abs(base), np.nan)
        parts.append(pd.DataFrame(rel, columns=[f"reldelta_{c}" for c in names]))
    out = pd.concat(parts, axis=1)
    logger.info(
        "delta features: %d follow-up scan(s) of %d subject(s), %d feature(s), kind %s",
        len(out),
        out["subject_id"].nunique(),
        len(names),
        kind,
    )
    return out


def read_features(path: str | Path) -> pd.DataFrame:
    """A features table (CSV, TSV or Parquet by extension) with its ``case_id`` as a column."""
    path = Path(path)
    if not path.is_file():
        raise DeltaError(f"{path}: features table not found")
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
            if "case_id" not in df.columns and df.index.name == "case_id":
                df = df.reset_index()
        else:
            sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
            df = pd.read_csv(path, sep=sep, dtype={"case_id": str}, low_memory=False)
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DeltaError(f"{path}: cannot be read as a table ({exc})") from exc
    if "case_id" not in df.columns:
        raise DeltaError(f"{path}: no case_id column; the columns are {list(df.columns)[:8]}")
    return df


def write_table(df: pd.DataFrame, path: str | Path) -> Path:
    """Write a table as CSV or Parquet (by extension)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix.lower() == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False, lineterminator="\n")
    return path
