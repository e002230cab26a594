"""Fold plans that respect how the cohort was collected: subjects, sites, external validation.

Schemes (``--cv``), for every endpoint:

- ``FOLDSxREPEATS`` (e.g. ``5x5``): repeated K-fold stratified on the endpoint's strata
  (:func:`radsurv.evaluation.cv.make_folds`); when some subject has several rows (scans), the
  folds are grouped by subject (scikit-learn ``StratifiedGroupKFold``, reshuffled per repeat):
  no subject ever sits on both sides of a fold.
- ``site``: leave one site out. Every site with at least ``min_site_size`` cases is the test
  fold once; smaller sites (and the ``unknown`` site) are never test sites but stay in every
  training fold.
- ``site:FOLDSxREPEATS`` (e.g. ``site:5x5``): K-fold grouped by site (scikit-learn
  ``GroupKFold(shuffle=True)``, a new random assignment of sites to folds per repeat): whole
  sites are held out together.
- ``train_sites`` + ``test_sites``: one external-validation split; cases of other sites are
  left out.

The cohort structure is a DataFrame indexed by case id with the columns ``subject_id``,
``site`` and ``timepoint`` (:func:`cohort_columns` reads it from a table).

Example
-------
>>> scheme = parse_scheme("site", min_site_size=10)
>>> plan = plan_folds(scheme, strata, structure, seed=0)     # doctest: +SKIP
>>> check_no_subject_split(plan.folds, structure["subject_id"])  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from radsurv.errors import ConfigError, ModelError
from radsurv.evaluation.cv import Fold, make_folds, merge_small_strata, parse_cv_spec

log = logging.getLogger(__name__)

#: Site label of cases whose site is not known; never a test site of ``--cv site``.
UNKNOWN_SITE = "unknown"


@dataclass(frozen=True)
class CVScheme:
    """A parsed ``--cv`` scheme (see the module docstring)."""

    kind: str  # "kfold", "site", "site-kfold", "external"
    n_splits: int = 5
    n_repeats: int = 1
    min_site_size: int = 10
    train_sites: tuple[str, ...] = ()
    test_sites: tuple[str, ...] = ()
    text: str = ""

    @property
    def by_site(self) -> bool:
        return self.kind != "kfold"


@dataclass
class FoldPlan:
    """The folds of a scheme and what the report says about them."""

    folds: list[Fold]
    n_splits: int
    n_repeats: int
    scheme: CVScheme
    grouped_by: str = ""  # "", "subject", "site"
    test_sites: list[str] = field(default_factory=list)
    training_only_sites: list[str] = field(default_factory=list)
    left_out: int = 0

    def describe(self) -> str:
        s = self.scheme
        if s.kind == "kfold":
            text = f"{self.n_splits} folds x {self.n_repeats} repeats, stratified"
            return text + (", grouped by subject" if self.grouped_by == "subject" else "")
        if s.kind == "site":
            text = f"leave one site out ({len(self.test_sites)} test sites: "
            text += ", ".join(self.test_sites) + ")"
            if self.training_only_sites:
                text += (
                    f"; sites with < {s.min_site_size} cases or unknown stay in training only: "
                    + ", ".join(self.training_only_sites)
                )
            return text
        if s.kind == "site-kfold":
            return (
                f"{self.n_splits} folds x {self.n_repeats} repeats grouped by site "
                "(whole sites held out; sites assigned to folds at random per repeat)"
            )
        return (
            f"external validation: train on {', '.join(s.train_sites)}, test on "
            f"{', '.join(s.test_sites)}" + (f" ({self.left_out} other cases left out)")
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "scheme": self.scheme.text,
            "kind": self.scheme.kind,
            "description": self.describe(),
            "grouped_by": self.grouped_by or None,
            "test_sites": list(self.test_sites),
            "training_only_sites": list(self.training_only_sites),
            "min_site_size": self.scheme.min_site_size,
            "train_sites": list(self.scheme.train_sites),
            "left_out": self.left_out,
        }


def _site_list(value: str | Sequence[str] | None) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else list(value)
    return tuple(p.strip() for v in items for p in str(v).split(",") if p.strip())


def parse_scheme(
    cv: str = "5x5",
    *,
    min_site_size: int = 10,
    train_sites: str | Sequence[str] | None = None,
    test_sites: str | Sequence[str] | None = None,
) -> CVScheme:
    """Parse ``--cv`` (``5x5``, ``site``, ``site:5x5``) and ``--train-sites/--test-sites``."""
    train, test = _site_list(train_sites), _site_list(test_sites)
    if train or test:
        if not (train and test):
            raise ConfigError("external validation needs both --train-sites and --test-sites")
        both = sorted(set(train) & set(test))
        if both:
            raise ConfigError(f"sites {both} are in both --train-sites and --test-sites")
        text = f"train {','.join(train)} / test {','.join(test)}"
        return CVScheme("external", 1, 1, min_site_size, train, test, text)
    spec = str(cv).strip()
    if min_site_size < 1:
        raise ConfigError(f"--min-site-size must be >= 1, got {min_site_size}")
    if spec.lower() == "site":
        return CVScheme("site", 0, 1, min_site_size, text="site")
    if spec.lower().startswith("site:"):
        n_splits, n_repeats = parse_cv_spec(spec[5:])
        return CVScheme("site-kfold", n_splits, n_repeats, min_site_size, text=spec)
    n_splits, n_repeats = parse_cv_spec(spec)
    return CVScheme("kfold", n_splits, n_repeats, min_site_size, text=spec)


def default_structure(index: pd.Index) -> pd.DataFrame:
    """The structure of a cohort without site/subject information: one subject per case."""
    return pd.DataFrame(
        {
            "subject_id": pd.array(index.astype(str), dtype="string"),
            "timepoint": pd.array([pd.NA] * len(index), dtype="string"),
            "site": pd.array([pd.NA] * len(index), dtype="string"),
        },
        index=pd.Index(index.astype(str), name="case_id"),
    )


def cohort_columns(
    table: pd.DataFrame,
    *,
    site_column: str | None = None,
    subject_column: str | None = None,
    timepoint_column: str | None = None,
) -> pd.DataFrame:
    """``subject_id``, ``timepoint``, ``site`` per case of a table indexed by case id.

    Read by :func:`radsurv.data.cohort.read_cohort_columns` (the manifest's reader: usual
    column names, or the ones given; without a site column the site comes from BraTS 2019 /
    TCGA ids). ``subject_id`` defaults to the case id; an unknown site is NA here.
    """
    from radsurv.data.cohort import read_cohort_columns

    frame = table.rename_axis("case_id").reset_index()
    frame["case_id"] = frame["case_id"].astype(str)
    cols = read_cohort_columns(
        frame,
        id_column="case_id",
        site_column=site_column,
        subject_column=subject_column,
        timepoint_column=timepoint_column,
    ).reindex(table.index.astype(str))
    out = default_structure(table.index)
    out["subject_id"] = cols["subject_id"].astype("string").fillna(out["subject_id"]).to_numpy()
    tp = cols["timepoint"].astype(float)
    out["timepoint"] = pd.array([pd.NA if pd.isna(v) else f"{v:g}" for v in tp], dtype="string")
    site = cols["site"].astype("string").str.strip()
    out["site"] = site.mask(site.isin(["", UNKNOWN_SITE])).to_numpy()
    return out


def sites_of(structure: pd.DataFrame) -> pd.Series:
    """The site per case, ``unknown`` where missing."""
    return structure["site"].astype("string").fillna(UNKNOWN_SITE).astype(str)


def has_sites(structure: pd.DataFrame | None) -> bool:
    return structure is not None and bool(structure["site"].notna().any())


def check_no_subject_split(folds: Sequence[Fold], subjects: Sequence[Any]) -> None:
    """Raise :class:`ModelError` when a subject has rows on both sides of some fold."""
    subj = np.asarray(subjects).astype(str)
    for f in folds:
        both = set(subj[f.train]) & set(subj[f.test])
        if both:
            raise ModelError(
                f"repeat {f.repeat + 1} fold {f.fold + 1}: subjects {sorted(both)[:5]} are in "
                "training and test"
            )


def _grouped_kfold(
    strata: np.ndarray,
    groups: np.ndarray,
    n_splits: int,
    n_repeats: int,
    seed: int,
    **words: Any,
) -> list[Fold]:
    from sklearn.model_selection import StratifiedGroupKFold

    labels = merge_small_strata(np.asarray(strata).astype(str), n_splits, **words)
    n_groups = len(np.unique(groups))
    if n_groups < n_splits:
        raise ModelError(f"{n_groups} groups cannot be split into {n_splits} folds; use fewer")
    folds: list[Fold] = []
    for r in range(n_repeats):
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + r)
        for i, (train, test) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
            folds.append(Fold(repeat=r, fold=i, train=train, test=test))
    return folds


def _site_kfold(sites: np.ndarray, n_splits: int, n_repeats: int, seed: int) -> list[Fold]:
    """K-fold over whole sites, sites assigned to folds at random in every repeat.

    scikit-learn ``GroupKFold(shuffle=True)``: ``StratifiedGroupKFold`` orders groups by their
    class distribution and its shuffle only breaks ties, so with a few sites every repeat
    would be the same partition.
    """
    from sklearn.model_selection import GroupKFold

    n_groups = len(np.unique(sites))
    if n_groups < n_splits:
        raise ModelError(f"{n_groups} sites cannot be split into {n_splits} folds; use fewer")
    folds: list[Fold] = []
    for r in range(n_repeats):
        splitter = GroupKFold(n_splits=n_splits, shuffle=True, random_state=seed + r)
        for i, (train, test) in enumerate(splitter.split(np.zeros(len(sites)), groups=sites)):
            folds.append(Fold(repeat=r, fold=i, train=train, test=test))
    return folds


def plan_folds(
    scheme: CVScheme,
    strata: Sequence[Any] | np.ndarray,
    structure: pd.DataFrame | None = None,
    seed: int = 0,
    *,
    describe: Callable[[Any], str] | None = None,
    context: str = "cross-validation",
) -> FoldPlan:
    """The folds of ``scheme`` over the rows of ``structure`` (aligned with ``strata``).

    ``describe`` and ``context`` word the warning when small strata are merged."""
    words = {"describe": describe, "context": context}
    strata = np.asarray(strata)
    n = len(strata)
    if structure is None:
        structure = default_structure(pd.RangeIndex(n).astype(str))
    if len(structure) != n:
        raise ModelError(f"cohort structure has {len(structure)} rows for {n} cases")
    subjects = structure["subject_id"].astype(str).to_numpy()
    if scheme.kind == "kfold":
        if len(np.unique(subjects)) < n:
            folds = _grouped_kfold(
                strata, subjects, scheme.n_splits, scheme.n_repeats, seed, **words
            )
            plan = FoldPlan(folds, scheme.n_splits, scheme.n_repeats, scheme, "subject")
        else:
            folds = make_folds(strata, scheme.n_splits, scheme.n_repeats, seed, **words)
            plan = FoldPlan(folds, scheme.n_splits, scheme.n_repeats, scheme)
        check_no_subject_split(plan.folds, subjects)
        return plan
    if not has_sites(structure):
        raise ConfigError(
            f"--cv {scheme.text}: no site of any case is known; give a site column (--cohort "
            "TABLE, --site-column, a manifest or clinical table with a site column)"
        )
    sites = sites_of(structure).to_numpy()
    _check_subjects_within_sites(subjects, sites)
    counts = pd.Series(sites).value_counts()
    if scheme.kind == "site":
        test_sites = sorted(
            s for s, c in counts.items() if c >= scheme.min_site_size and s != UNKNOWN_SITE
        )
        if not test_sites:
            raise ConfigError(
                f"--cv site: no site has >= {scheme.min_site_size} cases (--min-site-size); "
                f"sites: {dict(counts)}"
            )
        folds = []
        for i, site in enumerate(test_sites):
            test = np.flatnonzero(sites == site)
            train = np.flatnonzero(sites != site)
            folds.append(Fold(repeat=0, fold=i, train=train, test=test, group=site))
        other = sorted(s for s in counts.index if s not in test_sites)
        plan = FoldPlan(folds, len(folds), 1, scheme, "site", test_sites, other)
    elif scheme.kind == "site-kfold":
        folds = _site_kfold(sites, scheme.n_splits, scheme.n_repeats, seed)
        folds = [
            Fold(f.repeat, f.fold, f.train, f.test, ",".join(sorted(set(sites[f.test]))))
            for f in folds
        ]
        plan = FoldPlan(
            folds, scheme.n_splits, scheme.n_repeats, scheme, "site", sorted(counts.index)
        )
    else:
        missing = [s for s in scheme.train_sites + scheme.test_sites if s not in counts.index]
        if missing:
            raise ConfigError(
                f"sites {missing} have no cases; the cohort's sites are {sorted(counts.index)}"
            )
        train = np.flatnonzero(np.isin(sites, scheme.train_sites))
        test = np.flatnonzero(np.isin(sites, scheme.test_sites))
        fold = Fold(0, 0, train, test, ",".join(scheme.test_sites))
        plan = FoldPlan(
            [fold],
            1,
            1,
            scheme,
            "site",
            list(scheme.test_sites),
            left_out=n - len(train) - len(test),
        )
    check_no_subject_split(plan.folds, subjects)
    log.info("fold plan: %s", plan.describe())
    return plan


def _check_subjects_within_sites(subjects: np.ndarray, sites: np.ndarray) -> None:
    frame = pd.DataFrame({"s": subjects, "site": sites})
    multi = frame.groupby("s")["site"].nunique()
    bad = multi[multi > 1]
    if len(bad):
        raise ConfigError(
            f"subjects {list(bad.index[:5])} have scans from several sites; a site-wise CV "
            "cannot keep them on one side"
        )
