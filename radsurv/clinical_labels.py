"""Binary endpoint tables (pseudoprogression, recurrence, grade, any 0/1 outcome) -> 0/1 targets.

A label table has one row per case: a case id column (``case_id``, ``Brats20ID``,
``BraTS_2020_subject_ID``, ``ID``, ...: the names :func:`radsurv.clinical.read_label_table`
accepts, which also rejects empty and duplicate ids) and a label column given as 0/1,
true/false or strings. The positive class is always explicit: either you name it
(``positive="LGG"``) or the vocabulary fixes it (``pseudoprogression``/``PsP`` against
``progression``/``TP``/``recurrence``; ``1``/``true``/``yes`` against ``0``/``false``/``no``).
Missing or unrecognised labels are an error naming the lines, unless ``drop_unknown=True``,
which drops them and reports how many and which.

Example
-------
>>> labels = read_binary_labels("name_mapping.csv", label_column="Grade", positive="LGG")
>>> labels.y.head()  # doctest: +SKIP
case_id
BraTS20_Training_001    0
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from radsurv.errors import ClinicalTableError

logger = logging.getLogger(__name__)

#: Label columns recognised without ``label_column`` (case-insensitive).
LABEL_COLUMNS: tuple[str, ...] = (
    "label",
    "target",
    "outcome",
    "endpoint",
    "class",
    "pseudoprogression",
    "y",
)

#: Values read as missing labels.
MISSING_VALUES: frozenset[str] = frozenset({"", "na", "nan", "none", "null", "n/a", "?"})

_TRUE = ("1", "1.0", "true", "t", "yes", "y")
_FALSE = ("0", "0.0", "false", "f", "no", "n")
_PSP = ("pseudoprogression", "pseudo-progression", "pseudo progression", "psp")
_TP = (
    "progression",
    "true progression",
    "true_progression",
    "true-progression",
    "tp",
    "recurrence",
    "tumour progression",
    "tumor progression",
    "pd",
)

#: Built-in vocabularies: (name, positive spellings, negative spellings, canonical positive,
#: canonical negative).
VOCABULARIES: tuple[tuple[str, tuple[str, ...], tuple[str, ...], str, str], ...] = (
    ("boolean", _TRUE, _FALSE, "1", "0"),
    ("pseudoprogression", _PSP, _TP, "pseudoprogression", "progression"),
)


class LabelTableError(ClinicalTableError):
    """A binary label table has missing columns, duplicate ids or unusable labels."""


@dataclass(frozen=True)
class BinaryLabels:
    """A parsed binary endpoint.

    Attributes
    ----------
    y
        0/1 integers indexed by case id (index name ``case_id``), in file order.
    positive
        The positive class (label 1) as a readable name, e.g. ``pseudoprogression`` or ``LGG``.
    negative
        The negative class (label 0) as a readable name.
    source
        The file the labels came from.
    label_column
        The column used.
    dropped
        Rows left out because their label was missing or unrecognised (only with
        ``drop_unknown=True``): columns ``line`` (1-based line in the file, header = 1),
        ``case_id``, ``value``.
    """

    y: pd.Series
    positive: str
    negative: str
    source: str
    label_column: str
    dropped: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["line", "case_id", "value"])
    )

    @property
    def n(self) -> int:
        """Number of labelled cases."""
        return len(self.y)

    @property
    def positives(self) -> int:
        """Number of positive cases."""
        return int(self.y.sum())

    def summary(self) -> str:
        """One line for logs and reports: counts per class and what was dropped."""
        text = (
            f"{self.source}: {self.n} cases, positive class '{self.positive}' "
            f"(label 1) n={self.positives}, negative class '{self.negative}' "
            f"(label 0) n={self.n - self.positives}, from column '{self.label_column}'"
        )
        if len(self.dropped):
            text += (
                f"; {len(self.dropped)} rows dropped for unknown labels ({_examples(self.dropped)})"
            )
        return text


def _examples(rows: pd.DataFrame, limit: int = 5) -> str:
    items = [f"line {r.line} {r.case_id!s}: {r.value!r}" for r in rows.head(limit).itertuples()]
    more = f" and {len(rows) - limit} more" if len(rows) > limit else ""
    return "; ".join(items) + more


def _norm(value: str) -> str:
    return " ".join(str(value).strip().lower().split())


def _label_column(path: Path, label_column: str | None) -> str:
    """The label column: the one named, or ``label``/``target``/... or the only non-id one."""
    from radsurv.clinical import ID_COLUMNS as CLINICAL_ID_COLUMNS

    if not path.is_file():
        raise LabelTableError(f"{path}: label table not found; check the path.")
    try:
        columns = [str(c).strip() for c in pd.read_csv(path, nrows=0, encoding="utf-8-sig")]
    except (ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise LabelTableError(f"{path}: cannot be read as CSV ({exc})") from exc
    lower = {c.lower(): c for c in columns}
    if label_column is not None:
        if label_column in columns:
            return label_column
        if label_column.strip().lower() in lower:
            return lower[label_column.strip().lower()]
        raise LabelTableError(
            f"{path}: no label column '{label_column}'; the columns are {columns}. "
            "Name one of them with --label-column."
        )
    for cand in LABEL_COLUMNS:
        if cand in lower:
            return lower[cand]
    rest = [c for c in columns if c.lower() not in CLINICAL_ID_COLUMNS]
    if len(rest) != 1:
        raise LabelTableError(
            f"{path}: which column holds the labels? Candidates: {rest}. "
            "Name it with --label-column (e.g. --label-column Grade)."
        )
    return rest[0]


def _vocabulary_of(value: str) -> tuple[set[str], set[str], str, str] | None:
    """The vocabulary side of ``value``: (its spellings, the other side's, names), or None."""
    for _name, p_sp, n_sp, canon_p, canon_n in VOCABULARIES:
        if value in p_sp:
            return set(p_sp), set(n_sp), canon_p, canon_n
        if value in n_sp:
            return set(n_sp), set(p_sp), canon_n, canon_p
    return None


def _choose_mapping(
    spelling: dict[str, str], positive: str | None, negative: str | None, path: Path, column: str
) -> tuple[dict[str, int], str, str]:
    """Map normalised label values onto 0/1; return the mapping and the two class names.

    ``spelling`` maps each distinct normalised label to its first spelling in the file.
    """
    distinct = sorted(spelling)
    if positive is None:
        for _name, p_sp, n_sp, canon_p, canon_n in VOCABULARIES:
            inside = [v for v in distinct if v in p_sp or v in n_sp]
            # a vocabulary applies when most distinct labels belong to it; the rest are unknown
            # labels to report (typos, "unclear"), not a reason to refuse the vocabulary
            if inside and len(inside) >= len(distinct) - len(inside):
                return {v: 1 for v in p_sp} | {v: 0 for v in n_sp}, canon_p, canon_n
        raise LabelTableError(
            f"{path}: cannot tell which label in column '{column}' is the positive class "
            f"(labels there: {[spelling[v] for v in distinct][:10]}). Name it, e.g. "
            f"--positive {spelling[distinct[0]] if distinct else 'VALUE'}."
        )
    pos = _norm(positive)
    vocab = _vocabulary_of(pos)
    pos_set, neg_set = ({pos}, set()) if vocab is None else (vocab[0], vocab[1])
    neg_name = "" if vocab is None else vocab[3]
    if not any(v in pos_set for v in distinct):
        raise LabelTableError(
            f"{path}: positive class '{positive}' does not occur in column '{column}' "
            f"(labels there: {[spelling[v] for v in distinct][:10]}). Name one of them."
        )
    if negative is not None:
        neg = _norm(negative)
        other = _vocabulary_of(neg)
        neg_set = other[0] if other is not None and other[0] != pos_set else {neg}
        neg_name = negative
    elif vocab is None:
        others = [v for v in distinct if v != pos]
        if len(others) != 1:
            raise LabelTableError(
                f"{path}: column '{column}' holds labels {[spelling[v] for v in distinct][:10]}; "
                f"with positive class '{positive}' the negative class is ambiguous. Name it "
                "(--negative) and pass --drop-unknown to leave out the other labels."
            )
        neg_set, neg_name = {others[0]}, spelling[others[0]]
    return {v: 0 for v in neg_set} | {v: 1 for v in pos_set}, spelling.get(pos, positive), neg_name


def read_binary_labels(
    path: str | Path,
    *,
    label_column: str | None = None,
    positive: str | None = None,
    negative: str | None = None,
    drop_unknown: bool = False,
) -> BinaryLabels:
    """Read a binary endpoint table into 0/1 labels indexed by case id.

    Parameters
    ----------
    path
        CSV with a case id column and a label column.
    label_column
        Column holding the labels; default: ``label``, ``target``, ``outcome``, ... or the only
        non-id column.
    positive
        The positive class (label 1) as written in the file, case-insensitive (e.g. ``LGG``).
        Default: fixed by the vocabulary (``pseudoprogression``, ``1``/``true``); labels outside
        a known vocabulary need it.
    negative
        The negative class; default: every other label (which must be a single value unless a
        vocabulary such as ``progression``/``TP``/``recurrence`` covers them all).
    drop_unknown
        Drop rows with missing or unrecognised labels (reported in ``dropped`` and the log)
        instead of raising.

    Returns
    -------
    BinaryLabels

    Raises
    ------
    LabelTableError
        Missing columns, missing or duplicate ids, missing/unknown labels (without
        ``drop_unknown``), a single class, or an ambiguous positive class.
    """
    from radsurv.clinical import read_label_table

    path = Path(path)
    lab_col = _label_column(path, label_column)
    raw = read_label_table(path, label_column=lab_col)  # validates ids (empty, duplicates)
    ids = pd.Series(raw.index.astype(str), index=raw.index)
    lines = pd.Series(np.arange(len(raw)) + 2, index=raw.index)  # header is line 1
    raw = raw.fillna("").astype(str).str.strip()
    normed = raw.map(_norm)
    missing = normed.isin(MISSING_VALUES)
    spelling: dict[str, str] = {}
    for norm_value, raw_value in zip(normed[~missing], raw[~missing], strict=True):
        spelling.setdefault(norm_value, str(raw_value).strip())
    mapping, pos_name, neg_name = _choose_mapping(spelling, positive, negative, path, lab_col)
    coded = normed.map(mapping)
    unknown = coded.isna()
    shown = raw.where(~missing, "<missing>")
    dropped = pd.DataFrame(
        {"line": lines[unknown], "case_id": ids[unknown], "value": shown[unknown]}
    )
    if unknown.any():
        what = (
            f"{int(unknown.sum())} of {len(raw)} rows of {path} have a missing or unrecognised "
            f"label in column '{lab_col}' ({_examples(dropped)})"
        )
        if not drop_unknown:
            raise LabelTableError(
                f"{what}. Accepted: positive {sorted(k for k, v in mapping.items() if v == 1)}, "
                f"negative {sorted(k for k, v in mapping.items() if v == 0)}. Fix these rows or "
                "pass --drop-unknown to leave them out."
            )
        logger.warning("%s; dropped (--drop-unknown)", what)
    y = pd.Series(
        coded[~unknown].astype(int).to_numpy(), index=pd.Index(ids[~unknown], name="case_id")
    )
    y.name = "label"
    labels = BinaryLabels(
        y=y,
        positive=str(pos_name),
        negative=str(neg_name),
        source=str(path),
        label_column=lab_col,
        dropped=dropped.reset_index(drop=True),
    )
    if labels.positives == 0 or labels.positives == labels.n:
        raise LabelTableError(
            f"{path}: column '{lab_col}' has a single class after parsing "
            f"({labels.n} cases, {labels.positives} positive '{pos_name}'); a classifier needs "
            "both classes."
        )
    logger.info("labels %s", labels.summary())
    return labels
