"""Tumour segmentation with MONAI: train, predict and evaluate NCR/ED/ET masks.

A 2D UNet on axial slices (default) or a 3D SegResNet on patches predicts the nested BraTS
regions WT, TC, ET (sigmoid outputs), converted to canonical labels 1, 2, 4. Runs on CUDA with
mixed precision when present, on the CPU otherwise. Needs only torch, MONAI, numpy, h5py and
SimpleITK (plus radsurv's data layer).

Examples
--------
>>> from radsurv.segmentation import train_segmentation, load_model, segment_case
>>> result = train_segmentation("data_manifest.csv", "model.pt", time_limit=5)  # doctest: +SKIP
>>> model = load_model("model.pt")  # doctest: +SKIP
>>> labels = segment_case(model, case, tta=True)  # doctest: +SKIP
"""

import os

# OpenMP threads that spin while they wait make CPU training 5x slower when other processes
# share the cores (measured: the segmentation notebook, 200 s vs 41 s beside two busy loops).
# libgomp reads this once, when torch loads it; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from radsurv.segmentation.checkpoint import CheckpointError  # noqa: E402
from radsurv.segmentation.config import SegmentationConfig
from radsurv.segmentation.evaluate import EvaluationResult, evaluate_masks
from radsurv.segmentation.metrics import HD95_EMPTY_MM, case_scores, region_scores
from radsurv.segmentation.postprocess import postprocess_labels
from radsurv.segmentation.predict import (
    PredictionRecords,
    SegmentationModel,
    load_model,
    predict_masks,
    segment_case,
)
from radsurv.segmentation.preprocess import BadVolumeError, ModalityMismatchError
from radsurv.segmentation.report import write_segmentation_report
from radsurv.segmentation.train import EnsembleTrainResult, TrainResult, train_segmentation

__all__ = [
    "HD95_EMPTY_MM",
    "BadVolumeError",
    "CheckpointError",
    "EnsembleTrainResult",
    "EvaluationResult",
    "ModalityMismatchError",
    "PredictionRecords",
    "SegmentationConfig",
    "SegmentationModel",
    "TrainResult",
    "case_scores",
    "evaluate_masks",
    "load_model",
    "postprocess_labels",
    "predict_masks",
    "region_scores",
    "segment_case",
    "train_segmentation",
    "write_segmentation_report",
]
