"""Benchmark: training samples per second from Kaggle-pack slice files (``--loader stream``).

Writes a synthetic pack of full-size slices (``--volumes`` volumes of 155 slices of 240 x 240,
float64 image with 4 channels, uint8 one-hot mask: the pack's layout; one phantom written under
every volume number, as its content does not change the reading cost) into a temporary folder
with ``write_kaggle_volume``, then times, interleaved and repeated (median of
``--repeats``), the same ``--samples`` training slices. A training slice is read with its
``--context-slices`` neighbours on each side (default 0, radsurv's plain 2D: one slice file
per sample; K: up to 2K + 1 files, fewer at the ends of the head box); rates are training
slices (samples) per second and the baselines read exactly the files the stream loader reads:

- baseline ``plain h5py``: one process opens each sample's slice files and reads
  ``h5py.File(path)['image'][()]`` and ``['mask'][()]``, nothing else;
- ``radsurv stream``: :class:`radsurv.segmentation.streaming.StreamingSliceDataset` through a
  torch DataLoader with ``--workers`` workers (2), batches of ``--batch-size``: each sample
  reads its slice file, normalises it with the per-volume statistics, crops the training patch
  and augments it (flips, intensity scale/shift, modality dropout 0.25);
- ``radsurv mmap``: :class:`~radsurv.segmentation.datasets.RandomPatchDataset` over
  memory-mapped prepared copies (``--loader mmap``), same DataLoader set-up and augmentation;
- ``radsurv memory``: the same over in-memory prepared volumes (``--loader memory``);
- reference ``plain h5py, N workers``: the baseline's reads in the same DataLoader set-up, to
  separate what the workers buy from what radsurv's per-sample work costs.

The DataLoaders keep their workers between passes (``persistent_workers``, as training does),
so worker start-up is paid once, before timing.

Also prints the one-off statistics pass (read, check and index each volume once) per volume.
The files were just written, so every run reads from the page cache, like a pack on a fast
local disk that fits in memory. The temporary pack is removed at the end.

Usage: ``python bench/bench_loader.py [--volumes 4] [--samples 1024] [--workers 2]
[--repeats 3] [--context-slices K] [--quick] [--json out.json]``; ``--quick``: 2 small
volumes, a few samples.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from radsurv.data.hdf5 import read_volume, scan_pack, write_kaggle_volume
from radsurv.data.synthetic import make_phantom_case
from radsurv.segmentation import SegmentationConfig
from radsurv.segmentation.datasets import RandomPatchDataset, prepare_volume
from radsurv.segmentation.streaming import (
    StreamingSliceDataset,
    StreamVolume,
    map_volume,
    stream_volume,
)


class _Recorder(StreamingSliceDataset):
    """Replays the stream dataset's draws and records the slice files each sample reads (its
    slice and the context slices inside the head box)."""

    def _patch(  # type: ignore[override]
        self, vol: StreamVolume, z: int, starts: list[int], size: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        (z0, z1), k = vol.box[0], self.config.context_slices
        inside = [zz for zz in range(z - k, z + k + 1) if 0 <= zz < z1 - z0]
        self.read.append([vol.files[z0 + zz] for zz in inside])
        image = np.zeros((len(vol.channels) * self.config.depth, *size), np.float32)
        return image, np.zeros((3, self.config.depth, *size), np.uint8)


def _read_files(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The image and mask datasets of a sample's slice files, nothing else."""
    images, masks = [], []
    for path in paths:
        with h5py.File(path, "r") as f:
            images.append(f["image"][()])
            masks.append(f["mask"][()])
    return np.stack(images), np.stack(masks)


