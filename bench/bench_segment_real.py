"""Real-data quality of the segmentation variants: leave-one-out on the BraTS 2015 cases.

Uses ../shared/data/brats2015_deepmedic (4 real BraTS 2015 cases, FLAIR + T1c, BraTS 2015
labels). Each fold trains on 3 cases and scores the held-out one; every trained variant gets the
same training time budget (``--minutes``, wall clock), and the K models of the ensemble share
that one budget. Variants, scored on the held-out case with Dice and HD95 for WT, TC, ET:

- ``2d``: the default 2D UNet;
- ``2d+tta``: the same model with mirror test-time augmentation (no extra training);
- ``ensemble``: a K-fold ensemble of 2D models (``train_segmentation(folds=K)``; predict
  averages their probabilities);
- ``3d``: the 3D SegResNet;
- ``flair-threshold``: the named baseline measured in the same run (WT = FLAIR above mean + 2 sd
  inside the head; TC = ET = T1c above mean + 2 sd inside that WT); it needs no training.

Each training run records its wall time and its process CPU time (all threads), and the load
average of the machine around it: on a shared, loaded machine the same wall budget buys
different amounts of CPU, so compare the CPU seconds too.

``--external`` instead trains every variant on all 4 BraTS 2015 cases and scores the 2 real
TCGA cases of ../shared/data/brainles_tcga (FLAIR + T1c) against their ``fusion-mav`` masks.
Those references are fusions of five BraTS 2020 algorithms' outputs, not expert labels.

    .venv/bin/python bench/bench_segment_real.py --minutes 8 --json seg_real.json
    .venv/bin/python bench/bench_segment_real.py --minutes 2 --folds 2,3 --variants 2d,2d+tta
    .venv/bin/python bench/bench_segment_real.py --minutes 8 --external
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from radsurv.data.case import Case
from radsurv.data.nifti import read_nifti_case
from radsurv.segmentation import case_scores, load_model, segment_case, train_segmentation
from radsurv.segmentation.checkpoint import read_checkpoint
from radsurv.segmentation.metrics import EVAL_REGIONS, mean_scores
from radsurv.segmentation.predict import SegmentationModel, write_mask
from radsurv.segmentation.preprocess import foreground_mask, regions_to_labels

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
DEFAULT_DATA = SHARED / "brats2015_deepmedic"
DEFAULT_EXTERNAL = SHARED / "brainles_tcga"
PATTERNS = {"flair": "Flair_subtrMeanDivStd.nii.gz", "t1gd": "T1c_subtrMeanDivStd.nii.gz"}
TCGA_PATTERNS = {"flair": "*_flair.nii.gz", "t1gd": "*_t1c.nii.gz"}
TCGA_REFERENCE = "segmentations/fusion-mav.nii.gz"
BASELINE = "flair-threshold"
VARIANTS = ("2d", "2d+tta", "ensemble", "3d")
# the goals for the held-out WT Dice after 8 minutes of training (floor: with TTA)
TARGET_WT, FLOOR_WT_TTA = 0.85, 0.80
# epochs high enough that the time budget, not the epoch count, ends every training run
EPOCHS = 100_000


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


def load_external(data: Path) -> list[Case]:
    """The TCGA cases (FLAIR + T1c) with the ``fusion-mav`` algorithm fusion as reference."""
    return [
        read_nifti_case(
            folder,
            modality_patterns=TCGA_PATTERNS,
            seg_pattern=TCGA_REFERENCE,
            label_convention="brats2020",
        )
        for folder in sorted(p for p in data.iterdir() if p.is_dir())
    ]


def threshold_baseline(case: Case) -> np.ndarray:
    """Trivial segmentation: bright FLAIR inside the head = WT, bright T1c inside it = TC/ET."""
    flair, t1c = case.images["flair"], case.images["t1gd"]
    head = foreground_mask(np.stack([flair, t1c]))  # the background is not 0 in z-scored files
    wt = head & (flair > flair[head].mean() + 2 * flair[head].std())
    et = wt & (t1c > t1c[head].mean() + 2 * t1c[head].std())
    return regions_to_labels(np.stack([wt, et, et]))


def _steps_taken(path: Path) -> dict[str, Any]:
    """Epochs trained and their arithmetic, from a model's history (an ensemble index: none)."""
    history = read_checkpoint(path)[0].get("history")
    if not history:
        return {}
    return {"epochs": len(history), "precision": history[-1].get("precision")}


def _timed_training(train: Callable[[], Path]) -> tuple[Path, dict[str, Any]]:
    """Run ``train``; return its model path and wall time, process CPU time and load average."""
    load_before = os.getloadavg()[0]
    c0, t0 = time.process_time(), time.perf_counter()
    path = train()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return path, {
        **_steps_taken(path),
        "wall_seconds": round(wall, 1),
        "cpu_seconds": round(cpu, 1),
        "cpu_per_wall": round(cpu / wall, 2) if wall > 0 else float("nan"),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
    }


