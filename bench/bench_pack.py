"""Benchmark: scan, manifest (with checksums) and check a full-size Kaggle pack layout.

Builds, in a temporary folder, a synthetic pack with the full file count of the Kaggle pack
(369 volumes x 155 slices = 57,195 slice files, ``BraTS2020_training_data/content/data``):

- ``--full`` volumes (default 4, spread over the pack) hold full-size slice content as the pack
  stores it: ``image`` (240, 240, 4) float64, ``mask`` (240, 240, 3) uint8 one-hot
  (:func:`radsurv.data.hdf5.write_kaggle_volume` of a head-like phantom);
- every other volume holds tiny slices (``image`` (2, 2, 4) float64, ``mask`` (2, 2, 3) uint8;
  the same bytes in every file), so the file count, names and listing are real but the content
  costs little.

Measured, in this run:

1. on the full-layout pack, wall time of ``scan_pack`` (one listing of 57,195 names),
   ``build_manifest`` with checksums and ``check_dataset``, each with ``--jobs 1`` (the
   baseline) and ``--jobs 2``;
2. per volume, in this process: the manifest row (with checksum) and the check of a
   full-size volume and of a tiny one;
3. on a pack of 16 full-size volumes (links to the files of those above), manifest and check
   with ``--jobs 1`` and ``--jobs 2``: the speed-up on full-size content.

The machine's load average is printed with the figures: on a shared machine other work takes
cores from ``--jobs 2``.

Extrapolated (and printed as such): the same commands on 369 full-size volumes,
``t(jobs) = t_layout(jobs) + n_tiny * (t_full_volume - t_tiny_volume) / speedup_full(jobs)``
(speed-up 1 for ``--jobs 1``): the layout run's time with each tiny volume's per-volume cost
replaced by a full-size volume's. The process pool's start (a fork server importing pandas,
h5py and radsurv, once per process) is measured apart and added once to ``--jobs 2``.

Usage: ``.venv/bin/python bench/bench_pack.py [--volumes 369] [--slices 155] [--full 4]
[--tmp /tmp] [--quick]`` (``--quick``: 6 volumes x 4 slices, 2 full-size, for a smoke test).
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np

from radsurv.data.case import Case
from radsurv.data.check import check_dataset
from radsurv.data.formats import CaseEntry, ReadOptions, get_format
from radsurv.data.hdf5 import PACK_SUBDIR, scan_pack, slice_filename, write_kaggle_volume
from radsurv.data.manifest import build_manifest
from radsurv.data.parallel import map_ordered


def make_volume(shape: tuple[int, int, int], seed: int) -> Case:
    """bench_hdf5's head-like phantom (a script beside this one)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_hdf5 import make_volume as phantom

    return phantom(shape, seed)


def tiny_slice_bytes() -> bytes:
    """The bytes of one tiny slice file (written once, copied into every tiny slice)."""
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    with h5py.File(buf, "w") as f:
        f.create_dataset("image", data=rng.normal(size=(2, 2, 4)))
        mask = np.zeros((2, 2, 3), dtype=np.uint8)
        mask[0, 0, 1] = 1
        f.create_dataset("mask", data=mask)
    return buf.getvalue()


def full_volumes(n_volumes: int, n_full: int) -> list[int]:
    """Volume numbers of the full-size volumes, spread over 1..n_volumes."""
    return sorted({int(round(v)) for v in np.linspace(1, n_volumes, n_full)})


def build_pack(root: Path, n_volumes: int, n_slices: int, full: list[int]) -> Path:
    folder = root / PACK_SUBDIR
    folder.mkdir(parents=True)
    tiny = tiny_slice_bytes()
    for volume in range(1, n_volumes + 1):
        if volume in full:
            write_kaggle_volume(make_volume((n_slices, 240, 240), seed=volume), folder, volume)
            continue
        for z in range(n_slices):
            with open(folder / slice_filename(volume, z), "wb") as f:
                f.write(tiny)
    return folder


def link_pack(folder: Path, dst: Path, volumes: list[int], n_slices: int, copies: int) -> Path:
    """A pack of ``copies`` x ``volumes`` full-size volumes: links to their slice files under new
    volume numbers (enough volumes that the process pool's start does not dominate)."""
    out = dst / PACK_SUBDIR
    out.mkdir(parents=True)
    number = 0
    for _ in range(copies):
        for volume in volumes:
            number += 1
            for z in range(n_slices):
                os.symlink(folder / slice_filename(volume, z), out / slice_filename(number, z))
    return dst


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def per_volume(folder: Path, volumes: list[int]) -> dict[str, float]:
    """Median seconds per volume of a manifest row (with checksum) and of a check."""
    packs = scan_pack(folder)
    kaggle = get_format("kaggle")
    options = ReadOptions()
    rows, checks = [], []
    for volume in volumes:
        pv = packs[f"BraTS20_Training_{volume:03d}"]
        entry = CaseEntry(pv.case_id, pv, folder)
        rows.append(timed(lambda e=entry: kaggle.manifest_row(e, "data", True, options))[0])
        checks.append(timed(lambda p=pv: kaggle.validate(p, options))[0])
    return {"manifest": statistics.median(rows), "check": statistics.median(checks)}


