"""Checkpoint files: weights + the config they need, loaded with ``torch.load(weights_only=True)``.

A checkpoint is a plain dict of tensors and primitive values (no pickled classes), so loading one
from an untrusted source cannot run code. Keys: ``format``, ``format_version``, ``config``,
``state_dict``, ``epoch``, ``best_metric``, ``history``, ``train_cases``, ``val_cases``, ``seed``
and, in the resumable "last" checkpoint only, ``optimizer``.

An ensemble index (``kind == "ensemble"``) holds ``members`` (checkpoint file names relative
to the index's folder) and the members' shared ``config`` instead of a ``state_dict``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from radsurv.errors import SegmentationError
from radsurv.segmentation.config import SegmentationConfig

FORMAT = "radsurv-segmentation"
FORMAT_VERSION = 1


class CheckpointError(SegmentationError):
    """A checkpoint file is missing, unreadable, of another format or inconsistent."""


def last_checkpoint_path(best_path: Path) -> Path:
    """Where the resumable last checkpoint of ``best_path`` lives: ``model.last.pt``."""
    best_path = Path(best_path)
    return best_path.with_name(f"{best_path.stem}.last{best_path.suffix or '.pt'}")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus format keys) atomically: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, tmp)
    os.replace(tmp, path)
    return path


def read_checkpoint(path: Path) -> tuple[dict[str, Any], SegmentationConfig]:
    """Load a checkpoint safely and validate it; return (payload, config)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"model file {path} does not exist; train one with `radsurv segment train`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, truncated files, non-torch files
        raise CheckpointError(
            f"model file {path} cannot be loaded safely ({type(exc).__name__}: {exc}); "
            "it is not a radsurv segmentation checkpoint or is damaged"
        ) from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"model file {path} is not a radsurv segmentation checkpoint")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"model file {path} has format version {payload['format_version']}; this radsurv "
            f"reads up to {FORMAT_VERSION}: upgrade radsurv"
        )
    if payload.get("kind") == "ensemble":
        members = payload.get("members")
        if not isinstance(members, list | tuple) or not members:
            raise CheckpointError(f"ensemble index {path} lists no member checkpoints")
    elif "state_dict" not in payload:
        raise CheckpointError(f"model file {path} holds no weights (state_dict); it is damaged")
    try:
        config = SegmentationConfig.from_dict(dict(payload["config"]))
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"model file {path}: config missing or malformed ({exc})") from exc
    except Exception as exc:
        raise CheckpointError(f"model file {path}: invalid config ({exc})") from exc
    return payload, config


def load_state(network: torch.nn.Module, state_dict: dict[str, Any], path: Path) -> None:
    """Load weights, turning shape mismatches (e.g. channel count) into a clear error."""
    try:
        network.load_state_dict(state_dict)
    except RuntimeError as exc:
        raise CheckpointError(
            f"model file {path}: weights do not fit the network its config describes ({exc}); "
            "the file is inconsistent"
        ) from exc
