"""Speed of the segmentation networks on the CPU: training arithmetic and memory layout.

Three measurements, each against its named baseline in the same process, interleaved over
``--repeats`` rounds so that a change in the machine's load hits both alike:

1. ``train_segmentation`` itself, for a fixed number of epochs on the real BraTS 2015 cases
   (FLAIR + T1c; the first 3, as in a leave-one-out fold of ``bench_segment_real.py``), with
   radsurv's CPU defaults: ``amp=True`` (bfloat16 autocast for 3D where the CPU computes
   bfloat16 natively, see ``radsurv.segmentation.device.training_precision``; 2D trains in
   float32 either way) against the baseline ``amp=False`` (float32). Seconds per step are the
   median over the epochs after the first.
2. One training step of the same network on a random batch of the default crop size, in the
   four combinations of {float32, bfloat16 autocast} x {contiguous, channels-last}: the
   figures behind the choice of arithmetic and layout per dimensionality. Baseline: float32,
   contiguous (the path of the releases before this one). bfloat16 is timed even where the CPU
   lacks it natively (then emulated), so the figures show what that choice would cost there.
3. 2D only: inference, one forward pass of the same network without gradients over a batch of
   32 axial slices of 144 x 176 (a head box), channels-last against the baseline contiguous,
   with the largest difference of their logits.

    .venv/bin/python bench/bench_train_cpu.py
    .venv/bin/python bench/bench_train_cpu.py --dim 3d --repeats 5 --json train_cpu.json
    .venv/bin/python bench/bench_train_cpu.py --quick       # tiny phantoms (the test suite)
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_segment_real import DEFAULT_DATA, load_cases

from radsurv.data.case import Case
from radsurv.data.synthetic import make_phantom_case
from radsurv.segmentation import train_segmentation
from radsurv.segmentation.config import SegmentationConfig
from radsurv.segmentation.device import (
    configure_cpu_threads,
    cpu_has_native_bf16,
    training_precision,
)
from radsurv.segmentation.networks import build_network

QUICK_SHAPE = (24, 48, 48)
# steps per epoch and epochs of part 1 (CPU batch sizes are radsurv's defaults: 8 in 2D, 2 in 3D)
STEPS = {"2d": 50, "3d": 10}
EPOCHS = 3
LAYOUTS = {
    "2d": ("contiguous", "channels_last"),
    "3d": ("contiguous", "channels_last_3d"),
}


def cpu_config(dim: str, modalities: list[str], quick: bool) -> SegmentationConfig:
    """radsurv's CPU default for ``dim`` (tiny with ``quick``)."""
    config = SegmentationConfig.default(dim, modalities, "cpu")
    if quick:
        config.channels, config.strides = [8, 16, 32], [2, 2]
        config.patch_size = [32, 32] if dim == "2d" else [16, 32, 32]
    return config


def train_seconds_per_step(
    cases: list[Case], config: SegmentationConfig, amp: bool, steps: int, epochs: int
) -> tuple[float, str]:
    """Median seconds per step of ``train_segmentation`` (epochs after the first) and the
    arithmetic its history records."""
    with tempfile.TemporaryDirectory() as tmp:
        result = train_segmentation(
            cases,
            Path(tmp) / "model.pt",
            config=config,
            epochs=epochs,
            device="cpu",
            val_fraction=0.0,
            steps_per_epoch=steps,
            amp=amp,
            progress=False,
        )
    seconds = [h["seconds"] for h in result.history[1:]] or [result.history[0]["seconds"]]
    return float(np.median(seconds)) / steps, str(result.history[-1]["precision"])


def step_seconds(
    config: SegmentationConfig, batch: int, bf16: bool, layout: str, steps: int
) -> float:
    """Median seconds of one forward, backward and AdamW step on a random batch."""
    torch.manual_seed(0)
    network = build_network(config)
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
    x = torch.randn(batch, config.in_channels, *config.patch_size)
    y = (torch.rand(batch, config.out_channels, *config.patch_size) > 0.5).float()
    if layout != "contiguous":
        memory_format = getattr(torch, layout)
        network.to(memory_format=memory_format)
        x = x.contiguous(memory_format=memory_format)
    times = []
    for _ in range(steps + 2):  # the first two pay oneDNN's kernel selection
        t0 = time.perf_counter()
        context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()
        with context:
            logits = network(x)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        times.append(time.perf_counter() - t0)
    return float(np.median(times[2:]))


def inference_seconds(
    config: SegmentationConfig, shape: tuple[int, int, int], layout: str
) -> tuple[float, torch.Tensor]:
    """Median seconds of a 2D forward pass over ``shape`` = (slices, y, x), and its logits."""
    torch.manual_seed(0)
    memory_format = getattr(torch, layout)
    network = build_network(config).eval().to(memory_format=memory_format)
    inputs = torch.Generator().manual_seed(1)
    x = torch.randn(shape[0], config.in_channels, *shape[1:], generator=inputs)
    x = x.contiguous(memory_format=memory_format)
    times = []
    with torch.inference_mode():
        for _ in range(7):  # the first two pay oneDNN's kernel selection
            t0 = time.perf_counter()
            logits = network(x)
            times.append(time.perf_counter() - t0)
    return float(np.median(times[2:])), logits


