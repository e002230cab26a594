"""Benchmark: assembling a Kaggle-pack volume vs reading the same datasets with plain h5py.

Builds one full-size pack volume (155 slices of 240 x 240, float64 image with 4 channels, uint8
one-hot mask) in a temporary folder with ``write_kaggle_volume``, then times, interleaved and
repeated (median of ``--repeats``):

- baseline ``plain h5py loop``: open each slice file, read ``image`` and ``mask`` into numpy;
- ``radsurv assemble``: :func:`radsurv.data.hdf5.read_volume` (the same reads plus checks,
  float32 per-modality volumes and canonical labels);
- ``cached re-read``: :func:`radsurv.data.cache.read_volume_cached` on a warm cache entry.

A second reference, h5py ``read_direct`` into one preallocated array, is printed too: most of
what radsurv saves over the baseline comes from reusing its read buffers.

Prints absolute times and the ratio assemble / baseline (target <= 1.2).

Usage: ``.venv/bin/python bench/bench_hdf5.py [--repeats 7] [--slices 155] [--size 240]``
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from radsurv.data.cache import read_volume_cached
from radsurv.data.case import Case
from radsurv.data.hdf5 import read_volume, scan_pack, write_kaggle_volume


def make_volume(shape: tuple[int, int, int], seed: int = 0) -> Case:
    """A head-like volume: a noisy ellipsoid brain (0 outside) with a three-part tumour."""
    rng = np.random.default_rng(seed)
    zz, yy, xx = np.meshgrid(
        *[np.linspace(-1, 1, n, dtype=np.float32) for n in shape], indexing="ij"
    )
    brain = (zz / 0.9) ** 2 + (yy / 0.85) ** 2 + (xx / 0.75) ** 2 < 0.8
    dist = np.sqrt((zz - 0.1) ** 2 + (yy + 0.2) ** 2 + (xx - 0.15) ** 2)
    labels = np.zeros(shape, dtype=np.uint8)
    labels[(dist < 0.35) & brain] = 2
    labels[(dist < 0.2) & brain] = 4
    labels[(dist < 0.1) & brain] = 1
    images = {}
    for i, name in enumerate(("flair", "t1", "t1gd", "t2")):
        img = (300 + 40 * i + 20 * rng.standard_normal(shape)).astype(np.float32)
        img[labels > 0] *= 1.5
        img[~brain] = 0
        images[name] = img
    return Case("bench", images, labels)


def plain_h5py_loop(files: list[Path]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The baseline: read every slice's image and mask datasets, nothing else."""
    out = []
    for path in files:
        with h5py.File(path, "r") as f:
            out.append((f["image"][()], f["mask"][()]))
    return out


def preallocated_h5py_loop(files: list[Path]) -> np.ndarray:
    """A second reference: read_direct into one preallocated (z, y, x, c) float64 array."""
    with h5py.File(files[0], "r") as f:
        shape = f["image"].shape
    out = np.empty((len(files), *shape), dtype=np.float64)
    masks = np.empty((len(files), *shape[:2], 3), dtype=np.uint8)
    for z, path in enumerate(files):
        with h5py.File(path, "r") as f:
            f["image"].read_direct(out, dest_sel=np.s_[z])
            f["mask"].read_direct(masks, dest_sel=np.s_[z])
    return out


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--slices", type=int, default=155)
    parser.add_argument("--size", type=int, default=240)
    args = parser.parse_args()
    shape = (args.slices, args.size, args.size)
    with tempfile.TemporaryDirectory(prefix="radsurv-bench-") as tmp:
        root = Path(tmp)
        write_kaggle_volume(make_volume(shape), root / "data", volume=1)
        pv = scan_pack(root / "data")["BraTS20_Training_001"]
        files = [pv.files[s] for s in sorted(pv.files)]
        # warm the page cache and imports once, untimed
        plain_h5py_loop(files)
        read_volume(pv)
        base, prealloc, ours = [], [], []
        for _ in range(args.repeats):
            base.append(timed(lambda: plain_h5py_loop(files)))
            prealloc.append(timed(lambda: preallocated_h5py_loop(files)))
            ours.append(timed(lambda: read_volume(pv)))
        cache_dir = root / "cache"
        miss = timed(lambda: read_volume_cached(pv, cache_dir))
        hits = [timed(lambda: read_volume_cached(pv, cache_dir)) for _ in range(args.repeats)]
        cache_bytes = sum(p.stat().st_size for p in cache_dir.iterdir())
    b, o, h = statistics.median(base), statistics.median(ours), statistics.median(hits)
    print(f"volume: {args.slices} slices of {args.size}x{args.size}, float64 image x4, uint8 mask")
    print(f"baseline plain h5py loop : {b * 1000:8.1f} ms (median of {args.repeats})")
    p = statistics.median(prealloc)
    print(f"h5py read_direct, prealloc: {p * 1000:7.1f} ms (a second reference)")
    print(f"radsurv assemble         : {o * 1000:8.1f} ms")
    print(f"ratio assemble / baseline: {o / b:8.2f}   (target <= 1.2)")
    print(f"cache first access (miss): {miss * 1000:8.1f} ms (assemble + write)")
    print(f"cached re-read (hit)     : {h * 1000:8.1f} ms ({cache_bytes / 2**20:.0f} MiB entry)")
    print(f"ratio cached / baseline  : {h / b:8.2f}")


if __name__ == "__main__":
    main()
