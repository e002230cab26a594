"""Benchmark: a full-size cohort through the process pool and a real local Dask cluster.

Baseline (named ``processes --jobs N``): ``extract_features(manifest, jobs=N)``, the local
process pool. Compared with ``dask N workers``: a real cluster started here as processes on
127.0.0.1 (``dask scheduler`` + ``dask worker --nworkers N --nthreads 1 --memory-limit M``) and
``extract_features(manifest, dask=address)``. Both use the ``brats-original`` preset, all five
regions and four modalities, and must give byte-identical tables (checked).

Cohort: synthetic phantoms at the BraTS size 240x240x155 (1 mm), four modalities, written as
compressed NIfTI (BraTS 2020 layout) with a manifest. Generating a full-size phantom takes
~20 s, so ``--unique K`` phantoms are generated and the other cases are hard links to their
files under new case ids: every case is read, decompressed and computed in full, while the
disk holds only K cases (~0.1 GB each). The cohort is kept in ``--work`` and reused.

Prints, for each backend: wall time, cases/minute and cases/minute/core, the peak resident
memory of a worker process (largest over its tasks), and the time extrapolated to the 369
BraTS 2020 training cases on 2 cores and on a 64-core cluster (linear in cores: per-core rate
x cores; scheduling overhead is small next to seconds of CPU per case). The wall times
include the workers' first imports and depend on whatever else the machine runs: the median
task time per case and the load average are printed beside them to show contention.

    .venv/bin/python bench/bench_scale.py --cases 40           # the full benchmark
    .venv/bin/python bench/bench_scale.py --cases 4 --unique 2  # a quick check
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPE = (155, 240, 240)  # (z, y, x), the BraTS grid at 1 mm
N_BRATS = 369


def make_cohort(work: Path, n_cases: int, n_unique: int) -> Path:
    """The cohort's manifest (generated once per work folder)."""
    from radsurv.data.manifest import build_manifest, write_manifest
    from radsurv.data.nifti import write_nifti_case
    from radsurv.data.synthetic import make_phantom_case

    data = work / "data"
    manifest = work / f"manifest_{n_cases}_{n_unique}.csv"
    if manifest.is_file():
        return manifest
    data.mkdir(parents=True, exist_ok=True)
    generated_file = work / "generated.json"  # the distinct phantoms (the others are links)
    generated = set(json.loads(generated_file.read_text())) if generated_file.is_file() else set()
    for i in range(1, n_unique + 1):
        cid = f"BraTS20_Training_{i:03d}"
        if cid not in generated:
            if (data / cid).is_dir():  # links made by an earlier run with fewer phantoms
                for f in (data / cid).iterdir():
                    f.unlink()
            t0 = time.perf_counter()
            write_nifti_case(make_phantom_case(i, 0, SHAPE), data)
            print(f"  phantom {cid}: {time.perf_counter() - t0:.0f} s", flush=True)
            generated.add(cid)
            generated_file.write_text(json.dumps(sorted(generated)))
    for i in range(n_unique + 1, n_cases + 1):
        cid = f"BraTS20_Training_{i:03d}"
        src = f"BraTS20_Training_{(i - 1) % n_unique + 1:03d}"
        folder = data / cid
        folder.mkdir(exist_ok=True)
        for f in (data / src).iterdir():
            target = folder / f.name.replace(src, cid)
            target.unlink(missing_ok=True)
            os.link(f, target)
    # only the first n_cases folders: a work folder may hold more from an earlier run
    keep = {f"BraTS20_Training_{i:03d}" for i in range(1, n_cases + 1)}
    table = build_manifest(data, relative_to=work, checksum=False)
    table = table[table["case_id"].isin(keep)].reset_index(drop=True)
    return write_manifest(table, manifest)