def run_dim(dim: str, cases: list[Case], args: argparse.Namespace) -> dict[str, Any]:
    """The measurements for one dimensionality (inference: 2D only); prints them and returns
    the figures."""
    config = cpu_config(dim, cases[0].modalities, args.quick)
    steps = 3 if args.quick else STEPS[dim]
    epochs = 2 if args.quick else EPOCHS
    batch = 2 if dim == "3d" else 8
    api: dict[bool, list[float]] = {True: [], False: []}
    precision = "fp32"
    combos = [(bf16, layout) for bf16 in (False, True) for layout in LAYOUTS[dim]]
    micro: dict[tuple[bool, str], list[float]] = {c: [] for c in combos}
    for _ in range(args.repeats):
        for amp in (False, True):
            seconds, used = train_seconds_per_step(cases, config, amp, steps, epochs)
            api[amp].append(seconds)
            if amp:
                precision = used
        for bf16, layout in combos:
            micro[(bf16, layout)].append(step_seconds(config, batch, bf16, layout, steps))
    fp32_s, amp_s = float(np.median(api[False])), float(np.median(api[True]))
    print(f"\n{dim}: {config.channels} channels, crops {config.patch_size}, batch {batch}")
    print(
        f"  train_segmentation, amp=True ({precision}): {1000 * amp_s:.1f} ms/step; "
        f"baseline amp=False (fp32): {1000 * fp32_s:.1f} ms/step; "
        f"speed-up {fp32_s / amp_s:.2f}x"
    )
    base = float(np.median(micro[(False, "contiguous")]))
    rows = []
    for (bf16, layout), values in micro.items():
        seconds = float(np.median(values))
        arithmetic = "bf16" if bf16 else "fp32"
        print(
            f"  one step, {arithmetic}, {layout}: {1000 * seconds:.1f} ms "
            f"({base / seconds:.2f}x the baseline)"
        )
        rows.append({"arithmetic": arithmetic, "layout": layout, "seconds": seconds})
    inference = {}
    if dim == "2d":
        shape = (8, 48, 48) if args.quick else (32, 144, 176)
        runs = {layout: [] for layout in ("contiguous_format", "channels_last")}
        for _ in range(args.repeats):
            for layout, values in runs.items():
                values.append(inference_seconds(config, shape, layout))
        seconds = {layout: float(np.median([v[0] for v in vals])) for layout, vals in runs.items()}
        diff = float((runs["contiguous_format"][0][1] - runs["channels_last"][0][1]).abs().max())
        ratio = seconds["contiguous_format"] / seconds["channels_last"]
        print(
            f"  inference, {shape[0]} slices of {shape[1]}x{shape[2]}: channels-last "
            f"{1000 * seconds['channels_last']:.0f} ms; baseline contiguous "
            f"{1000 * seconds['contiguous_format']:.0f} ms; speed-up {ratio:.2f}x; "
            f"largest logit difference {diff:.1e}"
        )
        inference = {
            "inference_shape": list(shape),
            "inference_seconds_channels_last": seconds["channels_last"],
            "inference_seconds_contiguous": seconds["contiguous_format"],
            "inference_speedup_channels_last": ratio,
            "inference_max_logit_difference": diff,
        }
    return {
        **inference,
        "dim": dim,
        "channels": list(config.channels),
        "patch_size": list(config.patch_size),
        "batch": batch,
        "amp_precision": precision,
        "train_seconds_per_step_amp": amp_s,
        "train_seconds_per_step_fp32": fp32_s,
        "train_speedup_amp": fp32_s / amp_s,
        "step_seconds": rows,
        "step_baseline": "fp32, contiguous",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--dim", choices=("2d", "3d", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2 tiny phantoms (tests)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    threads = configure_cpu_threads()
    if args.quick:
        args.repeats = 1
        cases = [make_phantom_case(i, 0, QUICK_SHAPE) for i in (1, 2)]
    else:
        cases = load_cases(args.data)[:3]
    native = cpu_has_native_bf16()
    print(
        f"{threads} CPU thread(s); native bfloat16: {'yes' if native else 'no'}; "
        f"amp=True trains 2D in fp32 and 3D in {training_precision(torch.device('cpu'), dim='3d')}"
    )
    dims = ["2d", "3d"] if args.dim == "both" else [args.dim]
    figures = {"threads": threads, "native_bf16": native, "dims": []}
    for dim in dims:
        figures["dims"].append(run_dim(dim, cases, args))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
