"""Cohort structure of a dataset: which scans belong to one subject, when, and at which site.

Three columns describe it, in the manifest and wherever a study needs them:

``subject_id``
    The patient a scan belongs to (default: the scan's ``case_id``: one scan per subject).
    Cross-validation must never put scans of one subject on both sides of a fold.
``timepoint``
    Days from the subject's baseline scan, or an ordinal (0, 1, 2, ...); empty (NaN) for
    single scans.
``site``
    The institution that acquired the scan. From a BraTS ``name_mapping.csv`` it is the
    institution token of the BraTS 2019 id (``BraTS19_<SITE>_<n>_1``: ``CBICA``, ``TCIA01`` ..
    ``TCIA13``, ``TMC``, ``2013``), failing that the TCGA tissue-source code of the
    ``TCGA_TCIA_subject_ID`` (``TCGA-06-0130`` -> ``TCGA-06``), failing both ``unknown``.
    Empty (<NA>) when no table gave any site information.

:func:`read_cohort_columns` reads them from any table (CSV, TSV, Parquet or a DataFrame) with
a case id column, for the manifest (``radsurv manifest --cohort-table``) and for features-only
workflows (a ``--clinical`` table). It depends on pandas only.

Example
-------
>>> site_from_ids("BraTS19_TCIA02_300_1", None)
'TCIA02'
>>> site_from_ids(None, "TCGA-06-0130")
'TCGA-06'
>>> site_from_ids("NA", "NA")
'unknown'
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsurv.errors import DataError

logger = logging.getLogger(__name__)

#: The cohort columns, in the order the manifest carries them (right after ``case_id``).
COHORT_COLUMNS: tuple[str, ...] = ("subject_id", "timepoint", "site")
UNKNOWN_SITE = "unknown"

#: Names (lower case) recognised without an explicit column option.
ID_NAMES: tuple[str, ...] = (
    "case_id",
    "brats20id",
    "brats_2020_subject_id",
    "bratsid",
    "scan_id",
    "id",
)
SUBJECT_NAMES: tuple[str, ...] = ("subject_id", "subject", "patient_id", "patient")
TIMEPOINT_NAMES: tuple[str, ...] = ("timepoint", "time_point", "days_from_baseline")
SITE_NAMES: tuple[str, ...] = ("site", "institution", "centre", "center")
BRATS2019_ID_NAMES: tuple[str, ...] = ("brats_2019_subject_id",)
TCGA_ID_NAMES: tuple[str, ...] = ("tcga_tcia_subject_id",)

_MISSING = frozenset({"", "na", "n/a", "nan", "none", "null", "<na>"})
_BRATS19 = re.compile(r"^BraTS19_([A-Za-z0-9]+)_", re.IGNORECASE)
_TCGA = re.compile(r"^(TCGA-[A-Za-z0-9]{2})(?:-|$)", re.IGNORECASE)


class CohortError(DataError):
    """A cohort table (subjects, time points, sites) is missing columns or is inconsistent."""


def _missing(value: Any) -> bool:
    if value is None or value is pd.NA:
        return True
    if isinstance(value, float) and np.isnan(value):
        return True
    return str(value).strip().lower() in _MISSING


def site_from_ids(brats2019_id: Any, tcga_id: Any) -> str:
    """The acquisition site of a BraTS case from its BraTS 2019 and TCGA/TCIA ids.

    The institution token of ``BraTS19_<SITE>_...``; failing that the TCGA tissue-source
    code (``TCGA-06-0130`` -> ``TCGA-06``); failing both ``unknown``.
    """
    if not _missing(brats2019_id):
        m = _BRATS19.match(str(brats2019_id).strip())
        if m:
            return m.group(1)
    if not _missing(tcga_id):
        m = _TCGA.match(str(tcga_id).strip())
        if m:
            return m.group(1).upper()
    return UNKNOWN_SITE


def _lookup(columns: Sequence[str], names: Sequence[str]) -> str | None:
    lower = {str(c).strip().lower(): c for c in columns}
    return next((lower[n] for n in names if n in lower), None)


def sites_from_name_mapping(table: pd.DataFrame) -> pd.Series:
    """Per row of a name-mapping table, its site (see :func:`site_from_ids`).

    ``table`` has a ``BraTS_2019_subject_ID`` and/or a ``TCGA_TCIA_subject_ID`` column (any
    case); the result keeps its index. Raises :class:`CohortError` when it has neither.
    """
    b19 = _lookup(table.columns, BRATS2019_ID_NAMES)
    tcga = _lookup(table.columns, TCGA_ID_NAMES)
    if b19 is None and tcga is None:
        raise CohortError(
            "no BraTS_2019_subject_ID or TCGA_TCIA_subject_ID column to derive sites from; "
            f"the table has {list(table.columns)}"
        )
    first = table[b19] if b19 is not None else pd.Series(None, index=table.index)
    second = table[tcga] if tcga is not None else pd.Series(None, index=table.index)
    return pd.Series(
        [site_from_ids(a, b) for a, b in zip(first, second, strict=True)],
        index=table.index,
        name="site",
        dtype="string",
    )


def _read_table(table: str | Path | pd.DataFrame) -> tuple[pd.DataFrame, str]:
    if isinstance(table, pd.DataFrame):
        df = table.copy()
        if df.index.name is not None and str(df.index.name).lower() in (*ID_NAMES, "case_id"):
            df = df.reset_index()
        return df, "table"
    path = Path(table)
    if not path.is_file():
        raise CohortError(f"{path}: cohort table not found")
    try:
        if path.suffix.lower() == ".parquet":
            df = pd.read_parquet(path)
            if df.index.name is not None and str(df.index.name).lower() in ID_NAMES:
                df = df.reset_index()
            df = df.astype({c: "string" for c in df.columns if df[c].dtype == object})
        else:
            sep = "\t" if path.suffix.lower() in (".tsv", ".txt") else ","
            df = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise CohortError(f"{path}: cannot be read as a table ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df, str(path)


def _column(df: pd.DataFrame, given: str | None, names: Sequence[str], where: str, what: str):
    """The column named by an option (must exist) or the first recognised name (or None)."""
    if given is None:
        return _lookup(df.columns, names)
    if given in df.columns:
        return given
    found = _lookup(df.columns, [given.strip().lower()])
    if found is None:
        raise CohortError(
            f"{where}: no {what} column {given!r}; the columns are {list(df.columns)}"
        )
    return found


def parse_timepoints(values: pd.Series, where: str = "table", column: str = "timepoint"):
    """Time points as floats (days or ordinals); empty -> NaN; text -> CohortError with row."""
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if _missing(v):
            continue
        try:
            out[i] = float(str(v).strip())
        except ValueError:
            raise CohortError(
                f"{where}: row {i + 1} (line {i + 2}), column {column}: time point {v!r} is "
                "not a number (days from baseline or an ordinal)"
            ) from None
        if not np.isfinite(out[i]):
            raise CohortError(f"{where}: row {i + 1}, column {column}: time point {v!r}")
    return out


def read_cohort_columns(
    table: str | Path | pd.DataFrame,
    id_column: str | None = None,
    site_column: str | None = None,
    subject_column: str | None = None,
    timepoint_column: str | None = None,
    *,
    detect: bool = True,
) -> pd.DataFrame:
    """Read ``subject_id``, ``timepoint`` and ``site`` per case from any table.

    Parameters
    ----------
    table
        A CSV / TSV / Parquet file or a DataFrame, one row per scan (e.g. a ``--clinical``
        table, a BraTS ``name_mapping.csv``, a ``radsurv synth --timepoints 2`` ``cohort.csv``).
    id_column
        The case id column (default: the first of ``case_id``, ``Brats20ID``,
        ``BraTS_2020_subject_ID``, ``BraTSID``, ``scan_id``, ``ID``, any case).
    site_column, subject_column, timepoint_column
        Columns to read. With ``detect`` (default) a column left unnamed is taken when the table
        has one of the usual names (``subject_id``/``subject``/``patient_id``/``patient``;
        ``timepoint``/``time_point``/``days_from_baseline``; ``site``/``institution``/
        ``centre``/``center``); without a site column the site is derived from BraTS 2019 /
        TCGA ids when the table has them (:func:`sites_from_name_mapping`).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``case_id`` (table order), columns ``subject_id`` (string; the case id where
        the table gives none), ``timepoint`` (float; NaN = single scan / not given) and ``site``
        (string; ``unknown`` where the site column is empty; <NA> when the table gives no site
        information). ``df.attrs["sources"]`` tells where each column came from.

    Raises
    ------
    CohortError
        Missing file or named column, no id column, empty or duplicate case ids, non-numeric
        time points, one subject with two scans at the same time point (naming the subject).

    Examples
    --------
    >>> df = pd.DataFrame({"case_id": ["a", "b"], "patient": ["p1", "p1"], "day": [0, 90]})
    >>> read_cohort_columns(df, subject_column="patient", timepoint_column="day")["timepoint"]
    ... # doctest: +NORMALIZE_WHITESPACE
    case_id
    a     0.0
    b    90.0
    Name: timepoint, dtype: float64
    """
    df, where = _read_table(table)
    explicit = [c for c in (site_column, subject_column, timepoint_column) if c is not None]
    id_names = [n for n in ID_NAMES if n not in {c.lower() for c in explicit}]
    id_col = _column(df, id_column, id_names, where, "case id")
    if id_col is None:
        raise CohortError(
            f"{where}: no case id column (accepted names: {', '.join(ID_NAMES)}); "
            f"the columns are {list(df.columns)}; name it with an id-column option"
        )
    ids = df[id_col].astype("string").str.strip()
    empty = [i for i, v in enumerate(ids) if _missing(v)]
    if empty:
        raise CohortError(f"{where}: row {empty[0] + 1}, column {id_col}: empty case id")
    dup = ids[ids.duplicated()]
    if len(dup):
        raise CohortError(
            f"{where}: column {id_col}: duplicate case id {dup.iloc[0]!r}; keep one row per scan"
        )
    index = pd.Index(ids.to_numpy(dtype=object), name="case_id")
    rest = [c for c in df.columns if c != id_col]
    sub_df = df[rest]
    sources: dict[str, str] = {}

    subj_col = _column(sub_df, subject_column, SUBJECT_NAMES if detect else (), where, "subject")
    if subj_col is not None:
        raw = [None if _missing(v) else str(v).strip() for v in df[subj_col]]
        n_empty = sum(v is None for v in raw)
        if n_empty:
            logger.info("%s: %d row(s) without a subject id: the case id is used", where, n_empty)
        subjects = [case if v is None else v for v, case in zip(raw, index, strict=True)]
        sources["subject_id"] = f"{where}: column {subj_col}"
    else:
        subjects = list(index)
        sources["subject_id"] = "case_id (one scan per subject)"

    tp_col = _column(
        sub_df, timepoint_column, TIMEPOINT_NAMES if detect else (), where, "timepoint"
    )
    if tp_col is not None:
        timepoints = parse_timepoints(df[tp_col].reset_index(drop=True), where, tp_col)
        sources["timepoint"] = f"{where}: column {tp_col}"
    else:
        timepoints = np.full(len(df), np.nan)
        sources["timepoint"] = "not given (single scans)"

    site_col = _column(sub_df, site_column, SITE_NAMES if detect else (), where, "site")
    if site_col is not None:
        sites = pd.array(
            [UNKNOWN_SITE if _missing(v) else str(v).strip() for v in df[site_col]],
            dtype="string",
        )
        sources["site"] = f"{where}: column {site_col}"
    elif detect and (
        _lookup(sub_df.columns, BRATS2019_ID_NAMES) or _lookup(sub_df.columns, TCGA_ID_NAMES)
    ):
        sites = sites_from_name_mapping(sub_df).array
        sources["site"] = f"{where}: BraTS 2019 / TCGA ids"
    else:
        sites = pd.array([pd.NA] * len(df), dtype="string")
        sources["site"] = "not given"

    out = pd.DataFrame(
        {
            "subject_id": pd.array(subjects, dtype="string"),
            "timepoint": timepoints,
            "site": sites,
        },
        index=index,
    )
    check_cohort(out, where)
    out.attrs["sources"] = sources
    logger.info(
        "%s: cohort columns for %d scan(s) of %d subject(s) (%s)",
        where,
        len(out),
        out["subject_id"].nunique(),
        "; ".join(f"{k} from {v}" for k, v in sources.items()),
    )
    return out


def default_cohort(case_ids: Sequence[str]) -> pd.DataFrame:
    """Cohort columns of single scans: subject = case id, no time point, no site."""
    index = pd.Index([str(c) for c in case_ids], name="case_id")
    return pd.DataFrame(
        {
            "subject_id": pd.array(list(index), dtype="string"),
            "timepoint": np.full(len(index), np.nan),
            "site": pd.array([pd.NA] * len(index), dtype="string"),
        },
        index=index,
    )


def check_cohort(cohort: pd.DataFrame, where: str = "cohort") -> None:
    """Raise :class:`CohortError` when a subject has two scans at the same time point."""
    known = cohort[cohort["timepoint"].notna()]
    dup = known[known.duplicated(["subject_id", "timepoint"], keep=False)]
    if len(dup):
        subject = dup["subject_id"].iloc[0]
        rows = dup[dup["subject_id"] == subject]
        raise CohortError(
            f"{where}: subject {subject!r} has several scans at time point "
            f"{rows['timepoint'].iloc[0]:g} ({', '.join(map(str, rows.index))}); "
            "give each scan of a subject its own time point"
        )