class Cluster:
    """``dask scheduler`` + ``dask worker`` processes on loopback."""

    def __init__(self, work: Path, n_workers: int, memory_limit: str) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
        sched_file = work / "scheduler.json"
        sched_file.unlink(missing_ok=True)
        dask = [sys.executable, "-m"]
        log = open(work / "cluster.log", "ab")  # noqa: SIM115 - closed in close()
        self.log = log
        kw = {"env": env, "stdout": log, "stderr": subprocess.STDOUT, "start_new_session": True}
        self.procs = [
            subprocess.Popen(
                [*dask, "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                 "--no-dashboard", "--scheduler-file", str(sched_file)], **kw,
            )
        ]  # fmt: skip
        deadline = time.monotonic() + 120
        while not sched_file.is_file():
            if time.monotonic() > deadline:
                raise RuntimeError(f"no scheduler; see {work / 'cluster.log'}")
            time.sleep(0.1)
        self.address = json.loads(sched_file.read_text())["address"]
        self.procs.append(
            subprocess.Popen(
                [*dask, "distributed.cli.dask_worker", "--scheduler-file", str(sched_file),
                 "--host", "127.0.0.1", "--nworkers", str(n_workers), "--nthreads", "1",
                 "--memory-limit", memory_limit, "--no-dashboard",
                 "--local-directory", str(work / "dask-workers")], **kw,
            )
        )  # fmt: skip
        from distributed import Client

        with Client(self.address, timeout="60s") as client:
            client.wait_for_workers(n_workers, timeout=300)

    def close(self) -> None:
        for proc in reversed(self.procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        self.log.close()


def run(manifest: Path, out: Path, **backend) -> tuple[float, dict]:
    from radsurv.features.runner import extract_features

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = extract_features(manifest, output=out, force=True, progress=False, **backend)
    wall = time.perf_counter() - t0
    if res.failed:
        raise RuntimeError(f"failed cases: {res.failed}; see {out}")
    prov = dict(res.provenance)
    # task seconds per case: what the tasks themselves took (grows when cores are contended)
    prov["task_seconds_median"] = float(res.status["seconds"].median())
    prov["load"] = (round(load0, 1), round(os.getloadavg()[0], 1))
    return wall, prov


def report(name: str, n_cases: int, cores: int, wall: float, prov: dict) -> dict:
    rate = n_cases / wall * 60
    per_core = rate / cores
    peaks = prov["memory"]["peak_rss_mib"]
    peak = max((v["max"] for v in peaks.values()), default=float("nan"))
    row = {
        "backend": name,
        "cases": n_cases,
        "cores": cores,
        "wall_s": round(wall, 1),
        "cases_per_min": round(rate, 2),
        "cases_per_min_per_core": round(per_core, 3),
        "peak_worker_mib": peak,
        "peak_by_task_mib": {k: v["max"] for k, v in peaks.items()},
        "369_cases_2_cores_h": round(N_BRATS / (per_core * 2) / 60, 2),
        "369_cases_64_cores_min": round(N_BRATS / (per_core * 64), 1),
        "task_seconds_per_case_median": round(prov["task_seconds_median"], 2),
        "load_average_start_end": prov["load"],
    }
    print(
        f"{name:>22}: {wall:7.1f} s wall, {rate:6.2f} cases/min, {per_core:6.3f} "
        f"cases/min/core on {cores} cores; peak worker RSS {peak:.0f} MiB "
        f"({', '.join(f'{k} {v:.0f}' for k, v in row['peak_by_task_mib'].items())}); "
        f"369 cases: {row['369_cases_2_cores_h']:.2f} h on 2 cores, "
        f"{row['369_cases_64_cores_min']:.1f} min on 64 cores; task time per case "
        f"{row['task_seconds_per_case_median']:.1f} s (median), load average "
        f"{prov['load'][0]} -> {prov['load'][1]}",
        flush=True,
    )
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=40)
    ap.add_argument("--unique", type=int, default=4, help="distinct phantoms generated")
    ap.add_argument("--workers", type=int, default=2, help="pool processes and Dask workers")
    ap.add_argument("--memory-limit", default="2GiB", help="of each Dask worker")
    ap.add_argument("--work", type=Path, default=None, help="keeps and reuses the cohort")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = ap.parse_args()
    work = args.work or Path(tempfile.gettempdir()) / "radsurv-bench-scale"
    work.mkdir(parents=True, exist_ok=True)
    print(f"cohort: {args.cases} cases {SHAPE[2]}x{SHAPE[1]}x{SHAPE[0]}, 4 modalities, "
          f"{args.unique} distinct phantoms, in {work}", flush=True)  # fmt: skip
    manifest = make_cohort(work, args.cases, min(args.unique, args.cases))
    n = args.workers
    rows = []
    wall, prov = run(manifest, work / "pool.csv", jobs=n)
    rows.append(report(f"processes --jobs {n}", args.cases, n, wall, prov))
    cluster = Cluster(work, n, args.memory_limit)
    try:
        wall, prov = run(manifest, work / "dask.csv", dask=cluster.address)
    finally:
        cluster.close()
    rows.append(report(f"dask {n} workers", args.cases, n, wall, prov))
    same = (work / "pool.csv").read_bytes() == (work / "dask.csv").read_bytes()
    print(f"tables byte-identical: {same}")
    print(
        f"ratio dask / processes (wall): {rows[1]['wall_s'] / rows[0]['wall_s']:.2f}; "
        f"memory limit per Dask worker {args.memory_limit}, machine: {os.cpu_count()} cores"
    )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "identical": same}, indent=2))
    if not same:
        sys.exit(1)


if __name__ == "__main__":
    main()
