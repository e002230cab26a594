"""Real-data check of the 2D segmentation model: train on 3 BraTS 2015 cases, score the 4th.

Uses ../shared/data/brats2015_deepmedic (FLAIR + T1c, z-scored, BraTS 2015 labels). Prints the
held-out case's Dice and HD95 for WT, TC, ET next to a named baseline measured in the same run:
``flair-threshold`` (WT = FLAIR above mean + 2 sd inside the brain; TC = ET = T1c above
mean + 2 sd inside that WT), plus the training and inference times.

    .venv/bin/python bench/bench_segment_real.py --minutes 4
    .venv/bin/python bench/bench_segment_real.py --minutes 8 --all-folds   # every held-out case
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from radsurv.data.case import Case
from radsurv.data.nifti import read_nifti_case
from radsurv.segmentation import case_scores, load_model, segment_case, train_segmentation
from radsurv.segmentation.predict import write_mask
from radsurv.segmentation.preprocess import regions_to_labels

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "brats2015_deepmedic"
PATTERNS = {"flair": "Flair_subtrMeanDivStd.nii.gz", "t1gd": "T1c_subtrMeanDivStd.nii.gz"}


def load_cases(data: Path) -> list[Case]:
    """The deepmedic example cases, read with radsurv's NIfTI reader."""
    return [
        read_nifti_case(
            folder,
            modality_patterns=PATTERNS,
            seg_pattern="OTMultiClass.nii.gz",
            label_convention="brats2015",
        )
        for folder in sorted(p for p in data.iterdir() if p.is_dir())
    ]


def threshold_baseline(case: Case) -> np.ndarray:
    """Trivial segmentation: bright FLAIR inside the brain = WT, bright T1c inside it = TC/ET."""
    flair, t1c = case.images["flair"], case.images["t1gd"]
    brain = flair != 0
    wt = flair > flair[brain].mean() + 2 * flair[brain].std()
    et = wt & (t1c > t1c[brain].mean() + 2 * t1c[brain].std())
    return regions_to_labels(np.stack([wt, et, et]))


def run_fold(cases: list[Case], test_index: int, minutes: float, seed: int, out: Path) -> dict:
    test = cases[test_index]
    train = [c for i, c in enumerate(cases) if i != test_index]
    t0 = time.perf_counter()
    result = train_segmentation(
        train, out / f"model_{test.case_id}.pt", time_limit=minutes, val_fraction=0.0, seed=seed
    )
    train_s = time.perf_counter() - t0
    model = load_model(result.best_path, device="cpu")
    t0 = time.perf_counter()
    labels = segment_case(model, test)
    infer_s = time.perf_counter() - t0
    write_mask(test, labels, out / f"{test.case_id}.nii.gz")
    t0 = time.perf_counter()
    baseline = threshold_baseline(test)
    baseline_s = time.perf_counter() - t0
    return {
        "test_case": test.case_id,
        "epochs": len(result.history),
        "train_seconds": round(train_s, 1),
        "infer_seconds": round(infer_s, 2),
        "baseline_seconds": round(baseline_s, 2),
        "model": case_scores(labels, test.labels, test.spacing),
        "flair-threshold": case_scores(baseline, test.labels, test.spacing),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--minutes", type=float, default=4.0, help="CPU training budget per fold")
    parser.add_argument("--test-case", type=int, default=3, help="index of the held-out case")
    parser.add_argument("--all-folds", action="store_true", help="hold out each case in turn")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", type=Path, help="keep models and predicted masks here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    cases = load_cases(args.data)
    folds = range(len(cases)) if args.all_folds else [args.test_case]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for k in folds:
            r = run_fold(cases, k, args.minutes, args.seed, args.keep or Path(tmp))
            results.append(r)
            print(
                f"\nheld-out {r['test_case']}: {r['epochs']} epochs in {r['train_seconds']} s "
                f"training, {r['infer_seconds']} s inference (CPU)"
            )
            print(
                f"{'region':<6} {'Dice model':>10} {'Dice base':>10} {'ratio':>6} "
                f"{'HD95 model':>10} {'HD95 base':>10}"
            )
            for region in ("WT", "TC", "ET"):
                m, b = r["model"][region], r["flair-threshold"][region]
                ratio = m["dice"] / b["dice"] if b["dice"] > 0 else float("inf")
                print(
                    f"{region:<6} {m['dice']:>10.3f} {b['dice']:>10.3f} {ratio:>6.2f} "
                    f"{m['hd95']:>10.2f} {b['hd95']:>10.2f}"
                )
    if len(results) > 1:
        print("\nmean over folds (model / flair-threshold baseline):")
        for region in ("WT", "TC", "ET"):
            m = np.mean([r["model"][region]["dice"] for r in results])
            b = np.mean([r["flair-threshold"][region]["dice"] for r in results])
            print(f"{region}: Dice {m:.3f} / {b:.3f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
