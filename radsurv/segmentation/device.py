"""Device choice (``auto``, ``cuda``, ``cpu``) and the per-device settings training uses."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import lru_cache
from pathlib import Path

import torch

from radsurv.errors import ConfigError

logger = logging.getLogger(__name__)

DEVICE_CHOICES: tuple[str, ...] = ("auto", "cuda", "cpu")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn ``auto``/``cuda``/``cpu`` (or ``cuda:1``) into a :class:`torch.device`.

    ``auto`` picks CUDA when available. Asking for ``cuda`` without one is a :class:`ConfigError`.
    """
    if isinstance(spec, torch.device):
        return spec
    text = str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--device {spec}: no CUDA device is available here; use --device cpu or auto"
            )
        return torch.device(text)
    if text == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"--device {spec!r} unknown; choose from {', '.join(DEVICE_CHOICES)}")


def configure_cpu_threads(max_threads: int | None = None) -> int:
    """Set torch's intra-op threads to the cores this process may use (capped); return it.

    Oversubscribing a shared machine makes every step slower, so the default uses the CPU
    affinity set, not the machine's core count.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    n = max(1, min(cores, max_threads or cores))
    torch.set_num_threads(n)
    return n


AUTOCAST_DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16}


def cuda_amp_precision() -> str:
    """Autocast arithmetic on CUDA: ``"bf16"`` where the GPU supports it, else ``"fp16"``."""
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


def autocast_at(device: torch.device, precision: str) -> AbstractContextManager:
    """Autocast at ``precision`` (``"bf16"``, ``"fp16"``) on ``device``; ``"fp32"``: a no-op."""
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


def autocast(device: torch.device, enabled: bool = True) -> AbstractContextManager:
    """Mixed precision on CUDA only (bfloat16 when supported, else float16); no-op on CPU."""
    use = device.type == "cuda" and enabled
    return autocast_at(device, cuda_amp_precision() if use else "fp32")


# CPU flags of native bfloat16 arithmetic (Intel AMX, AVX-512 BF16). Without them oneDNN
# emulates bfloat16, which can be slower than float32, so training stays in float32 there.
NATIVE_BF16_CPU_FLAGS: frozenset[str] = frozenset({"amx_bf16", "avx512_bf16"})


def cpu_flags_have_native_bf16(cpuinfo: str) -> bool:
    """Whether a ``/proc/cpuinfo`` text lists a native bfloat16 instruction set."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags" and NATIVE_BF16_CPU_FLAGS & set(value.split()):
            return True
    return False


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (from ``/proc/cpuinfo``; False elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: no cheap, reliable way to know, so stay in float32
        return False
    return cpu_flags_have_native_bf16(text)


def training_precision(device: torch.device, amp: bool = True, dim: str = "2d") -> str:
    """The arithmetic training uses: ``"bf16"``, ``"fp16"`` (autocast) or ``"fp32"``.

    On CUDA, autocast as for inference. On the CPU, bfloat16 autocast for the 3D network only,
    and only where the CPU computes bfloat16 natively: there it made a training step of the 3D
    SegResNet 1.4x faster than float32 (2.8x than float32 without channels-last), but a 2D
    UNet step (batch 8 of 96x96) 1.01x, not worth a machine-dependent arithmetic
    (``bench/bench_train_cpu.py``).
    """
    if not amp:
        return "fp32"
    if device.type == "cuda":
        return cuda_amp_precision()
    native = device.type == "cpu" and dim == "3d" and cpu_has_native_bf16()
    return "bf16" if native else "fp32"


def training_autocast(
    device: torch.device, amp: bool = True, dim: str = "2d"
) -> AbstractContextManager:
    """Autocast for training steps at :func:`training_precision` (a no-op for ``"fp32"``)."""
    return autocast_at(device, training_precision(device, amp, dim))


def needs_grad_scaler(device: torch.device, amp: bool = True) -> bool:
    """Float16 autocast needs loss scaling; bfloat16 and float32 do not."""
    return training_precision(device, amp) == "fp16"


@contextmanager
def without_cudnn_autotuning() -> Iterator[None]:
    """Switch cuDNN's benchmark mode off inside the block (restored afterwards).

    Training turns it on (fixed crop shapes: tuning pays once). Inference sees a new head box
    shape with nearly every case, and tuning each new shape costs more than it saves.
    """
    previous = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = previous