def train_variant(
    variant: str,
    train: list[Case],
    out: Path,
    minutes: float,
    seed: int,
    device: str,
    ensemble_k: int,
    context_slices: int | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Train the model of ``variant`` (``2d``, ``ensemble`` or ``3d``) within ``minutes``.

    ``context_slices`` (None: radsurv's default, 0) applies to the 2D variants only;
    ``options`` holds further ``train_segmentation`` options (``ncr_intensity_aug``,
    ``spatial_aug``, ``amp``; None: radsurv's default).
    """
    common = {
        "time_limit": minutes,
        "epochs": EPOCHS,
        "seed": seed,
        "device": device,
        **{k: v for k, v in (options or {}).items() if v is not None},
    }
    two_d = {**common, "dim": "2d", "context_slices": context_slices}
    if variant == "2d":
        return _timed_training(
            lambda: (
                train_segmentation(
                    train, out / "model_2d.pt", val_fraction=0.0, progress=False, **two_d
                ).best_path
            )
        )
    if variant == "ensemble":
        path = out / "model_ensemble.pt"
        # time_limit is the whole ensemble's budget: train_segmentation splits it over the K folds
        _, info = _timed_training(
            lambda: (
                train_segmentation(train, path, folds=ensemble_k, progress=False, **two_d).best_path
            )
        )
        return path, info
    if variant == "3d":
        return _timed_training(
            lambda: (
                train_segmentation(
                    train, out / "model_3d.pt", dim="3d", val_fraction=0.0, progress=False, **common
                ).best_path
            )
        )
    raise ValueError(f"variant {variant!r} unknown; choose from {', '.join(VARIANTS)}")


def _segment(model: SegmentationModel, case: Case, tta: bool) -> np.ndarray:
    return segment_case(model, case, tta=True) if tta else segment_case(model, case)


def run_fold(
    train: list[Case],
    tests: list[Case],
    variants: list[str],
    args: argparse.Namespace,
    out: Path,
) -> list[dict[str, Any]]:
    """Train each variant once on ``train``; score every case of ``tests`` with each of them.

    Returns one record per test case: ``{"test_case", "train_cases", "variants": {name:
    {"scores", "infer_seconds", "training"}}}``.
    """
    records: list[dict[str, Any]] = [
        {"test_case": t.case_id, "train_cases": [c.case_id for c in train], "variants": {}}
        for t in tests
    ]
    for t, rec in zip(tests, records, strict=True):
        t0 = time.perf_counter()
        labels = threshold_baseline(t)
        rec["variants"][BASELINE] = {
            "scores": case_scores(labels, t.labels, t.spacing),
            "infer_seconds": round(time.perf_counter() - t0, 2),
            "training": None,
        }
    trained = {"2d+tta": "2d"}
    done: dict[str, tuple[Path, dict[str, Any]]] = {}
    for variant in variants:
        base = trained.get(variant, variant)
        if base not in done:
            logging.info(
                "training %s on %s (%.1f min)", base, records[0]["train_cases"], args.minutes
            )
            done[base] = train_variant(
                base,
                train,
                out,
                args.minutes,
                args.seed,
                args.device,
                args.ensemble_k,
                args.context_slices,
                {
                    "ncr_intensity_aug": args.ncr_intensity_aug,
                    "spatial_aug": args.spatial_aug,
                    "amp": False if args.no_amp else None,
                },
            )
        path, training = done[base]
        model = load_model(path, device=args.device)
        for t, rec in zip(tests, records, strict=True):
            t0 = time.perf_counter()
            labels = _segment(model, t, tta=variant.endswith("+tta"))
            infer_s = time.perf_counter() - t0
            if args.keep:
                write_mask(t, labels, out / f"{t.case_id}_{variant.replace('+', '_')}.nii.gz")
            rec["variants"][variant] = {
                "scores": case_scores(labels, t.labels, t.spacing),
                "infer_seconds": round(infer_s, 2),
                "training": training if base == variant else f"same model as {base}",
            }
    return records


def _mean_over(records: list[dict[str, Any]], names: list[str]) -> dict[str, Any]:
    """Mean Dice and HD95 per region (and mean training seconds) of each variant over records."""
    means: dict[str, Any] = {}
    for name in names:
        entries = [r["variants"][name] for r in records if name in r["variants"]]
        means[name] = {"scores": mean_scores([e["scores"] for e in entries])}
        runs = [e["training"] for e in entries if isinstance(e["training"], dict)]
        if not runs and name != BASELINE:
            means[name]["training"] = "same model"
        if runs:
            for key in ("wall_seconds", "cpu_seconds"):
                means[name][key] = round(float(np.mean([r[key] for r in runs])), 1)
    return means


def _table(title: str, rows: dict[str, dict[str, Any]]) -> str:
    regions = list(EVAL_REGIONS)
    head = (
        f"{'variant':<16}"
        + "".join(f"{r + ' Dice':>9}" for r in regions)
        + "".join(f"{r + ' HD95':>9}" for r in regions)
        + f"{'train wall s':>14}{'train CPU s':>13}"
    )
    lines = [f"\n{title}", head]
    for name, row in rows.items():
        s = row["scores"]
        training = row.get("training", row)  # fold rows hold it, mean rows are it
        if isinstance(training, dict):
            wall, cpu = training.get("wall_seconds", "-"), training.get("cpu_seconds", "-")
        else:  # the baseline (None) or a variant reusing another's model
            wall = cpu = "-" if training is None else "(same)"
        lines.append(
            f"{name:<16}"
            + "".join(f"{s[r]['dice']:>9.3f}" for r in regions)
            + "".join(f"{s[r]['hd95']:>9.1f}" for r in regions)
            + f"{wall!s:>14}{cpu!s:>13}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--minutes", type=float, default=8.0, help="training budget (wall) per variant and fold"
    )
    parser.add_argument(
        "--folds",
        default="all",
        help="held-out case indices, comma-separated (default all: leave-one-out)",
    )
    parser.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated subset of {','.join(VARIANTS)} (the baseline always runs)",
    )
    parser.add_argument("--ensemble-k", type=int, default=3, help="models in the ensemble")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda or auto")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--context-slices",
        type=int,
        default=None,
        help="neighbouring slices on each side for the 2D variants (default: radsurv's, 0)",
    )
    parser.add_argument(
        "--ncr-intensity-aug",
        type=float,
        default=None,
        help="share of training samples whose necrotic core gets a random intensity "
        "(default: radsurv's)",
    )
    parser.add_argument(
        "--spatial-aug",
        type=float,
        default=None,
        help="share of training samples rotated and zoomed in the axial plane (default: radsurv's)",
    )
    parser.add_argument(
        "--no-amp",
        action="store_true",
        help="train in float32 (default: radsurv's, bfloat16 on CPUs that compute it natively)",
    )
    parser.add_argument(
        "--external",
        action="store_true",
        help="train on all BraTS 2015 cases, score the TCGA cases (fusion-mav references)",
    )
    parser.add_argument("--external-data", type=Path, default=DEFAULT_EXTERNAL)
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", type=Path, help="keep models and predicted masks here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"--variants: unknown {unknown}; choose from {', '.join(VARIANTS)}")
    cases = load_cases(args.data)
    if args.external:
        plan = [(cases, load_external(args.external_data))]
    else:
        indices = (
            range(len(cases))
            if args.folds == "all"
            else [int(i) for i in args.folds.split(",") if i.strip()]
        )
        plan = [([c for j, c in enumerate(cases) if j != i], [cases[i]]) for i in indices]
    names = [BASELINE, *variants]
    records: list[dict[str, Any]] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for k, (train, tests) in enumerate(plan):
            out = (args.keep or Path(tmp)) / f"fold{k}"
            out.mkdir(parents=True, exist_ok=True)
            for rec in run_fold(train, tests, variants, args, out):
                records.append(rec)
                kind = "external" if args.external else "held-out"
                print(_table(f"{kind} {rec['test_case']}", rec["variants"]), flush=True)
    means = _mean_over(records, names)
    what = "external TCGA cases (fusion-mav references)" if args.external else "folds"
    print(_table(f"mean over {len(records)} {what}", means))
    print(
        f"\n{args.minutes:g} min wall-clock training budget per variant and fold on "
        f"{args.device}; CPU seconds are the training process's (all threads); load average "
        f"{os.getloadavg()[0]:.2f} at the end (shared machine); "
        f"total {time.perf_counter() - t_start:.0f} s"
    )
    for name in variants:
        wt = means[name]["scores"]["WT"]["dice"]
        goals = [("target", TARGET_WT)] + ([("floor", FLOOR_WT_TTA)] if name == "2d+tta" else [])
        verdicts = ", ".join(
            f"{kind} >= {goal:.2f} {'met' if wt >= goal else 'NOT met'}" for kind, goal in goals
        )
        print(f"{name}: mean WT Dice {wt:.3f} ({verdicts})")
    if args.json:
        settings = {
            k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items() if k != "json"
        }
        args.json.write_text(
            json.dumps(
                {"settings": settings, "cases": records, "mean": means, "n_cases": len(records)},
                indent=2,
            )
        )


if __name__ == "__main__":
    main()
