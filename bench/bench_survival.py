"""Benchmark: 2,000 features x 300 patients, 5x5 CV with in-fold preprocessing and selection.

Prints the wall time per model and its ratio to the named baseline measured in the same run:
the age-only Cox model on the same folds (preprocessing of one column, lifelines fit).

    .venv/bin/python bench/bench_survival.py [--cv 5x5] [--models cox xgb-cox xgb-aft rsf]
        [--selection univariate|penalised] [--nested]

``--selection penalised`` selects with the elastic-net Cox path (Coxnet) per training fold;
``--nested`` adds the inner 3-fold hyper-parameter search per outer training fold
(radsurv.models.survival_tuning.PARAM_GRIDS).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sksurv.util import Surv

from radsurv.evaluation.cv import make_folds, parse_cv_spec, survival_strata
from radsurv.evaluation.survival_metrics import cross_validate_survival
from radsurv.models.survival import MODEL_NAMES, make_model
from radsurv.models.survival_selection import SELECTION_METHODS
from radsurv.models.survival_tuning import make_tuned_model


def simulate(n: int, p: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"f{i}" for i in range(p)])
    X["age"] = rng.normal(60, 10, n)
    lp = 0.8 * X["f0"] - 0.5 * X["f1"] + 0.3 * X["f2"] + 0.04 * (X["age"] - 60)
    t_event = rng.exponential(450 * np.exp(-lp))
    t_cens = rng.uniform(200, 1600, n)
    y = Surv.from_arrays(t_event <= t_cens, np.maximum(1, np.round(np.minimum(t_event, t_cens))))
    return X, y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cv", default="5x5")
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--features", type=int, default=2000)
    ap.add_argument(
        "--models", nargs="+", default=["cox", "xgb-cox", "xgb-aft", "rsf"], choices=MODEL_NAMES
    )
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--selection", default="univariate", choices=SELECTION_METHODS)
    ap.add_argument("--nested", action="store_true", help="inner 3-fold grid search per fold")
    args = ap.parse_args()
    X, y = simulate(args.patients, args.features)
    n_splits, n_repeats = parse_cv_spec(args.cv)
    folds = make_folds(survival_strata(y["event"], y["time"]), n_splits, n_repeats, seed=0)
    print(
        f"{args.patients} patients x {args.features} features, {args.cv} CV, "
        f"{args.jobs} job(s); in-fold impute, near-constant, scale, |r|>0.95, k=20 "
        f"{args.selection} selection{', nested inner 3-fold grid search' if args.nested else ''}"
    )
    base = make_model("cox", k=None, corr_threshold=None)
    base.radsurv_columns = ["age"]
    t0 = time.perf_counter()
    res = cross_validate_survival({"age": base}, X, y, folds, n_jobs=args.jobs)
    t_base = time.perf_counter() - t0
    print(
        f"{'age (baseline)':>16}: {t_base:7.1f} s  ratio 1.00  "
        f"C {res.summaries['age']['harrell_c']['mean']:.3f}"
    )
    for name in args.models:
        t0 = time.perf_counter()
        model = make_model(name, k=20, forced=["age"], selection=args.selection)
        if args.nested:
            model = make_tuned_model(name, model, inner_folds=3, seed=0)
        res = cross_validate_survival({name: model}, X, y, folds, n_jobs=args.jobs)
        dt = time.perf_counter() - t0
        s = res.summaries[name]
        failed = s.get("failed_folds", {}).get("n", 0)
        print(
            f"{name:>16}: {dt:7.1f} s  ratio {dt / t_base:5.2f}  "
            f"per fold {dt / len(folds):5.2f} s  C {s['harrell_c']['mean']:.3f}  "
            f"failed folds {failed}"
        )


if __name__ == "__main__":
    main()
