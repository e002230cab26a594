"""GPU segmentation speed: whole-case inference per 240x240x155 case, and training throughput.

Trains briefly on a synthetic full-size cohort (radsurv.data.synthetic phantoms), then times,
in the same run and on the same cases:

- the fast path: :func:`radsurv.segmentation.segment_case` with bfloat16 autocast on CUDA,
  channels-last, the case resident on the device from the raw images to the uint8 labels
  (normalisation, network, sigmoid, thresholds, labels) and post-processing inside the
  tumour's box; optionally ``--compile`` (``torch.compile``);
- the named baselines: ``fp32`` (the same path without autocast) and ``host`` (normalisation,
  thresholds and whole-volume post-processing on the CPU, the division of work before issue
  13), each as a ratio to the fast path;
- the cost of mirror TTA (4 flips for 2D, 8 for 3D) as a ratio to the fast path;
- the fast path split into stages (upload + normalisation, network, labels + copy back,
  post-processing), and how many voxels the fp32 and bf16 labels share;
- training throughput: slices (2D crops) or patches (3D) per second from the training run's
  epochs after the first, and the epoch time extrapolated to the full Kaggle pack
  (369 cases x 155 slices = 57,195 slices).

Target: <= 0.3 s per 240x240x155 case on one H100/H200 (the fast path, 2D, without TTA).

On the device machine (one H200), from the repository root, with the project's environment::

    python bench/gpu_segment.py --json gpu_segment.json          # 2D UNet, about 3 minutes
    python bench/gpu_segment.py --dim both --compile              # and SegResNet; torch.compile

A 240x240x155 case on the CPU (slow: minutes)::

    python bench/gpu_segment.py --device cpu --train-cases 2 --test-cases 1 --repeats 1 \\
        --train-minutes 0.5 --workers 2

``--quick`` runs tiny shapes on the CPU in seconds (what the test suite runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from collections.abc import Callable
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
    postprocess_labels,
    segment_case,
    train_segmentation,
)
from radsurv.segmentation.device import resolve_device
from radsurv.segmentation.inference import (
    infer_probabilities,
    normalise_arrays,
    probabilities_tensor,
    tta_flips,
)
from radsurv.segmentation.preprocess import (
    case_input,
    present_images,
    regions_to_labels,
    regions_to_labels_tensor,
)

FULL_SHAPE = (155, 240, 240)
QUICK_SHAPE = (24, 48, 48)
PACK_SLICES = 369 * 155  # the Kaggle BraTS2020 pack: 369 volumes x 155 axial slices


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


def time_cases(
    fn: Callable[[Case], np.ndarray],
    cases: list[Case],
    repeats: int,
    device: torch.device,
    warm_all: bool = False,
) -> tuple[float, list[np.ndarray]]:
    """Mean seconds per case of ``fn`` over ``repeats`` passes, after a warm-up (cuDNN
    heuristics, the allocator; every case with ``warm_all``, as torch.compile compiles each
    new head-box shape)."""
    labels = [fn(c) for c in (cases if warm_all else cases[:1])]
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(repeats):
        labels = [fn(c) for c in cases]
    _sync(device)
    return (time.perf_counter() - t0) / (repeats * len(cases)), labels


def host_path(model, case: Case) -> np.ndarray:
    """The pre-issue-13 division of work: numpy normalisation, network on the device, host
    thresholds and whole-volume post-processing."""
    image = case_input(case, model.config)
    probs = infer_probabilities(model.members, image, model.config, model.device, model.amp)
    labels = regions_to_labels(probs > model.config.threshold)
    return postprocess_labels(labels, case.spacing, crop=False)


def stage_seconds(model, case: Case, repeats: int) -> dict[str, float]:
    """Seconds per stage of the fast path (synchronised after each, so slightly pessimistic)."""
    dev, cfg = model.device, model.config
    totals = dict.fromkeys(("upload_normalise", "network", "labels_to_host", "postprocess"), 0.0)
    for _ in range(repeats):
        t0 = time.perf_counter()
        names, arrays = present_images(case, cfg.modalities)
        image, box = normalise_arrays(arrays, names, case.case_id, dev)
        image = image[(slice(None), *box)]
        _sync(dev)
        t1 = time.perf_counter()
        probs = probabilities_tensor(model.members, image, cfg, dev, model.amp)
        _sync(dev)
        t2 = time.perf_counter()
        crop = regions_to_labels_tensor(probs > cfg.threshold).cpu().numpy()
        labels = np.zeros(case.shape, np.uint8)
        labels[box] = crop
        t3 = time.perf_counter()
        postprocess_labels(labels, case.spacing)
        t4 = time.perf_counter()
        for key, dt in zip(totals, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            totals[key] += dt / repeats
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny shapes on the CPU (tests)")
    parser.add_argument("--dim", choices=("2d", "3d", "both"), default="2d")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--train-cases", type=int, default=6)
    parser.add_argument("--test-cases", type=int, default=4)
    parser.add_argument("--train-minutes", type=float, default=1.5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=12, help="processes making phantoms")
    parser.add_argument("--compile", action="store_true", help="torch.compile the fast path")
    parser.add_argument("--no-host", action="store_true", help="skip the host-path baseline")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    device = resolve_device("cpu" if args.quick else args.device)
    shape = QUICK_SHAPE if args.quick else FULL_SHAPE
    if args.quick:
        args.train_cases, args.test_cases, args.repeats, args.workers = 2, 1, 1, 1
    t0 = time.perf_counter()
    cases = make_cases(args.train_cases + args.test_cases, args.seed, shape, args.workers)
    synth_s = time.perf_counter() - t0
    train, test = cases[: args.train_cases], cases[args.train_cases :]
    dims = ["2d", "3d"] if args.dim == "both" else [args.dim]
    all_figures = []
    for dim in dims:
        minutes = args.train_minutes / len(dims)
        all_figures.append(run_dim(dim, train, test, device, shape, minutes, synth_s, args))
    if args.json:
        args.json.write_text(json.dumps(all_figures, indent=2))


def _training_throughput(history: list[dict], steps: int, batch: int) -> float:
    """Samples per second over the epochs after the first (which pays the warm-up)."""
    seconds = [h["seconds"] for h in history[1:]] or [h["seconds"] for h in history]
    return steps * batch / float(np.median(seconds))


def run_dim(dim, train, test, device, shape, minutes, synth_s, args) -> dict:
    """Train one model briefly, then time the fast path and its baselines on the test cases."""
    config = SegmentationConfig.default(dim, train[0].modalities, device.type)
    if args.quick:
        config.channels, config.strides = [8, 16, 32], [2, 2]
        config.patch_size = [32, 32] if dim == "2d" else [16, 32, 32]
    cuda = device.type == "cuda"
    batch = (32 if dim == "2d" else 2) if cuda else (4 if args.quick else 16 if dim == "2d" else 1)
    steps = 4 if args.quick else 100 if cuda else 20
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
            batch_size=batch,
            steps_per_epoch=steps,
            progress=False,
        )
        train_s = time.perf_counter() - t0
        model = load_model(result.best_path, device=device, amp=True, compile=args.compile)
    r = args.repeats
    warm = bool(args.compile)
    fast_s, labels = time_cases(lambda c: segment_case(model, c), test, r, device, warm)
    stages = stage_seconds(model, test[0], r)
    tta_s, _ = time_cases(lambda c: segment_case(model, c, tta=True), test, r, device, warm)
    host_s = None
    if not args.no_host:
        host_s, _ = time_cases(lambda c: host_path(model, c), test, r, device, warm)
    model.amp = False
    fp32_s, fp32_labels = time_cases(lambda c: segment_case(model, c), test, r, device, warm)
    agreement = float(np.mean([np.mean(a == b) for a, b in zip(labels, fp32_labels, strict=True)]))
    samples_s = _training_throughput(result.history, steps, batch)
    dice = {
        reg: float(
            np.mean(
                [
                    case_scores(lab, c.labels)[reg]["dice"]
                    for lab, c in zip(labels, test, strict=True)
                ]
            )
        )
        for reg in ("WT", "TC", "ET")
    }
    name = torch.cuda.get_device_name(device) if cuda else "CPU"
    precision = (
        ("bf16" if torch.cuda.is_bf16_supported() else "fp16") + " autocast" if cuda else "fp32"
    )
    n_flips = len(tta_flips(dim))
    unit = "slices" if dim == "2d" else "patches"
    crop = "x".join(map(str, config.patch_size))
    print(f"\ndevice: {name}; {dim} model; cases {shape[2]}x{shape[1]}x{shape[0]} (x*y*z)")
    print(f"trained {train_s:.0f} s ({len(result.history)} epochs) on {len(train)} synthetic cases")
    what = "channels-last, device-resident" if cuda else "CPU: numpy normalisation"
    print(
        f"fast path ({precision}, {what}"
        f"{', torch.compile' if args.compile else ''}): {fast_s:.3f} s/case, "
        f"{1 / fast_s:.2f} cases/s (target <= 0.3 s/case on one H100/H200)"
    )
    tf32 = " (no autocast; cuDNN's default TF32 convolutions)" if cuda else ""
    print(f"baseline fp32{tf32}: {fp32_s:.3f} s/case; ratio fp32/AMP = {fp32_s / fast_s:.2f}")
    if host_s is not None:
        print(
            f"baseline host (numpy normalisation, host thresholds and whole-volume "
            f"post-processing): {host_s:.3f} s/case; ratio host/fast = {host_s / fast_s:.2f}"
        )
    print(f"TTA ({n_flips} flips): {tta_s:.3f} s/case; ratio TTA/fast = {tta_s / fast_s:.2f}")
    print(
        "fast path stages (s): "
        + ", ".join(f"{k.replace('_', ' ')} {v:.3f}" for k, v in stages.items())
    )
    print(f"labels identical between fp32 and {precision}: {100 * agreement:.3f} % of voxels")
    print(
        f"training throughput: {samples_s:.0f} {unit}/s (batch {batch} of {crop} crops, "
        f"{precision}); an epoch over the pack's {PACK_SLICES:,} slices would take "
        f"{PACK_SLICES / samples_s:.0f} s (extrapolated)"
    )
    print("synthetic test Dice: " + ", ".join(f"{k} {v:.3f}" for k, v in dice.items()))
    return {
        "device": name,
        "dim": dim,
        "shape_zyx": list(shape),
        "amp": cuda,
        "precision": precision,
        "compile": bool(args.compile),
        "synthesis_seconds": round(synth_s, 1),
        "train_seconds": round(train_s, 1),
        "epochs": len(result.history),
        "seconds_per_case_amp": round(fast_s, 4),
        "cases_per_second_amp": round(1 / fast_s, 2),
        "seconds_per_case_fp32": round(fp32_s, 4),
        "fp32_over_amp": round(fp32_s / fast_s, 2),
        "seconds_per_case_host": None if host_s is None else round(host_s, 4),
        "host_over_fast": None if host_s is None else round(host_s / fast_s, 2),
        "seconds_per_case_tta": round(tta_s, 4),
        "tta_flips": n_flips,
        "tta_over_fast": round(tta_s / fast_s, 2),
        "fast_stage_seconds": {k: round(v, 4) for k, v in stages.items()},
        "fp32_amp_label_agreement": round(agreement, 6),
        "train_samples_per_second": round(samples_s, 1),
        "train_batch": batch,
        "train_crop": list(config.patch_size),
        "pack_epoch_seconds_extrapolated": round(PACK_SLICES / samples_s, 1),
        "synthetic_test_dice": {k: round(v, 3) for k, v in dice.items()},
    }


if __name__ == "__main__":
    main()
