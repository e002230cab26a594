"""Repeated stratified K-fold cross-validation: fold plans and parallel fold execution.

Generic over the endpoint: give :func:`make_folds` one stratum label per sample (a binary
class label, or :func:`survival_strata` = event x time tertile for survival). The plan is
deterministic for a given seed, and :func:`run_folds` runs a function on every fold in
parallel (joblib) returning the results in fold order, so a run with ``n_jobs=1`` and one with
``n_jobs=4`` give identical numbers.

Example
-------
>>> n_splits, n_repeats = parse_cv_spec("5x5")
>>> folds = make_folds(survival_strata(event, time), n_splits, n_repeats, seed=0)
>>> results = run_folds(fit_and_score, folds, n_jobs=2)   # fit_and_score(fold) -> anything
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from radsurv.errors import ConfigError, ModelError

log = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True)
class Fold:
    """One train/test split of a repeated K-fold plan (indices into the samples)."""

    repeat: int
    fold: int
    train: np.ndarray
    test: np.ndarray
    group: str = ""  # the held-out site(s) of a site-wise plan


def parse_cv_spec(spec: str) -> tuple[int, int]:
    """Parse ``"5x5"`` (folds x repeats) or ``"5"`` (one repeat) into ``(n_splits, n_repeats)``.

    Raises
    ------
    ConfigError
        When the text is not of that form or asks for fewer than 2 folds.
    """
    m = re.fullmatch(r"\s*(\d+)\s*(?:[xX*]\s*(\d+))?\s*", str(spec))
    if not m:
        raise ConfigError(f"--cv {spec!r}: expected FOLDSxREPEATS, e.g. 5x5 or 10x1")
    n_splits, n_repeats = int(m.group(1)), int(m.group(2) or 1)
    if n_splits < 2 or n_repeats < 1:
        raise ConfigError(f"--cv {spec!r}: need at least 2 folds and 1 repeat")
    return n_splits, n_repeats


def survival_strata(event: np.ndarray, time: np.ndarray) -> np.ndarray:
    """Stratum per sample: event (0/1) x tertile of the observed time (0, 1, 2) -> 0..5."""
    event = np.asarray(event, dtype=bool)
    time = np.asarray(time, dtype=float)
    cuts = np.nanquantile(time, [1 / 3, 2 / 3])
    tertile = np.searchsorted(cuts, time, side="right")
    return event.astype(int) * 3 + np.clip(tertile, 0, 2)


def survival_stratum_label(stratum: Any) -> str:
    """Words for a stratum of :func:`survival_strata`, e.g. 4 -> "deaths, 2nd time tertile"."""
    s = int(stratum)
    return f"{'deaths' if s >= 3 else 'censored'}, {('1st', '2nd', '3rd')[s % 3]} time tertile"


def make_folds(
    strata: Sequence[Any] | np.ndarray,
    n_splits: int,
    n_repeats: int = 1,
    seed: int = 0,
    *,
    describe: Callable[[Any], str] | None = None,
    context: str = "cross-validation",
) -> list[Fold]:
    """Plan repeated stratified K-fold splits.

    Parameters
    ----------
    strata
        One stratum label per sample. Strata with fewer members than ``n_splits`` are merged
        into the largest stratum (logged), e.g. the single censored case of the BraTS 2020
        training table.
    n_splits, n_repeats
        Folds per repeat and number of repeats (each repeat reshuffles).
    seed
        Random seed; the plan depends only on it and the strata.
    describe, context
        Words for a stratum label and for this plan (e.g. ``"inner CV of fold 3"``), used in
        the warning about merged strata.

    Returns
    -------
    list of Fold
        ``n_splits * n_repeats`` folds, ordered by repeat then fold.

    Raises
    ------
    ModelError
        When there are fewer samples than folds.
    """
    from sklearn.model_selection import RepeatedStratifiedKFold

    labels = np.asarray(strata).astype(str)
    n = labels.shape[0]
    if n < n_splits:
        raise ModelError(f"{n} samples cannot be split into {n_splits} folds; use fewer folds")
    labels = merge_small_strata(labels, n_splits, describe=describe, context=context)
    splitter = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    folds = []
    for i, (train, test) in enumerate(splitter.split(np.zeros(n), labels)):
        folds.append(Fold(repeat=i // n_splits, fold=i % n_splits, train=train, test=test))
    return folds


def merge_small_strata(
    labels: np.ndarray,
    n_splits: int,
    *,
    describe: Callable[[Any], str] | None = None,
    context: str = "cross-validation",
) -> np.ndarray:
    """Strata with fewer members than ``n_splits`` merged into the largest one (logged, with
    ``describe`` giving words for a stratum and ``context`` naming the plan)."""
    labels = np.asarray(labels).astype(str)
    values, counts = np.unique(labels, return_counts=True)
    small = values[counts < n_splits]
    if small.size:
        largest = values[np.argmax(counts)]

        def name(v: Any) -> str:
            return f"stratum {v}" + (f" ({describe(v)})" if describe else "")

        log.warning(
            "%s, %d folds: %s %s fewer cases than folds, so stratified splitting cannot put "
            "%s in every fold; for the fold assignment only, %s merged into the largest, %s",
            context,
            n_splits,
            ", ".join(
                f"{name(v)} with {c} case{'s' if c != 1 else ''}"
                for v, c in zip(values, counts, strict=True)
                if v in small
            ),
            "has" if small.size == 1 else "have",
            "it" if small.size == 1 else "them",
            "it is" if small.size == 1 else "they are",
            name(largest),
        )
        labels = np.where(np.isin(labels, small), largest, labels)
    return labels


ProgressCallback = Callable[[int, int, str], None]
"""``progress(done, total, what)``: called after each finished task (the CLI draws a bar)."""


def run_folds(
    func: Callable[[Fold], _T],
    folds: Sequence[Fold],
    n_jobs: int = 1,
    progress: ProgressCallback | None = None,
    what: str = "folds",
) -> list[_T]:
    """Run ``func(fold)`` on every fold, in parallel processes when ``n_jobs != 1``.

    Results come back in fold order. ``func`` must be picklable (a module-level function or a
    :func:`functools.partial` of one) for ``n_jobs > 1``. ``progress(done, total, what)`` is
    called as tasks finish.
    """
    total = len(folds)
    if n_jobs == 1 or total <= 1:
        results = []
        for i, f in enumerate(folds, 1):
            results.append(func(f))
            if progress is not None:
                progress(i, total, what)
        return results
    from joblib import Parallel, delayed

    parallel = Parallel(n_jobs=n_jobs, return_as="generator")
    results = []
    for i, result in enumerate(parallel(delayed(func)(f) for f in folds), 1):
        results.append(result)
        if progress is not None:
            progress(i, total, what)
    return results
