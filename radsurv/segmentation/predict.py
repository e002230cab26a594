"""Apply a trained model: one case -> canonical labels; a batch of cases -> NIfTI masks.

Batch prediction records every case's outcome in ``segment_status.csv`` (``case_id, status,
mask, seconds, error, missing_modalities, note``) and goes on after a failing case.
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
from radsurv.data.nifti import read_mask_nifti
from radsurv.errors import RadsurvError
from radsurv.segmentation.checkpoint import CheckpointError, load_state, read_checkpoint
from radsurv.segmentation.config import SegmentationConfig
from radsurv.segmentation.device import resolve_device
from radsurv.segmentation.inference import GuardedCompiled, segment_box
from radsurv.segmentation.networks import build_network
from radsurv.segmentation.postprocess import postprocess_labels
from radsurv.segmentation.preprocess import check_modalities, present_images
from radsurv.segmentation.sources import Cases, case_loaders

logger = logging.getLogger(__name__)

STATUS_FILE = "segment_status.csv"
STATUS_COLUMNS = ("case_id", "status", "mask", "seconds", "error", "missing_modalities", "note")
NO_DROPOUT_NOTE = (
    "the model was trained without modality dropout (modality_dropout=0), so it never saw a "
    "missing channel: expect a worse mask; train with `segment train --modality-dropout`"
)


@dataclass
class SegmentationModel:
    """A loaded network (or ensemble of networks) with its config, ready to segment cases.

    Attributes
    ----------
    network
        The MONAI network in eval mode on ``device`` (the first member of an ensemble).
    config
        What the model expects (modalities, dim, ...).
    device
        Where it runs.
    amp
        Mixed precision on CUDA.
    info
        Training metadata from the checkpoint (epoch, best validation Dice, cases, history;
        for an ensemble also ``members``, the member files, and ``folds``).
    members
        Every network of the model, ``network`` first: one for a single checkpoint, K for a
        K-fold ensemble. Prediction averages their sigmoid probabilities.
    """

    network: torch.nn.Module
    config: SegmentationConfig
    device: torch.device
    amp: bool = True
    info: dict[str, Any] = field(default_factory=dict)
    members: list[torch.nn.Module] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.members:
            self.members = [self.network]
        elif self.members[0] is not self.network:
            raise ValueError("SegmentationModel.members must start with network")

    def __repr__(self) -> str:
        ensemble = f", members={len(self.members)}" if len(self.members) > 1 else ""
        return (
            f"SegmentationModel(dim={self.config.dim}, modalities={self.config.modalities}, "
            f"device={self.device}, best_metric={self.info.get('best_metric')}{ensemble})"
        )


def _place(network: torch.nn.Module, config: SegmentationConfig, dev: torch.device) -> None:
    """Move a network to its device for inference: channels-last for 2D (on the CPU as well,
    where a forward pass ran 1.27x faster) and for 3D on CUDA (the CPU's 3D path is unchanged)."""
    network.to(dev).eval()
    if config.dim == "2d":
        network.to(memory_format=torch.channels_last)
    elif dev.type == "cuda":
        network.to(memory_format=torch.channels_last_3d)


def _ensemble_members(
    path: Path, payload: dict[str, Any], config: SegmentationConfig
) -> list[tuple[Path, dict[str, Any]]]:
    """Read the member checkpoints an ensemble index lists; refuse ones that do not fit."""
    members = []
    for name in payload["members"]:
        member = path.parent / str(name)
        if not member.is_file():
            raise CheckpointError(
                f"ensemble index {path}: member checkpoint {member} does not exist; "
                "keep the member files beside the index or retrain with --folds"
            )
        member_payload, member_config = read_checkpoint(member)
        if member_payload.get("kind") == "ensemble":
            raise CheckpointError(
                f"ensemble index {path}: member {member} is itself an ensemble index"
            )
        if member_config.to_dict() != config.to_dict():
            diff = sorted(
                k for k, v in config.to_dict().items() if member_config.to_dict().get(k) != v
            )
            raise CheckpointError(
                f"ensemble index {path}: member {member} was trained with a different config "
                f"(differs in {diff}); all members of an ensemble must share one config"
            )
        members.append((member, member_payload))
    return members


def load_model(
    path: str | Path,
    device: str | torch.device = "auto",
    amp: bool = True,
    compile: bool = False,
) -> SegmentationModel:
    """Load a checkpoint written by :func:`~radsurv.segmentation.train.train_segmentation`.

    ``path`` is a single checkpoint or an ensemble index (``train_segmentation(...,
    folds=K)``); an index loads every member it lists, and prediction averages the members'
    probabilities. Loading uses ``torch.load(weights_only=True)``; a file of another format, a
    damaged file, weights that do not match the stored config, or an ensemble member trained
    with another config raise a :class:`CheckpointError` naming the file.

    ``amp`` runs the networks under bfloat16 autocast on CUDA (float16 where bfloat16 is not
    supported; nothing on the CPU). ``compile`` wraps them in ``torch.compile``
    (:class:`~radsurv.segmentation.inference.GuardedCompiled`: compiles at the first call of
    each input shape, and falls back to eager with a warning if compiling fails). It pays off
    on a GPU over many cases; off by default, and rarely worth it on the CPU.
    """
    path = Path(path)
    payload, config = read_checkpoint(path)
    dev = resolve_device(device)
    if payload.get("kind") == "ensemble":
        sources = _ensemble_members(path, payload, config)
    else:
        sources = [(path, payload)]
    networks = []
    for file, member_payload in sources:
        network = build_network(config)
        load_state(network, member_payload["state_dict"], file)
        _place(network, config, dev)
        networks.append(GuardedCompiled(network) if compile else network)
    info = {
        k: payload.get(k)
        for k in ("epoch", "best_metric", "history", "train_cases", "val_cases", "seed")
    }
    info["path"] = str(path)
    if payload.get("kind") == "ensemble":
        info["folds"] = payload.get("folds")
        info["members"] = [str(f) for f, _ in sources]
        info["member_best_metric"] = [p.get("best_metric") for _, p in sources]
    return SegmentationModel(networks[0], config, dev, amp, info, networks)


def segment_case(
    model: SegmentationModel,
    case: Case,
    postprocess: bool = True,
    tta: bool = False,
    allow_missing_modalities: bool = False,
    batch_size: int | None = None,
) -> np.ndarray:
    """Canonical label mask (uint8 (z, y, x), values 0/1/2/4) predicted for ``case``.

    The case goes to the model's device once and stays there through normalisation, the
    network(s), the sigmoid, the thresholds and the labels
    (:func:`~radsurv.segmentation.inference.segment_arrays`); post-processing runs on the CPU
    inside the tumour's bounding box.

    Parameters
    ----------
    tta
        Average the probabilities over mirror flips of the input (4 passes for 2D models, 8
        for 3D); an ensemble model averages over its members too.
    allow_missing_modalities
        Segment a case that lacks some of the model's modalities with the channels present,
        the missing ones as all-zero normalised channels (what a model trained with modality
        dropout saw). A case with none of them is refused all the same.
    batch_size
        Slices (2D) or patches (3D) per network call (default: 128/4 on CUDA, 16/1 on CPU).

    Raises :class:`ModalityMismatchError` when the case lacks a modality of the model (unless
    allowed) and :class:`BadVolumeError` for NaN/inf, all-zero or constant images (messages
    name the case).
    """
    names, arrays = present_images(case, model.config.modalities, allow_missing_modalities)
    crop, box = segment_box(
        model.members,
        arrays,
        model.config,
        model.device,
        model.amp,
        tta=tta,
        names=names,
        case_id=case.case_id,
        batch_size=batch_size,
    )
    if postprocess:  # every tumour voxel lies in the head's box: clean the box only
        crop = postprocess_labels(crop, case.spacing)
    labels = np.zeros(case.shape, dtype=np.uint8)
    labels[box] = crop
    return labels


def write_mask(case: Case, labels: np.ndarray, path: Path) -> Path:
    """Write a label mask with the case's geometry (spacing, origin, direction) as NIfTI."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(case.to_sitk(labels.astype(np.uint8)), str(path), useCompression=True)
    return path


def predict_masks(
    model: SegmentationModel | str | Path,
    source: Cases,
    out_dir: str | Path,
    device: str | torch.device = "auto",
    postprocess: bool = True,
    overwrite: bool = True,
    tta: bool = False,
    allow_missing_modalities: bool = False,
    compile: bool = False,
    report: str | Path | bool = True,
) -> PredictionRecords:
    """Segment every case of ``source`` into ``out_dir/<case_id>.nii.gz``.

    Parameters
    ----------
    model
        A loaded :class:`SegmentationModel` or the path of a checkpoint or ensemble index.
    source
        A manifest, its path, or a list of :class:`Case` / ``(case_id, loader)`` pairs.
    out_dir
        Masks folder; ``segment_status.csv`` is written there too.
    postprocess
        Apply :func:`postprocess_labels`.
    overwrite
        Re-segment cases whose mask already exists (else they are skipped as ``exists``).
    tta
        Mirror test-time augmentation (see :func:`segment_case`).
    allow_missing_modalities
        Segment cases lacking some of the model's modalities with the channels present (see
        :func:`segment_case`); the missing ones are recorded in the status
        (``missing_modalities``, ";"-separated), with a ``note`` when the model was trained
        without modality dropout. Without it such a case fails with a
        :class:`ModalityMismatchError` naming the case and the modalities.
    compile
        ``torch.compile`` the network when ``model`` is a path (see :func:`load_model`).
    report
        When no case has a reference mask, write the self-contained HTML page of the
        predictions (overlays through the tumour, volumes; see
        :mod:`radsurv.segmentation.report`): ``True`` (default) for ``out_dir/report.html``, a
        path, or ``False`` for none. Cases with reference masks get their report, with Dice
        and HD95, from :func:`~radsurv.segmentation.evaluate.evaluate_masks`.

    Returns
    -------
    PredictionRecords
        One status record (dict) per case (``status`` is ``ok``, ``exists`` or ``failed``);
        ``.report`` is the HTML report written, or None.
    """
    if not isinstance(model, SegmentationModel):
        model = load_model(model, device, compile=compile)
    dropout = float(getattr(model.config, "modality_dropout", 0.0) or 0.0)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    records: list[dict[str, Any]] = []
    loaders = case_loaders(source)
    page = _PredictionReport(out, source, report)
    for i, loader in enumerate(loaders, 1):
        path = out / f"{loader.case_id}.nii.gz"
        t0 = time.perf_counter()
        record: dict[str, Any] = {
            "case_id": loader.case_id,
            "status": "ok",
            "mask": str(path),
            "error": "",
            "missing_modalities": "",
            "note": "",
        }
        case = labels = None
        if path.exists() and not overwrite:
            record["status"] = "exists"
        else:
            try:
                case = loader.load()
                missing = check_modalities(case, model.config.modalities, allow_missing_modalities)
                if missing:
                    record["missing_modalities"] = ";".join(missing)
                    if dropout == 0.0:
                        record["note"] = NO_DROPOUT_NOTE
                labels = segment_case(
                    model,
                    case,
                    postprocess,
                    tta=tta,
                    allow_missing_modalities=allow_missing_modalities,
                )
                write_mask(case, labels, path)
            except (RadsurvError, OSError, RuntimeError, ValueError) as exc:
                # one bad case must not stop the batch: record it and go on
                record.update(status="failed", mask="", error=f"{type(exc).__name__}: {exc}")
                logger.error("case %s failed: %s", loader.case_id, exc)
        record["seconds"] = round(time.perf_counter() - t0, 3)
        page.add(loader, record, case, labels)
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
    return PredictionRecords(records, report=page.write())


class PredictionRecords(list):
    """The status records of :func:`predict_masks` (a list), with the report it wrote."""

    def __init__(self, records: list[dict[str, Any]], report: Path | None = None) -> None:
        super().__init__(records)
        self.report = report


class _PredictionReport:
    """The prediction-only report of :func:`predict_masks`, dropped once a case has a reference."""

    def __init__(self, out: Path, source: Cases, report: str | Path | bool) -> None:
        from radsurv.segmentation.report import REPORT_FILE, SegmentationReport, describe_source

        self.path = None if report is False else out / REPORT_FILE if report is True else report
        self.page = SegmentationReport(out, describe_source(source)) if self.path else None

    def add(self, loader: Any, record: dict[str, Any], case: Case | None, labels: Any) -> None:
        """Draw one case (reading an existing mask back for ``exists`` cases)."""
        if self.page is None:
            return
        if record["status"] == "exists":
            try:
                case = loader.load()
                labels = read_mask_nifti(Path(record["mask"]), case, label_convention="brats2020")
            except (RadsurvError, OSError, RuntimeError, ValueError) as exc:
                record = {**record, "status": "failed", "error": f"{type(exc).__name__}: {exc}"}
        if case is not None and case.labels is not None:
            logger.info("the cases have reference masks: `segment evaluate` reports them")
            self.page = None  # a prediction-only page would hide the Dice of the evaluation
            return
        self.page.add_case(loader.case_id, case=case, prediction=labels, scores=record)

    def write(self) -> Path | None:
        """Write the page (None when there is none to write)."""
        return None if self.page is None else self.page.write(Path(self.path))


def _write_status(path: Path, records: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=STATUS_COLUMNS)
        writer.writeheader()
        for r in records:
            writer.writerow({k: r.get(k, "") for k in STATUS_COLUMNS})
