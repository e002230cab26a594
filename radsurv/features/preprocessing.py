"""MRI intensity preprocessing, once per modality on the whole image (before any crop)."""

from __future__ import annotations

import logging

import numpy as np

from radsurv.errors import FeatureExtractionError

logger = logging.getLogger(__name__)

INTENSITY_MODES: tuple[str, ...] = ("zscore-brain", "as-is")
DEFAULT_INTENSITY = "zscore-brain"


class PreprocessingError(FeatureExtractionError):
    """An image cannot be preprocessed (no brain voxels, constant intensities, unknown mode)."""


def zscore_brain(image: np.ndarray, source: str = "image") -> np.ndarray:
    """Z-score an image inside the brain (its non-zero voxels); the background stays 0.

    Mean and standard deviation are computed in float64 over the whole brain, so the result
    does not depend on any later crop. Returns float64 (z, y, x): PyRadiomics then bins in
    float64 whatever the NumPy version (see :mod:`radsurv.features.extract`).

    Examples
    --------
    >>> zscore_brain(np.array([0.0, 1.0, 3.0])).tolist()
    [0.0, -1.0, 1.0]
    """
    arr = np.asarray(image)
    brain = arr != 0
    n = int(np.count_nonzero(brain))
    if n < 2:
        raise PreprocessingError(
            f"{source}: only {n} non-zero voxel(s), cannot z-score inside the brain; "
            "use --intensity as-is or check the image"
        )
    values = arr[brain].astype(np.float64)
    mean = float(values.mean())
    std = float(values.std())
    if not np.isfinite(std) or std == 0.0:
        raise PreprocessingError(
            f"{source}: brain intensities are constant or not finite (std={std}); "
            "check the image or use --intensity as-is"
        )
    out = np.zeros(arr.shape, dtype=np.float64)
    out[brain] = (values - mean) / std
    return out


def preprocess(image: np.ndarray, mode: str, source: str = "image") -> np.ndarray:
    """Apply the intensity mode ``zscore-brain`` or ``as-is`` (float64 copy of stored values).

    The result is float64 in both modes: exact for float32, float64 and integer storage, so the
    same stored values give the same features whatever the file's dtype.
    """
    if mode == "zscore-brain":
        return zscore_brain(image, source)
    if mode == "as-is":
        return np.array(image, dtype=np.float64)
    raise PreprocessingError(f"unknown intensity mode {mode!r}; choose from {INTENSITY_MODES}")
