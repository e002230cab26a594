"""Apply a trained model: one case -> canonical labels; a batch of cases -> NIfTI masks.

Batch prediction records every case's outcome in ``segment_status.csv`` (``case_id, status,
mask, seconds, error``) and goes on after a failing case.
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from radsurv.data.case import Case
from radsurv.errors import RadsurvError
from radsurv.segmentation.checkpoint import load_state, read_checkpoint
from radsurv.segmentation.config import SegmentationConfig
from radsurv.segmentation.device import resolve_device
from radsurv.segmentation.inference import infer_probabilities
from radsurv.segmentation.networks import build_network
from radsurv.segmentation.postprocess import postprocess_labels
from radsurv.segmentation.preprocess import case_input, regions_to_labels
from radsurv.segmentation.sources import CaseSource, case_loaders

logger = logging.getLogger(__name__)

STATUS_FILE = "segment_status.csv"
STATUS_COLUMNS = ("case_id", "status", "mask", "seconds", "error")


@dataclass
class SegmentationModel:
    """A loaded network with its config, ready to segment cases.

    Attributes
    ----------
    network
        The MONAI network in eval mode on ``device``.
    config
        What the model expects (modalities, dim, ...).
    device
        Where it runs.
    amp
        Mixed precision on CUDA.
    info
        Training metadata from the checkpoint (epoch, best validation Dice, cases, history).
    """

    network: torch.nn.Module
    config: SegmentationConfig
    device: torch.device
    amp: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (
            f"SegmentationModel(dim={self.config.dim}, modalities={self.config.modalities}, "
            f"device={self.device}, best_metric={self.info.get('best_metric')})"
        )


def load_model(
    path: str | Path, device: str | torch.device = "auto", amp: bool = True
) -> SegmentationModel:
    """Load a checkpoint written by :func:`~radsurv.segmentation.train.train_segmentation`.

    Loading uses ``torch.load(weights_only=True)``; a file of another format, a damaged file or
    weights that do not match the stored config raise a :class:`CheckpointError`.
    """
    path = Path(path)
    payload, config = read_checkpoint(path)
    dev = resolve_device(device)
    network = build_network(config)
    load_state(network, payload["state_dict"], path)
    network.to(dev).eval()
    if dev.type == "cuda":
        network.to(
            memory_format=torch.channels_last_3d if config.dim == "3d" else torch.channels_last
        )
    info = {
        k: payload.get(k)
        for k in ("epoch", "best_metric", "history", "train_cases", "val_cases", "seed")
    }
    info["path"] = str(path)
    return SegmentationModel(network, config, dev, amp, info)


def segment_case(model: SegmentationModel, case: Case, postprocess: bool = True) -> np.ndarray:
    """Canonical label mask (uint8 (z, y, x), values 0/1/2/4) predicted for ``case``.

    Raises :class:`ModalityMismatchError` when the case lacks a modality of the model and
    :class:`BadVolumeError` for NaN/inf, all-zero or constant images (messages name the case).
    """
    image = case_input(case, model.config)
    probs = infer_probabilities(model.network, image, model.config, model.device, model.amp)
    labels = regions_to_labels(probs > model.config.threshold)
    if postprocess:
        labels = postprocess_labels(labels, case.spacing)
    return labels


def write_mask(case: Case, labels: np.ndarray, path: Path) -> Path:
    """Write a label mask with the case's geometry (spacing, origin, direction) as NIfTI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(case.to_sitk(labels.astype(np.uint8)), str(path), useCompression=True)
    return path


def predict_masks(
    model: SegmentationModel | str | Path,
    source: CaseSource,
    out_dir: str | Path,
    device: str | torch.device = "auto",
    postprocess: bool = True,
    overwrite: bool = True,
) -> list[dict[str, Any]]:
    """Segment every case of ``source`` into ``out_dir/<case_id>.nii.gz``.

    Parameters
    ----------
    model
        A loaded :class:`SegmentationModel` or the path of a checkpoint.
    source
        A manifest, its path, or a list of :class:`Case` / ``(case_id, loader)`` pairs.
    out_dir
        Masks folder; ``segment_status.csv`` is written there too.
    postprocess
        Apply :func:`postprocess_labels`.
    overwrite
        Re-segment cases whose mask already exists (else they are skipped as ``exists``).

    Returns
    -------
    list of dict
        One status record per case (``status`` is ``ok``, ``exists`` or ``failed``).
    """
    if not isinstance(model, SegmentationModel):
        model = load_model(model, device)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    loaders = case_loaders(source)
    for i, loader in enumerate(loaders, 1):
        path = out / f"{loader.case_id}.nii.gz"
        t0 = time.perf_counter()
        record: dict[str, Any] = {
            "case_id": loader.case_id,
            "status": "ok",
            "mask": str(path),
            "error": "",
        }
        if path.exists() and not overwrite:
            record["status"] = "exists"
        else:
            try:
                case = loader.load()
                write_mask(case, segment_case(model, case, postprocess), path)
            except (RadsurvError, OSError, RuntimeError, ValueError) as exc:
                # one bad case must not stop the batch: record it and go on
                record.update(status="failed", mask="", error=f"{type(exc).__name__}: {exc}")
                logger.error("case %s failed: %s", loader.case_id, exc)
        record["seconds"] = round(time.perf_counter() - t0, 3)
        logger.info(
            "[%d/%d] %s %s (%.1f s)",
            i,
            len(loaders),
            loader.case_id,
            record["status"],
            record["seconds"],
        )
        records.append(record)
        _write_status(out / STATUS_FILE, records)
    return records


def _write_status(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=STATUS_COLUMNS)
        writer.writeheader()
        for r in records:
            writer.writerow({k: r.get(k, "") for k in STATUS_COLUMNS})
