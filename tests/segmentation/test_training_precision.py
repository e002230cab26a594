"""Training arithmetic: bfloat16 autocast on CPUs that compute it natively, float32 elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from radsurv.cli import app
from radsurv.segmentation import device as device_module
from radsurv.segmentation import train_segmentation
from radsurv.segmentation.checkpoint import read_checkpoint
from radsurv.segmentation.device import (
    cpu_flags_have_native_bf16,
    needs_grad_scaler,
    training_autocast,
    training_precision,
)
from radsurv.segmentation.train import _training_memory_format

from .conftest import tiny_config

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")
# a shortened /proc/cpuinfo of an AVX-512 CPU without bfloat16 (Intel Ice Lake); "vmx flags" is
# a line of its own on Intel CPUs and must not be read as the CPU's flags
CPUINFO = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse2 avx2 avx512f avx512dq avx512bw avx512vl avx512_vnni{extra}
vmx flags\t: vnmi preemption_timer{vmx}
"""


@pytest.mark.parametrize(
    ("extra", "vmx", "native"),
    [
        ("", "", False),
        (" avx512_bf16", "", True),  # Cooper Lake, Zen 4
        (" amx_bf16 amx_tile amx_int8", "", True),  # Sapphire Rapids
        ("", " avx512_bf16", False),  # only in another line's list: not the CPU's flags
        (" avx512_bf16x", "", False),  # a longer name is not the flag
    ],
)
def test_native_bf16_is_read_from_the_cpu_flags(extra, vmx, native):
    assert cpu_flags_have_native_bf16(CPUINFO.format(extra=extra, vmx=vmx)) is native
    assert cpu_flags_have_native_bf16("processor : 0\n") is False  # no flags line at all


@pytest.fixture
def native_bf16(monkeypatch):
    """Pretend the CPU has (True) or lacks (False) native bfloat16."""

    def set_native(value: bool) -> None:
        monkeypatch.setattr(device_module, "cpu_has_native_bf16", lambda: value)

    return set_native


def test_precision_follows_the_cpu_the_dim_and_amp(native_bf16):
    native_bf16(True)
    assert training_precision(CPU, dim="3d") == "bf16"
    assert training_precision(CPU, amp=False, dim="3d") == "fp32"
    assert training_precision(CPU, dim="2d") == "fp32"  # measured not to pay in 2D
    assert not needs_grad_scaler(CPU)  # bfloat16 keeps float32's exponent range
    native_bf16(False)
    assert training_precision(CPU, dim="3d") == "fp32"


def test_autocast_computes_convolutions_in_bf16_only_where_chosen(native_bf16):
    conv = torch.nn.Conv3d(2, 3, 3)
    x = torch.randn(1, 2, 6, 8, 8)
    native_bf16(True)
    with training_autocast(CPU, dim="3d"):
        assert conv(x).dtype == torch.bfloat16
    for off in (training_autocast(CPU, amp=False, dim="3d"), training_autocast(CPU, dim="2d")):
        with off:
            assert conv(x).dtype == torch.float32
    native_bf16(False)
    with training_autocast(CPU, dim="3d"):
        assert conv(x).dtype == torch.float32
    assert not torch.is_autocast_enabled("cpu")  # nothing leaks out of the blocks


def test_channels_last_wherever_it_was_measured_faster():
    two_d, three_d = tiny_config(dim="2d"), tiny_config(dim="3d")
    cuda = torch.device("cuda")  # only compared, never used
    assert _training_memory_format(two_d, CPU, "fp32") == torch.channels_last
    assert _training_memory_format(three_d, CPU, "fp32") == torch.channels_last_3d
    assert _training_memory_format(three_d, CPU, "bf16") == torch.contiguous_format
    assert _training_memory_format(three_d, cuda, "bf16") == torch.channels_last_3d


def _train(cases, out: Path, amp: bool, dim: str) -> list[dict]:
    result = train_segmentation(
        cases,
        out,
        config=tiny_config(["flair", "t1gd"], dim=dim),
        epochs=2,
        val_fraction=0,
        seed=4,
        batch_size=2,
        steps_per_epoch=2,
        amp=amp,
        progress=False,
    )
    return result.history


def test_bf16_training_is_recorded_deterministic_and_keeps_float32_weights(
    tiny_cases, tmp_path, native_bf16
):
    native_bf16(True)
    runs = {}
    for name, amp in (("a", True), ("b", True), ("fp32", False)):
        history = _train(tiny_cases[:2], tmp_path / name / "m.pt", amp, "3d")
        assert [h["precision"] for h in history] == ["bf16" if amp else "fp32"] * 2
        runs[name] = torch.load(tmp_path / name / "m.pt", weights_only=True)["state_dict"]
    a, b, fp32 = runs["a"], runs["b"], runs["fp32"]
    floats = [k for k, v in a.items() if v.is_floating_point()]
    assert floats and all(a[k].dtype == torch.float32 for k in floats)  # autocast, not .half()
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same machine: same model
    # the arithmetic did change: bf16 steps move the weights elsewhere than float32 steps
    assert not all(torch.equal(a[k], fp32[k]) for k in floats)
    assert max(float((a[k] - fp32[k]).abs().max()) for k in floats) < 0.1  # but not far


def test_2d_training_stays_float32_on_a_bf16_cpu(tiny_cases, tmp_path, native_bf16):
    native_bf16(True)
    history = _train(tiny_cases[:2], tmp_path / "m.pt", True, "2d")
    assert [h["precision"] for h in history] == ["fp32", "fp32"]


def test_cli_no_amp_trains_in_float32(small_manifest, tmp_path, native_bf16):
    native_bf16(True)
    runs = {}
    for flag in ("--amp", "--no-amp"):
        out = tmp_path / flag.strip("-") / "m.pt"
        args = [
            *("segment", "train", "-m", str(small_manifest), "-o", str(out), "--no-progress"),
            *("--dim", "3d", "--epochs", "1", "--steps-per-epoch", "1", "--batch-size", "1"),
            *("--modalities", "flair,t1gd", "--device", "cpu", "--val-fraction", "0", flag),
        ]
        res = CliRunner().invoke(app, args)
        assert res.exit_code == 0, res.output
        runs[flag] = read_checkpoint(out)[0]["history"][-1]["precision"]
    assert runs == {"--amp": "bf16", "--no-amp": "fp32"}


@pytest.mark.slow
def test_bench_train_cpu_runs_quick(tmp_path):
    out = tmp_path / "figures.json"
    script = ROOT / "bench" / "bench_train_cpu.py"
    proc = subprocess.run(
        [sys.executable, str(script), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "baseline amp=False (fp32)" in proc.stdout and "speed-up" in proc.stdout
    figures = json.loads(out.read_text())
    assert [d["dim"] for d in figures["dims"]] == ["2d", "3d"]
    expected = {"2d": "fp32", "3d": "bf16" if figures["native_bf16"] else "fp32"}
    for dim in figures["dims"]:
        assert dim["amp_precision"] == expected[dim["dim"]]
        assert dim["train_seconds_per_step_amp"] > 0 and dim["train_seconds_per_step_fp32"] > 0
        combos = {(r["arithmetic"], r["layout"]) for r in dim["step_seconds"]}
        assert len(combos) == 4 and ("fp32", "contiguous") in combos
        assert all(r["seconds"] > 0 for r in dim["step_seconds"])
    (two_d,) = [d for d in figures["dims"] if d["dim"] == "2d"]
    assert two_d["inference_seconds_channels_last"] > 0
    assert two_d["inference_max_logit_difference"] < 1e-4  # layout changes rounding only
