"""In-fold ComBat harmonisation of features across sites (glue around combatlearn).

``--harmonize combat`` uses :class:`combatlearn.ComBat` (a scikit-learn transformer that takes
the batch labels and covariates at construction, aligned by the pandas index). Nothing of
ComBat is re-implemented here; this module only decides which rows each fit sees:

1. **Training rows only.** In every fold a ComBat is fitted on the training rows' features
   (batch = site; ``method="johnson"`` without covariates, ``"fortin"`` with covariates to
   preserve, e.g. ``age,grade``: numeric ones as continuous, the others as discrete
   covariates). The training rows and the test rows of sites training saw are transformed by
   that fit.
2. **A test site training never saw** (leave-site-out, external validation) is harmonised from
   its own feature distribution, without labels: a second combatlearn ComBat is fitted on the
   harmonised training rows as one reference batch (``reference_batch``, left unchanged) plus
   that site's test rows as the other batch. Its location/scale (empirical Bayes) parameters are
   therefore estimated on the site's own test rows (features and covariates, never outcomes),
   and the site is mapped onto the harmonised training distribution; the training rows and the
   model fitted on them do not change. A test site with fewer than
   :data:`MIN_BATCH` rows is left unharmonised (logged).
3. Sites with fewer than :data:`MIN_BATCH` training rows are pooled into one batch
   ``(small sites)`` (ComBat needs a variance per batch); when that pool itself is too small it
   joins the largest site. Missing sites are the batch ``unknown``.
4. Missing feature values are filled with the training median for ComBat and put back as
   missing afterwards (the model pipeline imputes them in-fold); features constant in the
   training rows are left as they are. Covariate values missing are filled with the training
   median (numeric) or ``missing`` (discrete).

The site effect before/after (:func:`site_effect`) is a Kruskal-Wallis test per feature across
sites (scipy), with the fraction of features at p < 0.05, uncorrected and after
Benjamini-Hochberg correction.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from radsurv.errors import ConfigError

log = logging.getLogger(__name__)

#: Fewest rows of a batch ComBat is fitted with.
MIN_BATCH = 3
POOLED = "(small sites)"
REFERENCE = "(training, harmonised)"
METHODS = ("combat",)


@dataclass
class Harmonizer:
    """Per-fold ComBat of the feature columns of a design.

    Parameters
    ----------
    feature_columns
        Columns to harmonise (the radiomic features; covariates are never changed).
    sites
        Site per row (aligned with the design's index; ``unknown`` where missing).
    covariates
        Clinical columns to preserve, aligned with the index (numeric: continuous, else
        discrete).
    """

    feature_columns: list[str]
    sites: pd.Series
    covariates: pd.DataFrame = field(default_factory=pd.DataFrame)
    method: str = "combat"

    def _combat(self, batch: pd.Series, cov: pd.DataFrame, reference: str | None = None) -> Any:
        from combatlearn import ComBat

        cont = cov.select_dtypes(include=[np.number])
        disc = cov.drop(columns=list(cont.columns))
        kwargs: dict[str, Any] = {}
        if not cov.empty:
            kwargs["method"] = "fortin"
            if not cont.empty:
                kwargs["continuous_covariates"] = cont
            if not disc.empty:
                kwargs["discrete_covariates"] = disc
        return ComBat(batch=batch, reference_batch=reference, **kwargs)

    def _covariates(self, rows: pd.Index, train: pd.Index) -> pd.DataFrame:
        cov = (
            self.covariates.loc[rows].copy()
            if not self.covariates.empty
            else pd.DataFrame(index=rows)
        )
        for c in cov.columns:
            if pd.api.types.is_numeric_dtype(cov[c]):
                cov[c] = cov[c].astype(float).fillna(float(self.covariates.loc[train, c].median()))
            else:
                cov[c] = cov[c].astype("string").fillna("missing").astype(str)
        return cov

    def batches(self, train: pd.Index) -> dict[str, str]:
        """Site -> ComBat batch of the training rows (small sites pooled)."""
        counts = self.sites.loc[train].value_counts()
        small = [s for s, c in counts.items() if c < MIN_BATCH]
        mapping = {s: s for s in counts.index}
        if small:
            pooled = int(counts[small].sum())
            target = POOLED if pooled >= MIN_BATCH else str(counts.idxmax())
            mapping.update(dict.fromkeys(small, target))
        return mapping

    def apply(self, X: pd.DataFrame, fold: Any) -> tuple[pd.DataFrame, dict[str, Any]]:
        """``X`` with its feature columns harmonised for one fold (fit on training rows)."""
        cols = [c for c in self.feature_columns if c in X.columns]
        train = X.index[fold.train]
        test = X.index[fold.test]
        info: dict[str, Any] = {"unseen_sites": [], "unharmonised_sites": []}
        if not cols:
            return X, info
        feats = X[cols].astype(float)
        median = feats.loc[train].median()
        filled = feats.fillna(median)
        spread = filled.loc[train].std()
        use = [c for c in cols if np.isfinite(spread[c]) and spread[c] > 0]
        mapping = self.batches(train)
        out = feats.copy()
        batch_all = self.sites.map(lambda s: mapping.get(s, s))
        if len(set(batch_all.loc[train])) < 2:
            log.info("fold %s: a single site in training; nothing to harmonise", fold.fold)
            return X, info
        cov_train = self._covariates(train, train)
        seen = [i for i in test if self.sites.loc[i] in mapping]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            combat = self._combat(batch_all, self._covariates(X.index, train))
            combat.fit(filled.loc[train, use])
            out.loc[train, use] = combat.transform(filled.loc[train, use]).to_numpy()
            if seen:
                out.loc[seen, use] = combat.transform(filled.loc[seen, use]).to_numpy()
            ref = out.loc[train, use].fillna(median[use])
            for site in sorted(set(self.sites.loc[test]) - set(mapping)):
                rows = [i for i in test if self.sites.loc[i] == site]
                if len(rows) < MIN_BATCH:
                    info["unharmonised_sites"].append(site)
                    log.warning(
                        "test site %s has %d rows (< %d): left unharmonised",
                        site,
                        len(rows),
                        MIN_BATCH,
                    )
                    continue
                both = pd.Index(list(train) + rows)
                batch = pd.Series([REFERENCE] * len(train) + [site] * len(rows), index=both)
                cov = pd.concat([cov_train, self._covariates(pd.Index(rows), train)])
                second = self._combat(batch, cov, reference=REFERENCE)
                data = pd.concat([ref, filled.loc[rows, use]])
                second.fit(data)
                out.loc[rows, use] = second.transform(filled.loc[rows, use]).to_numpy()
                info["unseen_sites"].append(site)
        out = out.where(feats.notna())
        result = X.copy()
        result[cols] = out[cols]
        return result, info


def make_harmonizer(
    method: str | None,
    design: Any,
    structure: pd.DataFrame | None,
    covariates: str | Sequence[str] | None = None,
) -> Harmonizer | None:
    """The harmonizer of ``--harmonize METHOD`` for a design (None when off)."""
    if method is None or str(method).lower() in ("", "none", "off"):
        return None
    if str(method).lower() not in METHODS:
        raise ConfigError(f"--harmonize {method!r}: choose from {', '.join(METHODS)} or none")
    from radsurv.study.design import _find
    from radsurv.study.folds import has_sites, sites_of

    if not has_sites(structure):
        raise ConfigError("--harmonize combat needs the site of the cases (a site column)")
    if not design.feature_columns:
        raise ConfigError("--harmonize combat needs --features (it harmonises feature columns)")
    names = [covariates] if isinstance(covariates, str) else list(covariates or [])
    names = [p.strip() for v in names for p in str(v).split(",") if p.strip()]
    cov = pd.DataFrame(index=design.X.index)
    for name in names:
        col = _find(design.clinical, name)
        if col is None:
            raise ConfigError(
                f"--harmonize-covariates {name}: no such column in the clinical table; it has "
                f"{list(design.clinical.columns)}"
            )
        values = design.clinical[col]
        num = pd.to_numeric(values, errors="coerce")
        known = values.notna().sum()
        if known and num.notna().sum() >= 0.9 * known and num.nunique() > 2:
            cov[name] = num.to_numpy(dtype=float)
        else:
            cov[name] = values.astype("string").to_numpy()
    sites = sites_of(structure.loc[design.X.index.astype(str)])
    sites.index = design.X.index
    return Harmonizer(list(design.feature_columns), sites, cov)


def _bh(p: np.ndarray) -> np.ndarray:
    from scipy.stats import false_discovery_control

    ok = np.isfinite(p)
    q = np.full(len(p), np.nan)
    if ok.any():
        q[ok] = false_discovery_control(p[ok])
    return q


def site_effect(
    features: pd.DataFrame, sites: pd.Series, *, min_rows: int = MIN_BATCH, alpha: float = 0.05
) -> dict[str, Any]:
    """Kruskal-Wallis test per feature across sites (sites with >= ``min_rows`` rows)."""
    from scipy.stats import kruskal

    counts = sites.value_counts()
    keep = [s for s, c in counts.items() if c >= min_rows]
    p = []
    for col in features.columns:
        groups = [
            features.loc[(sites == s).to_numpy(), col].dropna().to_numpy(dtype=float) for s in keep
        ]
        groups = [g for g in groups if len(g)]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                p.append(float(kruskal(*groups).pvalue) if len(groups) >= 2 else math.nan)
        except ValueError:  # all values identical
            p.append(math.nan)
    pv = np.asarray(p, dtype=float)
    q = _bh(pv)
    ok = np.isfinite(pv)
    return {
        "test": "Kruskal-Wallis across sites, per feature (scipy.stats.kruskal)",
        "sites": keep,
        "n_features": int(len(pv)),
        "n_tested": int(ok.sum()),
        "fraction_p_lt_0.05": float(np.mean(pv[ok] < alpha)) if ok.any() else math.nan,
        "fraction_q_lt_0.05_bh": float(np.mean(q[ok] < alpha)) if ok.any() else math.nan,
        "median_p": float(np.median(pv[ok])) if ok.any() else math.nan,
        "p_values": dict(zip([str(c) for c in features.columns], p, strict=True)),
    }
