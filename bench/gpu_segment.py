"""GPU segmentation speed: train briefly on a synthetic full-size cohort, time inference per case.

One command for a CUDA machine (about 3-5 minutes):

    python bench/gpu_segment.py                 # 240x240x155 phantoms, 2D UNet, AMP
    python bench/gpu_segment.py --dim both      # and SegResNet, sliding-window inference
    python bench/gpu_segment.py --quick         # tiny shapes on the CPU (what the tests run)

Prints the time per case of whole-case segmentation (normalisation, network, thresholds,
post-processing) with mixed precision, cases/s, and the same without mixed precision as the
named baseline ``fp32`` measured in the same run (ratio = fp32 time / AMP time). Target: <= 1 s
per 240x240x155 case on one H100.
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from radsurv.data.case import Case
from radsurv.data.synthetic import make_phantom_case
from radsurv.segmentation import (
    SegmentationConfig,
    case_scores,
    load_model,
    segment_case,
    train_segmentation,
)
from radsurv.segmentation.device import resolve_device

FULL_SHAPE = (155, 240, 240)
QUICK_SHAPE = (24, 48, 48)


def _phantom(args: tuple[int, int, tuple[int, int, int]]) -> Case:
    return make_phantom_case(*args)


def make_cases(n: int, seed: int, shape: tuple[int, int, int], workers: int) -> list[Case]:
    """Synthetic phantoms (radsurv.data.synthetic), generated in parallel processes."""
    jobs = [(i, seed, shape) for i in range(1, n + 1)]
    if workers <= 1:
        return [_phantom(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(_phantom, jobs))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_cases(model, cases: list[Case], repeats: int) -> tuple[float, list[np.ndarray]]:
    """Mean seconds per case of :func:`segment_case` over ``repeats`` passes (after warm-up)."""
    labels = [segment_case(model, cases[0])]  # warm-up: cuDNN autotuning, allocator
    _sync(model.device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        labels = [segment_case(model, c) for c in cases]
    _sync(model.device)
    return (time.perf_counter() - t0) / (repeats * len(cases)), labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes on the CPU (tests)")
    parser.add_argument("--dim", choices=("2d", "3d", "both"), default="2d")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-cases", type=int, default=6)
    parser.add_argument("--test-cases", type=int, default=4)
    parser.add_argument("--train-minutes", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = resolve_device("cpu" if args.quick else args.device)
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    if args.quick:
        args.train_cases, args.test_cases, args.repeats = 2, 2, 1
    t0 = time.perf_counter()
    cases = make_cases(
        args.train_cases + args.test_cases, args.seed, shape, 1 if args.quick else 12
    )
    synth_s = time.perf_counter() - t0
    train, test = cases[: args.train_cases], cases[args.train_cases :]
    dims = ["2d", "3d"] if args.dim == "both" else [args.dim]
    all_figures = []
    for dim in dims:
        minutes = args.train_minutes / len(dims)
        all_figures.append(run_dim(dim, train, test, device, shape, minutes, synth_s, args))
    if args.json:
        args.json.write_text(json.dumps(all_figures, indent=2))


def run_dim(dim, train, test, device, shape, minutes, synth_s, args) -> dict:
    """Train one model briefly, then time AMP and fp32 inference on the test cases."""
    config = SegmentationConfig.default(dim, train[0].modalities)
    if args.quick:
        config.channels, config.strides = [8, 16, 32], [2, 2]
        config.patch_size = [32, 32] if dim == "2d" else [16, 32, 32]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = train_segmentation(
            train,
            Path(tmp) / "model.pt",
            config=config,
            epochs=2 if args.quick else 1000,
            time_limit=None if args.quick else minutes,
            device=device,
            val_fraction=0.0,
            seed=args.seed,
            steps_per_epoch=4 if args.quick else None,
            progress=False,
        )
        train_s = time.perf_counter() - t0
        model = load_model(result.best_path, device=device, amp=True)
        amp_s, labels = time_cases(model, test, args.repeats)
        model.amp = False
        fp32_s, _ = time_cases(model, test, args.repeats)
    epochs = len(result.history)
    dice = {
        r: float(
            np.mean(
                [case_scores(lab, c.labels)[r]["dice"] for lab, c in zip(labels, test, strict=True)]
            )
        )
        for r in ("WT", "TC", "ET")
    }
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"\ndevice: {name}; {dim} model; cases {shape[2]}x{shape[1]}x{shape[0]} (x*y*z)")
    print(f"trained {train_s:.0f} s ({epochs} epochs) on {len(train)} synthetic cases")
    print(
        f"inference with mixed precision: {amp_s:.3f} s/case, {1 / amp_s:.2f} cases/s "
        f"(target <= 1 s/case on one H100)"
    )
    print(f"baseline fp32: {fp32_s:.3f} s/case; ratio fp32/AMP = {fp32_s / amp_s:.2f}")
    print("synthetic test Dice: " + ", ".join(f"{k} {v:.3f}" for k, v in dice.items()))
    return {
        "device": name,
        "dim": dim,
        "shape_zyx": list(shape),
        "amp": device.type == "cuda",
        "synthesis_seconds": round(synth_s, 1),
        "train_seconds": round(train_s, 1),
        "epochs": epochs,
        "seconds_per_case_amp": round(amp_s, 4),
        "cases_per_second_amp": round(1 / amp_s, 2),
        "seconds_per_case_fp32": round(fp32_s, 4),
        "fp32_over_amp": round(fp32_s / amp_s, 2),
        "synthetic_test_dice": {k: round(v, 3) for k, v in dice.items()},
    }


if __name__ == "__main__":
    main()
