"""Case -> network input (channels in the model's order, normalised) and labels <-> regions.

Checks that concern the model's input (missing modality, NaN voxels, all-zero volumes) live
here, so training and prediction refuse bad cases with the same message naming the case.
"""

from __future__ import annotations

import numpy as np

from radsurv.data.case import Case
from radsurv.data.labels import LABEL_ED, LABEL_ET, LABEL_NCR, mask_extent, region_mask
from radsurv.errors import DataError, SegmentationError
from radsurv.segmentation.config import SegmentationConfig


class ModalityMismatchError(SegmentationError):
    """A case lacks a modality the model was trained on."""


class BadVolumeError(DataError):
    """A volume cannot be segmented: NaN/inf voxels, all zero, wrong dimensionality."""


def check_modalities(case: Case, modalities: list[str]) -> None:
    """Raise :class:`ModalityMismatchError` if ``case`` lacks one of ``modalities``."""
    missing = [m for m in modalities if m not in case.images]
    if missing:
        raise ModalityMismatchError(
            f"case {case.case_id}: the model needs modalities {modalities} but the case lacks "
            f"{missing} (has {case.modalities}); use a model trained on {case.modalities} "
            "or add the missing images to the manifest"
        )


def _background_value(arr: np.ndarray) -> float | None:
    """The value of the empty space around the head: the value most of the 8 corners share."""
    corners = arr[np.ix_(*[[0, n - 1] for n in arr.shape])].ravel()
    values, counts = np.unique(corners, return_counts=True)
    best = int(np.argmax(counts))
    return float(values[best]) if counts[best] >= corners.size // 2 else None


def foreground_mask(images: np.ndarray) -> np.ndarray:
    """Head mask of a (C, ...) stack: voxels where any channel differs from its background value.

    Works for zero-background images and for the Kaggle pack, whose per-volume standardisation
    turns the background into a constant negative value.
    """
    mask = np.zeros(images.shape[1:], dtype=bool)
    for channel in images:
        bg = _background_value(channel)
        mask |= np.ones_like(mask) if bg is None else channel != bg
    return mask


def normalise(images: np.ndarray, case_id: str = "?") -> np.ndarray:
    """Z-score each channel of a (C, ...) float stack over the head; background -> 0.

    Raises :class:`BadVolumeError` naming the case for NaN/inf or all-constant channels.
    """
    out = np.zeros(images.shape, dtype=np.float32)
    fg = foreground_mask(images)
    if not fg.any():
        raise BadVolumeError(
            f"case {case_id}: every image is constant (all-zero or empty volume); "
            "check the files or exclude the case"
        )
    for c, channel in enumerate(images):
        values = channel[fg].astype(np.float64)
        sd = values.std()
        if sd == 0:
            raise BadVolumeError(
                f"case {case_id}: input channel {c} is constant inside the head "
                "(empty or all-zero image); check the file or exclude the case"
            )
        out[c][fg] = ((values - values.mean()) / sd).astype(np.float32)
    return out


def case_input(case: Case, config: SegmentationConfig) -> np.ndarray:
    """Model input of ``case``: float32 (C, z, y, x), channels in ``config.modalities`` order."""
    check_modalities(case, config.modalities)
    stack = []
    for m in config.modalities:
        arr = np.asarray(case.images[m])
        if arr.ndim != 3:
            raise BadVolumeError(
                f"case {case.case_id}: modality {m} has shape {arr.shape}; expected 3-D (z, y, x)"
            )
        if not np.all(np.isfinite(arr)):
            n_bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
            raise BadVolumeError(
                f"case {case.case_id}: modality {m} holds {n_bad} NaN/inf voxels; "
                "repair or exclude the case"
            )
        if not np.any(arr):
            raise BadVolumeError(
                f"case {case.case_id}: modality {m} is all zero; check the file or exclude the case"
            )
        stack.append(arr)
    shapes = {a.shape for a in stack}
    if len(shapes) != 1:
        raise BadVolumeError(f"case {case.case_id}: modalities differ in shape {sorted(shapes)}")
    return normalise(np.stack(stack), case.case_id)


def labels_to_regions(labels: np.ndarray) -> np.ndarray:
    """Canonical labels (...) -> uint8 (3, ...) stack of the nested regions WT, TC, ET."""
    return np.stack([region_mask(labels, r) for r in ("WT", "TC", "ET")]).astype(np.uint8)


def regions_to_labels(regions: np.ndarray) -> np.ndarray:
    """Binary (3, ...) WT, TC, ET stack -> canonical labels (uint8 0/1/2/4).

    Nesting is enforced upwards: ET voxels belong to TC and WT, TC voxels to WT; so a confident
    ET prediction is never dropped because TC missed it.
    """
    wt, tc, et = (np.asarray(r, dtype=bool) for r in regions)
    tc = tc | et
    wt = wt | tc
    labels = np.zeros(wt.shape, dtype=np.uint8)
    labels[wt] = LABEL_ED
    labels[tc] = LABEL_NCR
    labels[et] = LABEL_ET
    return labels


def bounding_box(mask: np.ndarray, margin: int = 0) -> tuple[slice, ...]:
    """Slices of the smallest box holding ``mask`` (grown by ``margin``); whole array if empty."""
    extent = mask_extent(mask)
    if extent is None:
        return tuple(slice(0, n) for n in mask.shape)
    lows, highs = extent
    return tuple(
        slice(max(0, int(lo) - margin), min(n, int(hi) + margin))
        for lo, hi, n in zip(lows, highs, mask.shape, strict=True)
    )