class _PlainFiles(Dataset):
    def __init__(self, samples: list[list[str]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        return _read_files(self.samples[i])


def plain_h5py(samples: list[list[str]]) -> int:
    """The baseline: read each sample's slice files (image and mask) in one process."""
    n = 0
    for paths in samples:
        image, mask = _read_files(paths)
        n += image.shape[0] > 0 and mask.shape[0] > 0
    return n


def _drain(loader: DataLoader) -> int:
    n = 0
    for batch in loader:
        n += len(batch[0])
    return n


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=4)
    parser.add_argument("--slices", type=int, default=155)
    parser.add_argument("--size", type=int, default=240)
    parser.add_argument("--samples", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--context-slices",
        type=int,
        default=0,
        help="neighbouring slices read with each training slice on each side (2.5D; default 0)",
    )
    parser.add_argument("--quick", action="store_true", help="2 small volumes, 64 samples")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.quick:
        args.volumes, args.slices, args.size = 2, 16, 64
        args.samples, args.batch_size, args.repeats = 64, 8, 1
    torch.set_num_threads(1)
    shape = (args.slices, args.size, args.size)
    config = SegmentationConfig.default("2d", device_type="cuda")  # 128 x 128 crops, 4 channels
    config.modality_dropout = 0.25
    config.context_slices = args.context_slices
    config.validate()
    if args.quick:
        config.patch_size = [32, 32]
    with tempfile.TemporaryDirectory(prefix="radsurv-bench-loader-") as tmp:
        folder = Path(tmp) / "BraTS2020_training_data" / "content" / "data"
        t0 = time.perf_counter()
        phantom = make_phantom_case(1, 0, shape)  # one phantom, written as every volume
        for v in range(1, args.volumes + 1):
            write_kaggle_volume(phantom, folder, v)
        t_write = time.perf_counter() - t0
        cases = [read_volume(pv) for pv in scan_pack(folder).values()]
        t0 = time.perf_counter()
        volumes = [stream_volume(case, config) for case in cases]
        t_stats = (time.perf_counter() - t0) / len(volumes)
        t0 = time.perf_counter()
        mapped = [map_volume(case, config, folder=Path(tmp) / "mapped") for case in cases]
        t_map = (time.perf_counter() - t0) / len(volumes)
        prepared = [prepare_volume(case, config) for case in cases]
        del cases

        recorder = _Recorder(volumes, config, args.samples, seed=0)
        recorder.read = []
        for i in range(len(recorder)):
            recorder[i]
        files = recorder.read  # the slice files of each sample, in sample order
        assert len(files) == args.samples
        files_per_sample = sum(map(len, files)) / len(files)
        dataset = StreamingSliceDataset(volumes, config, args.samples, seed=0)
        # persistent workers, as training uses them: their start-up is paid once, not timed
        keep = {"num_workers": args.workers, "persistent_workers": args.workers > 0}
        loaders = {
            "stream": DataLoader(dataset, batch_size=args.batch_size, **keep),
            "mmap": DataLoader(
                RandomPatchDataset(mapped, config, args.samples, seed=0),
                batch_size=args.batch_size,
                **keep,
            ),
            "memory": DataLoader(
                RandomPatchDataset(prepared, config, args.samples, seed=0),
                batch_size=args.batch_size,
                **keep,
            ),
            "plain": DataLoader(_PlainFiles(files), batch_size=args.batch_size, **keep),
        }
        for loader in loaders.values():
            _drain(loader)  # start the workers

        def radsurv_stream() -> None:
            assert _drain(loaders["stream"]) == args.samples

        def plain_workers() -> None:
            assert _drain(loaders["plain"]) == args.samples

        def radsurv_mmap() -> None:
            assert _drain(loaders["mmap"]) == args.samples

        def radsurv_memory() -> None:
            assert _drain(loaders["memory"]) == args.samples

        def baseline() -> None:
            assert plain_h5py(files) == args.samples

        plain_h5py(files[: min(32, len(files))])  # warm-up: h5py import paths, page cache
        runs = {
            "baseline": baseline,
            "stream": radsurv_stream,
            "mmap": radsurv_mmap,
            "memory": radsurv_memory,
            "plain_workers": plain_workers,
        }
        times: dict[str, list[float]] = {k: [] for k in runs}
        for _ in range(args.repeats):
            for name, fn in runs.items():
                times[name].append(timed(fn))
        loaders.clear()  # stop the workers before the folder goes
    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: args.samples / v for k, v in med.items()}
    result = {
        "volumes": args.volumes,
        "slice_shape": [args.size, args.size],
        "samples": args.samples,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "patch_size": list(config.patch_size),
        "context_slices": config.context_slices,
        "files_per_sample": round(files_per_sample, 2),
        "write_s": round(t_write, 2),
        "stats_pass_s_per_volume": round(t_stats, 3),
        "mmap_copy_s_per_volume": round(t_map, 3),
        "seconds": {k: round(v, 3) for k, v in med.items()},
        "slices_per_s": {k: round(v, 1) for k, v in rate.items()},
        "ratio_stream_vs_baseline": round(rate["stream"] / rate["baseline"], 3),
        "ratio_stream_vs_plain_workers": round(rate["stream"] / rate["plain_workers"], 3),
        "ratio_mmap_vs_baseline": round(rate["mmap"] / rate["baseline"], 3),
    }
    w = args.workers
    print(
        f"synthetic pack: {args.volumes} volumes x {args.slices} slices of {args.size}x{args.size}"
        f" (written in {t_write:.1f} s); {args.samples} samples, batch {args.batch_size}, "
        f"patch {config.patch_size}, median of {args.repeats}; each training slice read with "
        f"{config.context_slices} context slice(s) on each side ({files_per_sample:.2f} files "
        "per sample; the baselines read the same files)"
    )
    print(f"stream statistics pass, per volume:  {t_stats:8.3f} s (once)")
    print(f"mmap prepared copy, per volume:      {t_map:8.3f} s (once)")
    print(f"baseline plain h5py, 1 process:      {rate['baseline']:8.1f} slices/s")
    print(f"radsurv stream + augment, {w} workers: {rate['stream']:8.1f} slices/s")
    print(f"radsurv mmap + augment, {w} workers:   {rate['mmap']:8.1f} slices/s")
    print(f"radsurv memory + augment, {w} workers: {rate['memory']:8.1f} slices/s")
    print(f"plain h5py, {w} workers (reference):  {rate['plain_workers']:8.1f} slices/s")
    print(f"ratio radsurv stream / baseline:     {result['ratio_stream_vs_baseline']:8.2f}")
    print(f"ratio radsurv stream / plain {w} wkr:  {result['ratio_stream_vs_plain_workers']:8.2f}")
    print(f"ratio radsurv mmap / baseline:       {result['ratio_mmap_vs_baseline']:8.2f}")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
