"""Device choice (``auto``, ``cuda``, ``cpu``) and the per-device settings training uses."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

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


def autocast(device: torch.device, enabled: bool = True) -> AbstractContextManager:
    """Mixed precision on CUDA only (bfloat16 when supported, else float16); no-op on CPU."""
    if device.type != "cuda" or not enabled:
        return nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type="cuda", dtype=dtype)


def needs_grad_scaler(device: torch.device, amp: bool = True) -> bool:
    """Float16 autocast needs loss scaling; bfloat16 and float32 do not."""
    return device.type == "cuda" and amp and not torch.cuda.is_bf16_supported()


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
