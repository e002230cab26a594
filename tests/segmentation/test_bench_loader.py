"""bench/bench_loader.py --quick runs and reports every loader against the h5py baseline."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]


def test_bench_loader_quick(tmp_path):
    path = ROOT / "bench" / "bench_loader.py"
    spec = importlib.util.spec_from_file_location("bench_loader", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        result = bench.main(["--quick", "--json", str(tmp_path / "r.json")])
        context = bench.main(["--quick", "--context-slices", "1"])
    finally:
        torch.set_num_threads(threads)
    assert json.loads((tmp_path / "r.json").read_text()) == result
    assert set(result["slices_per_s"]) == {"baseline", "stream", "mmap", "memory", "plain_workers"}
    assert all(v > 0 for v in result["slices_per_s"].values())
    assert result["samples"] == 64 and result["workers"] == 2
    assert result["context_slices"] == 0 and result["files_per_sample"] == 1.0
    # 2.5D reads each training slice with one neighbour on each side; the baselines read the
    # same files (fewer at the ends of the head box)
    assert context["context_slices"] == 1 and 2.0 < context["files_per_sample"] <= 3.0