def load() -> str:
    """The 1-minute load average and the core count: other work on the machine slows a run."""
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def run_commands(pack: Path, out: Path, jobs: int) -> dict[str, float]:
    t_manifest, df = timed(
        lambda: build_manifest(pack, relative_to=out, find_tables=False, checksum=True, jobs=jobs)
    )
    t_check, report = timed(lambda: check_dataset(pack, jobs=jobs))
    assert (df["problem"] == "").all(), df[df["problem"] != ""]
    assert report.ok, report.summary()
    return {"manifest": t_manifest, "check": t_check, "cases": len(df)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", type=int, default=369)
    parser.add_argument("--slices", type=int, default=155)
    parser.add_argument("--full", type=int, default=4, help="full-size volumes (>= 2)")
    parser.add_argument("--tmp", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--quick", action="store_true", help="6 volumes x 4 slices, 2 full")
    args = parser.parse_args()
    if args.quick:
        args.volumes, args.slices, args.full = 6, 4, 2
    full = full_volumes(args.volumes, max(2, args.full))
    tiny = [v for v in range(1, args.volumes + 1) if v not in full]
    work = Path(tempfile.mkdtemp(prefix="radsurv-bench-pack-", dir=args.tmp))
    try:
        t_build, folder = timed(lambda: build_pack(work / "pack", args.volumes, args.slices, full))
        n_files = sum(1 for _ in os.scandir(folder))
        print(f"machine: {load()}")
        print(
            f"synthetic pack: {args.volumes} volumes x {args.slices} slices = {n_files} files "
            f"({len(full)} full-size volumes {full}: image (240, 240, 4) float64, mask "
            f"(240, 240, 3) uint8; the others tiny); built in {t_build:.1f} s"
        )
        # the fork server starts (and imports pandas, h5py, radsurv) once per process
        t_pool, _ = timed(lambda: list(map_ordered(abs, [-1, -2], 2)))
        t_scan, volumes = timed(lambda: scan_pack(work / "pack"))
        assert len(volumes) == args.volumes
        print(f"\nMEASURED on the full file layout ({n_files} files)")
        print(f"  scan_pack (one listing):           {t_scan:8.2f} s")
        print(f"  process pool start (once per run): {t_pool:8.2f} s (not in the --jobs 2 times)")
        layout = {jobs: run_commands(work / "pack", work, jobs) for jobs in (1, 2)}
        print(f"  (machine: {load()} after these runs)")
        for what in ("manifest", "check"):
            one, two = layout[1][what], layout[2][what]
            print(
                f"  {what:8s} --jobs 1 (baseline): {one:8.2f} s   --jobs 2: {two:8.2f} s"
                f"   ratio jobs2/jobs1 {two / one:.2f}"
            )
        sample = tiny[:: max(1, len(tiny) // 8)][:8]
        vol_full = per_volume(folder, full)
        vol_tiny = per_volume(folder, sample)
        print(
            f"\nMEASURED per volume, in-process (median over {len(full)} full-size / "
            f"{len(sample)} tiny volumes of {args.slices} slices)"
        )
        for what in ("manifest", "check"):
            print(f"  {what:8s} full-size {vol_full[what]:7.3f} s   tiny {vol_tiny[what]:7.3f} s")
        copies = max(1, 16 // len(full))
        only_full = link_pack(folder, work / "full-only", full, args.slices, copies)
        full_runs = {jobs: run_commands(only_full, work, jobs) for jobs in (1, 2)}
        print(
            f"\nMEASURED on a pack of {copies * len(full)} full-size volumes (links to the "
            f"{len(full)} above, {copies} times each)"
        )
        speedup = {}
        for what in ("manifest", "check"):
            one, two = full_runs[1][what], full_runs[2][what]
            speedup[what] = one / two
            print(
                f"  {what:8s} --jobs 1 (baseline): {one:8.2f} s   --jobs 2: {two:8.2f} s"
                f"   speed-up {speedup[what]:.2f}x"
            )
        n_tiny = len(tiny)
        print(
            f"\nEXTRAPOLATED to {args.volumes} full-size volumes ({n_files} files): the layout "
            f"run with its {n_tiny} tiny volumes' per-volume cost replaced by a full-size one's"
        )
        for what in ("manifest", "check"):
            extra = n_tiny * (vol_full[what] - vol_tiny[what])
            one = layout[1][what] + extra
            two = layout[2][what] + extra / speedup[what] + t_pool
            print(
                f"  {what:8s} --jobs 1 (baseline): {one:8.1f} s ({one / 60:5.1f} min)   "
                f"--jobs 2: {two:8.1f} s ({two / 60:5.1f} min)   ratio jobs2/jobs1 "
                f"{two / one:.2f}"
            )
        print(f"  (--jobs 2 includes the pool start, {t_pool:.2f} s, once)")
        print(f"  scan_pack: {t_scan:.2f} s (measured: the listing does not depend on content)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
