"""Design building: features + clinical table + covariates -> one design matrix.

One encoder for every endpoint (:class:`CovariateEncoder`):

- numeric covariates enter as they are; missing values stay NaN (imputed inside each training
  fold by the model pipeline's median imputer) and a ``{name}_missing`` 0/1 indicator is added
  when the cohort has any;
- categorical covariates become one-hot columns ``{name}_{level}`` for every level except a
  reference level (the first level in sorted order, numbers numerically, or
  ``name:categorical:REF``; the BraTS resection keeps STR as reference, so its column is
  ``resection_GTR`` as before); a missing value scores 0 on every level column and 1 on
  ``{name}_missing``.

Types are inferred (a column is numeric when at least 90 % of its known values are numbers and
it has more than two distinct values, or it is 0/1), and ``name:numeric`` /
``name:categorical`` forces a type. Covariates are always forced into every model.

Example
-------
>>> specs = parse_covariates("age,idh:categorical,kps")
>>> design = build_design(clinical, features, specs, endpoint="survival")    # doctest: +SKIP
>>> design.X.columns.tolist()[:4]                                            # doctest: +SKIP
['age', 'idh_wildtype', 'kps', ...]
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsurv.errors import ClinicalTableError, ConfigError

log = logging.getLogger(__name__)

NUMERIC = "numeric"
CATEGORICAL = "categorical"
#: Reference levels used when the column is known and none is given.
DEFAULT_REFERENCE: dict[str, str] = {"resection": "STR"}
_MISSING = frozenset({"", "na", "n/a", "nan", "none", "unknown", "null", "?", "<na>"})

#: A step applied to the feature table before anything else (e.g. a robustness filter); it
#: returns the table with the columns to keep. Runs once, before any in-fold step.
FeatureFilter = Callable[[pd.DataFrame], pd.DataFrame]


@dataclass(frozen=True)
class CovariateSpec:
    """A requested covariate: column name, forced type (or None: inferred), reference level."""

    name: str
    kind: str | None = None
    reference: str | None = None

    def text(self) -> str:
        """The spec as written on the command line."""
        out = self.name
        if self.kind:
            out += f":{self.kind}"
        if self.reference:
            out += f":{self.reference}"
        return out


def parse_covariates(value: str | Sequence[str | CovariateSpec] | None) -> list[CovariateSpec]:
    """``"age,idh:categorical,kps:numeric"`` (or a list of such items) -> specs.

    Raises
    ------
    ConfigError
        An unknown type after the colon, or a name given twice.
    """
    if value is None:
        return []
    items: list[Any] = value.split(",") if isinstance(value, str) else list(value)
    out: list[CovariateSpec] = []
    for item in items:
        if isinstance(item, CovariateSpec):
            out.append(item)
            continue
        text = str(item).strip()
        if not text:
            continue
        parts = [p.strip() for p in text.split(":")]
        name, kind, ref = parts[0], None, None
        if len(parts) > 1 and parts[1]:
            kind = parts[1].lower()
            if kind in ("cat", "category"):
                kind = CATEGORICAL
            if kind in ("num", "continuous"):
                kind = NUMERIC
            if kind not in (NUMERIC, CATEGORICAL):
                raise ConfigError(
                    f"--covariates {text!r}: type must be numeric or categorical, got {parts[1]!r}"
                )
        if len(parts) > 2 and parts[2]:
            if kind != CATEGORICAL:
                raise ConfigError(f"--covariates {text!r}: a reference level needs :categorical")
            ref = parts[2]
        out.append(CovariateSpec(name, kind, ref))
    names = [s.name.lower() for s in out]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"--covariates: {dup} given more than once")
    return out


def _is_missing(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip().str.lower()
    return values.isna() | text.isin(_MISSING).fillna(True)


def infer_kind(values: pd.Series) -> str:
    """``numeric`` or ``categorical`` for a clinical column (see the module docstring)."""
    if pd.api.types.is_bool_dtype(values):
        return CATEGORICAL
    known = values[~_is_missing(values)]
    if known.empty:
        return NUMERIC
    numbers = pd.to_numeric(known, errors="coerce")
    if numbers.notna().sum() < 0.9 * len(known):
        return CATEGORICAL
    distinct = set(numbers.dropna().unique().tolist())
    if len(distinct) <= 2 and not distinct <= {0.0, 1.0}:
        return CATEGORICAL
    return NUMERIC


def _level_text(v: Any) -> str:
    """A level as text; whole numbers without decimals (``60.0`` and ``60`` are one level)."""
    text = str(v).strip()
    try:
        f = float(text)
    except ValueError:
        return text
    return str(int(f)) if f.is_integer() else text


@dataclass
class EncodedCovariate:
    """How one covariate was encoded: its type, levels, reference and output columns."""

    name: str
    source: str  # the column of the clinical table
    kind: str
    inferred: bool
    levels: list[str] = field(default_factory=list)
    reference: str | None = None
    missing_indicator: bool = False
    columns: list[str] = field(default_factory=list)
    n_missing: int = 0

    def describe(self) -> str:
        """One line for the terminal and the report."""
        how = "inferred" if self.inferred else "forced"
        text = f"{self.name}: {self.kind} ({how})"
        if self.kind == CATEGORICAL:
            text += f", levels {self.levels}, reference {self.reference}"
        if self.n_missing:
            text += f", {self.n_missing} missing (imputed in-fold, indicator {self.name}_missing)"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (model.json)."""
        return {
            "name": self.name,
            "source": self.source,
            "type": self.kind,
            "inferred": self.inferred,
            "levels": self.levels,
            "reference": self.reference,
            "missing_indicator": self.missing_indicator,
            "columns": self.columns,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EncodedCovariate:
        """Inverse of :meth:`to_dict`."""
        return cls(
            name=d["name"],
            source=d.get("source", d["name"]),
            kind=d["type"],
            inferred=bool(d.get("inferred", True)),
            levels=list(d.get("levels", [])),
            reference=d.get("reference"),
            missing_indicator=bool(d.get("missing_indicator", False)),
            columns=list(d.get("columns", [])),
        )


def _sorted_levels(levels: set[str]) -> list[str]:
    """Numbers in numeric order (``70 < 100``), text alphabetically."""
    try:
        return sorted(levels, key=float)
    except ValueError:
        return sorted(levels)


def _find(table: pd.DataFrame, name: str) -> str | None:
    lower = {str(c).lower(): c for c in table.columns}
    return lower.get(name.lower())


class CovariateEncoder:
    """Fixes types, levels and output columns on one cohort; encodes any table the same way.

    ``fit`` learns no outcome information (types and level sets only), so it is fitted once on
    the study cohort; imputation of the NaNs it leaves happens in-fold in the model pipelines.
    """

    def __init__(self, specs: Sequence[CovariateSpec] = ()) -> None:
        self.specs = list(specs)
        self.covariates: list[EncodedCovariate] = []

    @property
    def columns(self) -> list[str]:
        """Output columns in order."""
        return [c for cov in self.covariates for c in cov.columns]

    def fit(self, table: pd.DataFrame, source: str = "the clinical table") -> CovariateEncoder:
        self.covariates = []
        for spec in self.specs:
            col = _find(table, spec.name)
            if col is None:
                raise ConfigError(
                    f"covariate {spec.name!r} is not a column of {source}; choose from "
                    f"{[c for c in table.columns if c not in ('time', 'event')]}"
                )
            values = table[col]
            kind = spec.kind or infer_kind(values)
            missing = _is_missing(values)
            cov = EncodedCovariate(
                name=spec.name,
                source=str(col),
                kind=kind,
                inferred=spec.kind is None,
                n_missing=int(missing.sum()),
            )
            if kind == NUMERIC:
                numbers = pd.to_numeric(values.where(~missing), errors="coerce")
                bad = values[numbers.isna() & ~missing]
                if len(bad):
                    raise ClinicalTableError(
                        f"{source}: covariate {spec.name!r} forced numeric but case "
                        f"{bad.index[0]} has {bad.iloc[0]!r}; use {spec.name}:categorical"
                    )
                cov.columns = [spec.name]
            else:
                levels = _sorted_levels({_level_text(v) for v in values[~missing]})
                if not levels:
                    raise ClinicalTableError(f"{source}: covariate {spec.name!r} has no values")
                ref = spec.reference or DEFAULT_REFERENCE.get(spec.name.lower())
                if ref is None or ref not in levels:
                    if spec.reference:
                        raise ConfigError(
                            f"--covariates {spec.text()}: reference {spec.reference!r} is not a "
                            f"level of {spec.name} ({levels})"
                        )
                    ref = levels[0]
                cov.levels, cov.reference = levels, ref
                cov.columns = [f"{spec.name}_{lv}" for lv in levels if lv != ref]
            if cov.n_missing:
                cov.missing_indicator = True
                cov.columns.append(f"{spec.name}_missing")
            self.covariates.append(cov)
        return self

    def unseen_levels(self, table: pd.DataFrame) -> dict[str, list[str]]:
        """Per categorical covariate, the levels of ``table`` never seen when fitting."""
        out: dict[str, list[str]] = {}
        for cov in self.covariates:
            col = _find(table, cov.name) or _find(table, cov.source)
            if col is None or cov.kind != CATEGORICAL:
                continue
            vals = table[col][~_is_missing(table[col])]
            new = sorted({_level_text(v) for v in vals} - set(cov.levels))
            if new:
                out[cov.name] = new
        return out

    def transform(self, table: pd.DataFrame, source: str = "the clinical table") -> pd.DataFrame:
        """Encode ``table`` (indexed by case id); unseen levels score 0 on every level column."""
        out = pd.DataFrame(index=table.index)
        for cov in self.covariates:
            col = _find(table, cov.name) or _find(table, cov.source)
            if col is None:
                raise ConfigError(
                    f"covariate {cov.name!r} is not a column of {source}; it has "
                    f"{list(table.columns)}"
                )
            values = table[col]
            missing = _is_missing(values)
            if cov.kind == NUMERIC:
                out[cov.name] = pd.to_numeric(values.where(~missing), errors="coerce").astype(float)
            else:
                text = values.map(lambda v: _level_text(v) if not pd.isna(v) else "")
                for lv in cov.levels:
                    if lv != cov.reference:
                        out[f"{cov.name}_{lv}"] = ((text == lv) & ~missing).astype(float)
            if cov.missing_indicator:
                out[f"{cov.name}_missing"] = missing.astype(float)
        return out[self.columns] if self.covariates else out

    def to_list(self) -> list[dict[str, Any]]:
        return [c.to_dict() for c in self.covariates]

    @classmethod
    def from_list(cls, items: Sequence[dict[str, Any]]) -> CovariateEncoder:
        enc = cls([CovariateSpec(d["name"], d["type"], d.get("reference")) for d in items])
        enc.covariates = [EncodedCovariate.from_dict(d) for d in items]
        return enc


# ------------------------------------------------------------------------------------ reading


def read_features(path: str | Path) -> pd.DataFrame:
    """A features table (CSV, TSV or Parquet) as numeric columns indexed by ``case_id``.

    Non-numeric and ``diagnostics_*`` columns are left out (logged). See
    :func:`radsurv.evaluation.classify.read_feature_table`.
    """
    from radsurv.evaluation.classify import read_feature_table

    return read_feature_table(path)


def features_settings_hash(path: str | Path) -> str | None:
    """The extraction settings hash of ``<features>.provenance.json`` beside ``path``, if any."""
    import json

    from radsurv.features.runner import sidecar_paths

    prov = sidecar_paths(Path(path))[1]
    if not prov.is_file():
        return None
    try:
        return json.loads(prov.read_text()).get("settings_hash")
    except (OSError, ValueError):
        log.warning("%s: unreadable provenance file; no settings hash recorded", prov)
        return None


_TIME_NAMES = ("survival_days", "time", "os_days", "os", "survival", "days", "os_time")
_EVENT_NAMES = ("event", "status", "death", "dead", "os_event", "vital_status", "censor_death")


#: Column names that mark a BraTS survival table (parsed as :func:`read_survival_table` does).
BRATS_RESECTION_COLUMNS: tuple[str, ...] = ("extent_of_resection", "resectionstatus")
#: Id column names of BraTS tables (a prediction table with one gets ``submission.csv``).
BRATS_ID_COLUMNS: tuple[str, ...] = ("brats20id", "bratsid", "brats_2020_subject_id")


def _is_brats_form(columns: Sequence[str]) -> bool:
    low = {str(c).strip().lower() for c in columns}
    return "age" in low and any(c in low for c in BRATS_RESECTION_COLUMNS)


def read_clinical(
    path: str | Path,
    *,
    id_column: str | None = None,
    time_column: str | None = None,
    event_column: str | None = None,
) -> pd.DataFrame:
    """Read any clinical CSV: an id column, optionally time and event, any other columns.

    A BraTS form (``Brats20ID,Age,Survival_days,Extent_of_Resection`` or the validation form
    ``BraTS20ID,Age,ResectionStatus``: an ``Age`` and a BraTS resection column) is read exactly as
    :func:`radsurv.clinical.read_survival_table` reads it (``ALIVE (N days later)``, ``NA``
    resection), plus any other columns it has. Other tables: the id column is the first of
    :data:`radsurv.clinical.ID_COLUMNS` present (or the first column), time and event columns
    are found by name (``time``/``Survival_days``/``os_days``..., ``event``/``status``/
    ``death``...) or given; every other column is kept as read (covariates choose from them).

    Returns
    -------
    pandas.DataFrame
        Indexed by ``case_id`` in file order; ``time`` (days, NaN unknown) and ``event``
        (nullable boolean) when the table has them; ``attrs["brats_form"]``,
        ``attrs["id_column"]`` and ``attrs["source"]`` describe where it came from.
    """
    from radsurv.clinical import (
        ID_COLUMNS,
        _ids,
        _parse_event,
        _parse_survival,
        _read_csv,
        read_survival_table,
    )

    path = Path(path)
    raw = _read_csv(path)
    lower = {c.lower(): c for c in raw.columns}
    id_col = id_column or next((lower[c] for c in ID_COLUMNS if c in lower), raw.columns[0])
    if id_col not in raw.columns:
        raise ClinicalTableError(f"{path}: no id column {id_col!r}; it has {list(raw.columns)}")
    brats = _is_brats_form(raw.columns) and time_column is None and event_column is None
    if brats:
        table = read_survival_table(path)
        used = {
            c
            for c in raw.columns
            if c.lower()
            in {"age", "extent_of_resection", "resectionstatus", "resection", id_col.lower()}
            or c.lower() in _TIME_NAMES
            or c.lower() in ("event", "status", "death")
        }
        for c in raw.columns:
            if c not in used and c not in table.columns:
                vals = raw[c].where(~raw[c].str.lower().isin(_MISSING))
                table[c] = pd.array(vals.to_numpy(), dtype="string")
    else:
        index = _ids(raw, id_col, path)
        table = pd.DataFrame(index=index)
        t_col = time_column or next((lower[c] for c in _TIME_NAMES if c in lower), None)
        e_col = event_column or next((lower[c] for c in _EVENT_NAMES if c in lower), None)
        for given in (time_column, event_column):
            if given is not None and given not in raw.columns:
                raise ClinicalTableError(
                    f"{path}: no column {given!r}; the table has {list(raw.columns)}"
                )
        if t_col is not None:
            time, event = _parse_survival(raw[t_col], t_col, path)
            table["time"] = time
            if e_col is not None:
                event = _parse_event(raw[e_col], e_col, path)
            else:
                log.warning(
                    "%s: no event column (event/status/death/...): every time in %s counts as "
                    "a death unless written 'ALIVE (N days later)'; pass --event-column",
                    path,
                    t_col,
                )
            ev = pd.array(event, dtype="boolean")
            table["event"] = ev.astype(bool) if not ev.isna().any() else ev
        for c in raw.columns:
            if c in (id_col, t_col, e_col):
                continue
            vals = raw[c].where(~raw[c].str.lower().isin(_MISSING))
            col = pd.Series(vals.to_numpy(), index=index)
            num = pd.to_numeric(col, errors="coerce")
            if col.notna().any() and num.notna().sum() == col.notna().sum():
                table[c] = num.astype(float)
            else:
                table[c] = pd.array(col.to_numpy(), dtype="string")
    table.attrs.update(
        brats_form=brats or id_col.lower() in BRATS_ID_COLUMNS, id_column=id_col, source=str(path)
    )
    return table


def read_manifest_clinical(manifest: str | Path) -> pd.DataFrame:
    """The clinical columns of a ``data_manifest.csv`` (age, time, event, resection, ...)."""
    from radsurv.data.manifest import Manifest

    table = Manifest.read(manifest).clinical()
    for col in ("age", "time"):
        if col in table.columns:
            table[col] = pd.to_numeric(table[col], errors="coerce")
    if "resection" in table.columns:
        res = table["resection"].astype("string").str.strip().str.upper()
        table["resection"] = res.where(res.isin(["GTR", "STR"]))
    table.attrs.update(brats_form=False, id_column="case_id", source=str(manifest))
    return table


# ------------------------------------------------------------------------------------ design


@dataclass
class Design:
    """The design matrix of a study and its bookkeeping.

    Attributes
    ----------
    X
        Covariate columns (encoded) then feature columns, indexed by case id.
    clinical
        The clinical rows of the cases in ``X`` (same order), for targets and summaries.
    covariate_columns, feature_columns
        Column names of ``X`` by origin; covariates are forced into every model.
    encoder
        The fitted :class:`CovariateEncoder` (saved with locked models).
    notes
        What was left out or changed on the way, one line each (report warnings).
    cohort
        Counts for the report (n, joins, ...); endpoints add theirs.
    baseline_columns
        Encoded columns available to baselines even when not requested (e.g. ``age``).
    """

    X: pd.DataFrame
    clinical: pd.DataFrame
    covariate_columns: list[str]
    feature_columns: list[str]
    encoder: CovariateEncoder
    notes: list[str] = field(default_factory=list)
    cohort: dict[str, Any] = field(default_factory=dict)
    baseline_columns: dict[str, list[str]] = field(default_factory=dict)
    baseline_encoder: CovariateEncoder | None = None


def build_design(
    clinical: pd.DataFrame | None,
    features: pd.DataFrame | None,
    covariates: Sequence[CovariateSpec] = (),
    *,
    baseline_covariates: Sequence[CovariateSpec] = (),
    feature_filter: FeatureFilter | None = None,
    keep: pd.Series | None = None,
    clinical_name: str = "clinical",
    source_name: str | None = None,
    features_name: str = "features",
    how: str = "inner",
) -> Design:
    """Join features and clinical table, encode covariates; the one place both endpoints use.

    Parameters
    ----------
    clinical
        Indexed by case id (from :func:`read_clinical`, a manifest, or a label table joined
        with covariates). Rows are the candidate cases (targets are checked by the endpoint).
    features
        Numeric feature table indexed by case id, or None (covariates only).
    covariates
        Requested covariates (always forced into every model).
    baseline_covariates
        Extra covariates the baselines need (e.g. ``age`` for the age baseline) when present
        in the table; encoded too but not given to the models unless requested.
    feature_filter
        Applied to the feature table before the join and before any in-fold step (the place
        for a robustness filter); must return a subset of the columns.
    keep
        Boolean mask over ``clinical`` rows (e.g. ``--gtr-only``); rows outside are left out.
    clinical_name, features_name
        Names of both sides in join notes.
    source_name
        Where the covariates come from (a file name), for error messages.
    how
        ``inner`` (cases in both) or ``left`` (every clinical row; features NaN, imputed).
    """
    from radsurv.clinical import join_tables

    notes: list[str] = []
    cohort: dict[str, Any] = {}
    if clinical is None:
        if features is None:
            raise ConfigError("nothing to model: give features and/or a clinical table")
        clinical = pd.DataFrame(index=features.index)
    clin = clinical
    if keep is not None:
        clin = clin[keep.reindex(clin.index).fillna(False).astype(bool)]
    feat_cols: list[str] = []
    if features is not None:
        if feature_filter is not None:
            before = features.shape[1]
            features = feature_filter(features)
            notes.append(f"feature filter kept {features.shape[1]} of {before} feature columns")
        numeric = features.select_dtypes(include=[np.number, "bool"]).astype(float)
        dropped = [c for c in features.columns if c not in numeric.columns]
        if dropped:
            notes.append(
                f"{len(dropped)} non-numeric feature column(s) ignored, e.g. {dropped[:3]}"
            )
        clash = [c for c in numeric.columns if _find(clin, str(c)) is not None]
        spec_names = {s.name.lower() for s in covariates}
        # a covariate of the same name as a feature column is taken from the clinical table
        numeric = numeric.drop(columns=[c for c in clash if str(c).lower() in spec_names])
        joined = join_tables(
            clin[[]], numeric, how=how, left_name=clinical_name, right_name=features_name
        )
        if joined.only_left or joined.only_right:
            notes.append(f"join {clinical_name} + {features_name}: " + joined.summary())
        cohort["only_clinical"] = len(joined.only_left) if how == "inner" else 0
        cohort["only_features"] = len(joined.only_right)
        cohort["join"] = joined.summary()
        fx = joined.table
        clin = clin.loc[fx.index.astype(str)] if len(fx) else clin.iloc[:0]
        clin.index = fx.index
        feat_cols = [str(c) for c in numeric.columns]
        fx.columns = [str(c) for c in fx.columns]
    else:
        fx = pd.DataFrame(index=clin.index)
    source = f"the clinical table {source_name}" if source_name else "the clinical table"
    encoder = CovariateEncoder(covariates).fit(clin, source)
    cov = encoder.transform(clin, source)
    extra_specs = [
        s
        for s in baseline_covariates
        if s.name.lower() not in {c.name.lower() for c in covariates}
        and _find(clin, s.name) is not None
    ]
    base_enc = CovariateEncoder(extra_specs).fit(clin, source) if extra_specs else None
    X = cov
    if base_enc is not None:
        X = X.join(base_enc.transform(clin, source))
    X = X.join(fx[[c for c in feat_cols if c not in X.columns]])
    for c in encoder.covariates:
        if c.kind == CATEGORICAL and len(c.levels) < 2:
            notes.append(f"covariate {c.name} has a single level ({c.levels[0]}) in this cohort")
    design = Design(
        X=X,
        clinical=clin,
        covariate_columns=encoder.columns,
        feature_columns=[c for c in feat_cols if c not in encoder.columns],
        encoder=encoder,
        notes=notes,
        cohort=cohort,
        baseline_encoder=base_enc,
    )
    all_enc = list(encoder.covariates) + (base_enc.covariates if base_enc else [])
    design.baseline_columns = {c.name.lower(): list(c.columns) for c in all_enc}
    return design


def cohort_summary(design: Design) -> dict[str, Any]:
    """Per covariate: mean/sd/missing (numeric) or level counts (categorical)."""
    out: dict[str, Any] = {}
    encs = list(design.encoder.covariates)
    if design.baseline_encoder is not None:
        encs += design.baseline_encoder.covariates
    for cov in encs:
        col = _find(design.clinical, cov.source)
        if col is None:
            continue
        values = design.clinical[col]
        if cov.kind == NUMERIC:
            num = pd.to_numeric(values.where(~_is_missing(values)), errors="coerce")
            out[cov.name] = {
                "type": NUMERIC,
                "mean": float(num.mean()) if num.notna().any() else math.nan,
                "sd": float(num.std()) if num.notna().sum() > 1 else math.nan,
                "min": float(num.min()) if num.notna().any() else math.nan,
                "max": float(num.max()) if num.notna().any() else math.nan,
                "missing": int(num.isna().sum()),
            }
        else:
            text = values.where(~_is_missing(values)).map(
                lambda v: _level_text(v) if not pd.isna(v) else "missing"
            )
            out[cov.name] = {
                "type": CATEGORICAL,
                "counts": {str(k): int(v) for k, v in text.value_counts().items()},
            }
    return out
