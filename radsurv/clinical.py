"""Clinical tables: BraTS survival tables, grade mappings, endpoint labels, and id joins.

The BraTS 2020 survival table (``Brats20ID,Age,Survival_days,Extent_of_Resection``, CRLF line
ends) has two quirks that this module keeps, not drops: ``ALIVE (361 days later)`` means the
patient was censored at 361 days, and a literal ``NA`` resection means *unknown*. The
validation-set form (``BraTS20ID,Age,ResectionStatus`` without survival) parses too; its
``time``/``event`` are missing.

Example
-------
>>> table = read_survival_table("survival_info.csv")
>>> table.loc["BraTS20_Training_084", ["time", "event"]].tolist()
[361.0, False]
>>> y = survival_target(table)           # scikit-survival structured array (event, time)
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsurv.errors import ClinicalTableError, ConfigError

log = logging.getLogger(__name__)

#: Accepted spellings (lower case) of each canonical column.
ID_COLUMNS: tuple[str, ...] = (
    "case_id",
    "brats20id",
    "brats_2020_subject_id",
    "bratsid",
    "subject_id",
    "id",
)
AGE_COLUMNS: tuple[str, ...] = ("age",)
SURVIVAL_COLUMNS: tuple[str, ...] = ("survival_days", "survival", "time", "os_days")
EVENT_COLUMNS: tuple[str, ...] = ("event", "status", "death")
RESECTION_COLUMNS: tuple[str, ...] = ("extent_of_resection", "resectionstatus", "resection")

RESECTION_CODES: tuple[str, ...] = ("GTR", "STR")
#: Spellings of an unknown value (kept as <NA>, never a reason to drop the row).
MISSING_TOKENS: frozenset[str] = frozenset({"", "na", "n/a", "nan", "none", "unknown", "null"})
_ALIVE = re.compile(r"^alive\s*\(\s*(\d+(?:\.\d+)?)\s*days?\s*later\s*\)$", re.IGNORECASE)
MAX_AGE = 120.0


def _read_csv(path: Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise ClinicalTableError(f"{path}: clinical table not found")
    try:
        df = pd.read_csv(
            path, dtype=str, keep_default_na=False, skipinitialspace=True, encoding="utf-8-sig"
        )
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise ClinicalTableError(f"{path}: cannot be read as CSV ({exc})") from exc
    df.columns = [str(c).strip() for c in df.columns]
    return df.apply(lambda col: col.str.strip())


def _find_column(
    df: pd.DataFrame, names: Sequence[str], path: Path, what: str, required: bool = True
) -> str | None:
    lower = {c.lower(): c for c in df.columns}
    for name in names:
        if name in lower:
            return lower[name]
    if required:
        raise ClinicalTableError(
            f"{path}: missing column {what} (accepted names: {', '.join(names)}); "
            f"the table has {list(df.columns)}"
        )
    return None


def _row(i: int) -> str:
    """Human row reference: data row i is line i + 2 of the file (1-based, after the header)."""
    return f"row {i + 1} (line {i + 2})"


def _ids(df: pd.DataFrame, col: str, path: Path) -> pd.Index:
    ids = df[col]
    for i, v in enumerate(ids):
        if v == "" or v.lower() in MISSING_TOKENS:
            raise ClinicalTableError(f"{path}: {_row(i)}, column {col}: empty case id")
    dup = ids[ids.duplicated(keep=False)]
    if len(dup):
        first = dup.iloc[0]
        rows = [_row(i) for i in np.flatnonzero(ids.to_numpy() == first)]
        raise ClinicalTableError(
            f"{path}: column {col}: duplicate case id {first!r} at {', '.join(rows)} "
            f"({dup.nunique()} duplicated id(s)); keep one row per case"
        )
    return pd.Index(ids, name="case_id")


def _parse_age(values: pd.Series, col: str, path: Path) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v.lower() in MISSING_TOKENS:
            continue
        try:
            age = float(v)
        except ValueError:
            raise ClinicalTableError(
                f"{path}: {_row(i)}, column {col}: age {v!r} is not a number"
            ) from None
        if not 0.0 <= age <= MAX_AGE:
            raise ClinicalTableError(
                f"{path}: {_row(i)}, column {col}: age {age:g} outside 0-{MAX_AGE:g} years"
            )
        out[i] = age
    return out


def _parse_survival(values: pd.Series, col: str, path: Path) -> tuple[np.ndarray, list]:
    time = np.full(len(values), np.nan)
    event: list = [pd.NA] * len(values)
    for i, v in enumerate(values):
        if v.lower() in MISSING_TOKENS:
            continue
        m = _ALIVE.match(v)
        if m:
            time[i], event[i] = float(m.group(1)), False
            continue
        try:
            days = float(v)
        except ValueError:
            raise ClinicalTableError(
                f"{path}: {_row(i)}, column {col}: survival {v!r} is neither a number of days "
                "nor 'ALIVE (N days later)'"
            ) from None
        if not np.isfinite(days) or days < 0:
            raise ClinicalTableError(
                f"{path}: {_row(i)}, column {col}: survival {v!r} days must be >= 0"
            )
        time[i], event[i] = days, True
    return time, event


_TRUE = {"1", "true", "yes", "dead", "deceased", "1.0"}
_FALSE = {"0", "false", "no", "alive", "censored", "0.0"}


def _parse_event(values: pd.Series, col: str, path: Path) -> list:
    out: list = []
    for i, v in enumerate(values):
        low = v.lower()
        if low in MISSING_TOKENS:
            out.append(pd.NA)
        elif low in _TRUE:
            out.append(True)
        elif low in _FALSE:
            out.append(False)
        else:
            raise ClinicalTableError(
                f"{path}: {_row(i)}, column {col}: event {v!r} is not 1/0/true/false"
            )
    return out


def _parse_resection(values: pd.Series, col: str, path: Path) -> list:
    out: list = []
    for i, v in enumerate(values):
        up = v.upper()
        if v.lower() in MISSING_TOKENS:
            out.append(pd.NA)
        elif up in RESECTION_CODES:
            out.append(up)
        else:
            raise ClinicalTableError(
                f"{path}: {_row(i)}, column {col}: unknown resection code {v!r}; "
                f"expected {', '.join(RESECTION_CODES)} or NA (unknown)"
            )
    return out


def read_survival_table(path: str | Path, *, return_target: bool = False):
    """Read a BraTS-style survival table.

    Parameters
    ----------
    path
        CSV with a case id (``Brats20ID``/``BraTS20ID``/``case_id``), ``Age``, a resection
        column (``Extent_of_Resection``/``ResectionStatus``/``resection``) and optionally
        ``Survival_days`` (or ``time`` plus an ``event`` column).
    return_target
        Also return :func:`survival_target` of the table (all rows must have a survival).

    Returns
    -------
    pandas.DataFrame or (pandas.DataFrame, numpy structured array)
        Indexed by ``case_id`` (file order), columns ``age`` (float years), ``time`` (float
        days, NaN when unknown), ``event`` (bool; nullable ``boolean`` when some are unknown)
        and ``resection`` (``GTR``, ``STR`` or <NA> = unknown).

    Raises
    ------
    ClinicalTableError
        Missing columns, duplicate or empty ids, non-numeric or negative days, ages outside
        0-120, unknown resection codes: the message names file, row and column.
    """
    path = Path(path)
    df = _read_csv(path)
    id_col = _find_column(df, ID_COLUMNS, path, "case id")
    age_col = _find_column(df, AGE_COLUMNS, path, "Age")
    res_col = _find_column(df, RESECTION_COLUMNS, path, "Extent_of_Resection")
    surv_col = _find_column(df, SURVIVAL_COLUMNS, path, "Survival_days", required=False)
    event_col = _find_column(df, EVENT_COLUMNS, path, "event", required=False)
    index = _ids(df, id_col, path)
    out = pd.DataFrame(index=index)
    out["age"] = _parse_age(df[age_col], age_col, path)
    if surv_col is not None:
        time, event = _parse_survival(df[surv_col], surv_col, path)
        if event_col is not None:  # an explicit event column overrides ALIVE/number inference
            event = _parse_event(df[event_col], event_col, path)
    else:
        time, event = np.full(len(df), np.nan), [pd.NA] * len(df)
        log.info("%s: no survival column (validation-set form): time/event are missing", path)
    out["time"] = time
    ev = pd.array(event, dtype="boolean")
    out["event"] = ev.astype(bool) if not ev.isna().any() else ev
    out["resection"] = pd.array(_parse_resection(df[res_col], res_col, path), dtype="string")
    n_unknown = int(out["resection"].isna().sum())
    log.info(
        "%s: %d cases, %d events, %d censored, %d unknown resection",
        path,
        len(out),
        int((out["event"] == True).sum()),  # noqa: E712  (nullable boolean)
        int((out["event"] == False).sum()),  # noqa: E712
        n_unknown,
    )
    if return_target:
        return out, survival_target(out)
    return out


def survival_target(table: pd.DataFrame, *, event: str = "event", time: str = "time"):
    """The scikit-survival structured array ``Surv.from_arrays(event, time)`` of a table.

    Raises
    ------
    ClinicalTableError
        When a row has no time or event (e.g. the validation-set form), naming the cases, or
        when the columns are missing.
    """
    from sksurv.util import Surv

    for col in (event, time):
        if col not in table.columns:
            raise ClinicalTableError(
                f"survival target: column {col!r} missing; the table has {list(table.columns)}"
            )
    ev = pd.array(table[event], dtype="boolean")
    t = pd.to_numeric(table[time], errors="coerce").to_numpy(dtype=float)
    bad = np.asarray(ev.isna()) | ~np.isfinite(t)
    if bad.any():
        ids = list(table.index[bad][:5])
        raise ClinicalTableError(
            f"survival target: {int(bad.sum())} case(s) without survival time/event, e.g. "
            f"{ids}; drop them first (table.dropna(subset=['time', 'event']))"
        )
    if (t < 0).any():
        ids = list(table.index[t < 0][:5])
        raise ClinicalTableError(f"survival target: negative times for {ids}")
    return Surv.from_arrays(
        event=np.asarray(ev, dtype=bool), time=t, name_event="event", name_time="time"
    )


def event_and_time(y: Any, error: type[Exception] = ConfigError) -> tuple[np.ndarray, np.ndarray]:
    """``(event bool array, time float array)`` of a scikit-survival structured array.

    The inverse of :func:`survival_target`; ``error`` is the exception raised when ``y`` is not
    a two-field structured array (callers pick the one that fits their layer).
    """
    arr = np.asarray(y)
    if arr.dtype.names is None or len(arr.dtype.names) != 2:
        raise error(
            "survival target must be a structured array (event, time); build it with "
            "radsurv.clinical.survival_target or sksurv.util.Surv.from_arrays"
        )
    ev_name, t_name = arr.dtype.names
    return arr[ev_name].astype(bool), arr[t_name].astype(float)


def read_name_mapping(path: str | Path) -> pd.DataFrame:
    """Read BraTS ``name_mapping.csv``: grade (HGG/LGG) and older ids per BraTS 2020 id.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``case_id`` (``BraTS_2020_subject_ID``), column ``grade`` plus the other id
        columns as given (``NA`` -> <NA>).
    """
    path = Path(path)
    df = _read_csv(path)
    id_col = _find_column(df, ("brats_2020_subject_id", *ID_COLUMNS), path, "BraTS_2020_subject_ID")
    grade_col = _find_column(df, ("grade",), path, "Grade")
    index = _ids(df, id_col, path)
    grades = []
    for i, v in enumerate(df[grade_col]):
        up = v.upper()
        if v.lower() in MISSING_TOKENS:
            grades.append(pd.NA)
        elif up in ("HGG", "LGG"):
            grades.append(up)
        else:
            raise ClinicalTableError(
                f"{path}: {_row(i)}, column {grade_col}: grade {v!r} is not HGG or LGG"
            )
    out = pd.DataFrame({"grade": pd.array(grades, dtype="string")}, index=index)
    for col in df.columns:
        if col not in (id_col, grade_col):
            vals = df[col].where(~df[col].str.lower().isin(MISSING_TOKENS))
            out[col] = pd.array(vals.to_numpy(), dtype="string")
    return out


def read_label_table(path: str | Path, label_column: str | None = None) -> pd.Series:
    """Read an endpoint label table (e.g. ``pseudoprogression.csv``: ``case_id,label``).

    Returns
    -------
    pandas.Series
        Labels (strings as given, <NA> when missing) indexed by ``case_id``.
    """
    path = Path(path)
    df = _read_csv(path)
    id_col = _find_column(df, ID_COLUMNS, path, "case id")
    others = [c for c in df.columns if c != id_col]
    if label_column is None:
        if not others:
            raise ClinicalTableError(f"{path}: has a case id column but no label column")
        label_column = "label" if "label" in others else others[0]
    elif label_column not in df.columns:
        raise ClinicalTableError(
            f"{path}: missing column {label_column!r}; the table has {list(df.columns)}"
        )
    index = _ids(df, id_col, path)
    vals = df[label_column].where(~df[label_column].str.lower().isin(MISSING_TOKENS))
    return pd.Series(pd.array(vals.to_numpy(), dtype="string"), index=index, name=label_column)


@dataclass
class JoinResult:
    """The joined table and the ids found on one side only (never dropped silently)."""

    table: pd.DataFrame
    only_left: list[str] = field(default_factory=list)
    only_right: list[str] = field(default_factory=list)
    left_name: str = "left"
    right_name: str = "right"

    def summary(self, examples: int = 5) -> str:
        """One line: matched count, and counts plus examples of unmatched ids per side."""
        parts = [f"{len(self.table)} cases joined"]
        for name, ids in ((self.left_name, self.only_left), (self.right_name, self.only_right)):
            if ids:
                more = "" if len(ids) <= examples else f", ... (+{len(ids) - examples})"
                parts.append(
                    f"{len(ids)} only in {name} ({', '.join(map(str, ids[:examples]))}{more})"
                )
        return "; ".join(parts)


def join_tables(
    left: pd.DataFrame,
    right: pd.DataFrame | pd.Series,
    *,
    how: str = "inner",
    left_name: str = "left",
    right_name: str = "right",
) -> JoinResult:
    """Join two tables on their case-id index, reporting ids present on one side only.

    Parameters
    ----------
    left, right
        Tables indexed by case id (e.g. features and a survival table).
    how
        ``inner`` (matched ids only), ``left``, ``right`` or ``outer``.
    left_name, right_name
        Names used in the log and in :meth:`JoinResult.summary` (e.g. file names).

    Returns
    -------
    JoinResult
        ``table`` plus the sorted ids only in left / only in right. Unmatched ids are logged
        as a warning with counts and examples.
    """
    if how not in ("inner", "left", "right", "outer"):
        raise ClinicalTableError(f"join: how must be inner/left/right/outer, got {how!r}")
    if isinstance(right, pd.Series):
        right = right.to_frame()
    for name, tab in ((left_name, left), (right_name, right)):
        dup = tab.index[tab.index.duplicated()]
        if len(dup):
            raise ClinicalTableError(
                f"join: {name} has duplicate case ids, e.g. {list(dup[:5])}; keep one row each"
            )
    li, ri = left.index.astype(str), right.index.astype(str)
    only_left = sorted(set(li) - set(ri))
    only_right = sorted(set(ri) - set(li))
    l2, r2 = left.copy(), right.copy()
    l2.index, r2.index = li.rename("case_id"), ri.rename("case_id")
    table = l2.join(r2, how=how, rsuffix=f"_{right_name}")
    result = JoinResult(table, only_left, only_right, left_name, right_name)
    if only_left or only_right:
        log.warning("join %s + %s: %s", left_name, right_name, result.summary())
    if table.empty:
        raise ClinicalTableError(
            f"join {left_name} + {right_name}: no case id in common ({result.summary()}); "
            "check that both use the same ids (e.g. BraTS20_Training_001)"
        )
    return result
