"""Case -> network input (channels in the model's order, normalised) and labels <-> regions.

Checks that concern the model's input (missing modality, NaN voxels, all-zero volumes) live
here, so training and prediction refuse bad cases with the same message naming the case.
"""

from __future__ import annotations

import numpy as np
import torch

from radsurv.data.case import Case
from radsurv.data.labels import LABEL_ED, LABEL_ET, LABEL_NCR, mask_extent, region_mask
from radsurv.errors import DataError, SegmentationError
from radsurv.segmentation.config import SegmentationConfig


class ModalityMismatchError(SegmentationError):
    """A case lacks a modality the model was trained on."""


class BadVolumeError(DataError):
    """A volume cannot be segmented: NaN/inf voxels, all zero, wrong dimensionality."""


def check_modalities(case: Case, modalities: list[str], allow_missing: bool = False) -> list[str]:
    """The modalities of ``modalities`` that ``case`` lacks (empty when it has them all).

    Raises :class:`ModalityMismatchError` naming the case and the missing modalities unless
    ``allow_missing``; a case with none of ``modalities`` is refused even then.
    """
    missing = [m for m in modalities if m not in case.images]
    if missing and (not allow_missing or len(missing) == len(modalities)):
        hint = (
            "it has none of them, so it cannot be segmented with this model"
            if allow_missing
            else f"use a model trained on {case.modalities} or add the missing images to the "
            "manifest (or, with a model trained with modality dropout, allow missing modalities)"
        )
        raise ModalityMismatchError(
            f"case {case.case_id}: the model needs modalities {modalities} but the case lacks "
            f"{missing} (has {case.modalities}); {hint}"
        )
    return missing


def present_images(
    case: Case, modalities: list[str], allow_missing: bool = False
) -> tuple[list[str], list[np.ndarray]]:
    """The modalities of ``modalities`` the case has, and their 3-D arrays (shapes checked).

    Missing modalities follow :func:`check_modalities`. Raises :class:`BadVolumeError` for a
    non-3-D image or images of different shapes.
    """
    check_modalities(case, modalities, allow_missing)
    names = [m for m in modalities if m in case.images]
    arrays = [np.asarray(case.images[m]) for m in names]
    for m, arr in zip(names, arrays, strict=True):
        if arr.ndim != 3:
            raise BadVolumeError(
                f"case {case.case_id}: modality {m} has shape {arr.shape}; expected 3-D (z, y, x)"
            )
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise BadVolumeError(f"case {case.case_id}: modalities differ in shape {sorted(shapes)}")
    return names, arrays


def nonfinite_error(case_id: str, modality: str, n_bad: int) -> BadVolumeError:
    """The error for a modality holding NaN/inf voxels."""
    return BadVolumeError(
        f"case {case_id}: modality {modality} holds {n_bad} NaN/inf voxels; "
        "repair or exclude the case"
    )


def all_zero_error(case_id: str, modality: str) -> BadVolumeError:
    """The error for an all-zero modality."""
    return BadVolumeError(
        f"case {case_id}: modality {modality} is all zero; check the file or exclude the case"
    )


def no_head_error(case_id: str) -> BadVolumeError:
    """The error for a stack in which every image is constant."""
    return BadVolumeError(
        f"case {case_id}: every image is constant (all-zero or empty volume); "
        "check the files or exclude the case"
    )


def constant_channel_error(case_id: str, channel: int, name: str | None = None) -> BadVolumeError:
    """The error for a channel that is constant inside the head."""
    which = f"{channel} ({name})" if name else f"{channel}"
    return BadVolumeError(
        f"case {case_id}: input channel {which} is constant inside the head "
        "(empty or all-zero image); check the file or exclude the case"
    )


def background_value(arr: np.ndarray) -> float | None:
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
        bg = background_value(channel)
        mask |= np.ones_like(mask) if bg is None else channel != bg
    return mask


def _normalise(
    images: np.ndarray, case_id: str, names: list[str] | None
) -> tuple[np.ndarray, np.ndarray]:
    out = np.zeros(images.shape, dtype=np.float32)
    fg = foreground_mask(images)
    if not fg.any():
        raise no_head_error(case_id)
    for c, channel in enumerate(images):
        values = channel[fg].astype(np.float64)
        sd = values.std()
        if sd == 0:
            raise constant_channel_error(case_id, c, names[c] if names else None)
        out[c][fg] = ((values - values.mean()) / sd).astype(np.float32)
    return out, fg


def normalise(images: np.ndarray, case_id: str = "?", names: list[str] | None = None) -> np.ndarray:
    """Z-score each channel of a (C, ...) float stack over the head; background -> 0.

    Raises :class:`BadVolumeError` naming the case (and the channel's modality, when ``names``
    gives them) for an image without head or a channel constant inside the head.
    """
    return _normalise(images, case_id, names)[0]


def normalise_with_box(
    images: np.ndarray, case_id: str = "?", names: list[str] | None = None
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """:func:`normalise`, plus the head's bounding box grown by 2 voxels (as the tensor twin)."""
    out, fg = _normalise(images, case_id, names)
    return out, bounding_box(fg, margin=2)


def check_values(case_id: str, names: list[str], arrays: list[np.ndarray]) -> None:
    """Raise :class:`BadVolumeError` for a modality with NaN/inf voxels or all zero."""
    for m, arr in zip(names, arrays, strict=True):
        finite = np.isfinite(arr)
        if not finite.all():
            raise nonfinite_error(case_id, m, int(arr.size - np.count_nonzero(finite)))
        if not np.any(arr):
            raise all_zero_error(case_id, m)


def case_input(case: Case, config: SegmentationConfig, allow_missing: bool = False) -> np.ndarray:
    """Model input of ``case``: float32 (C, z, y, x), channels in ``config.modalities`` order.

    With ``allow_missing``, a modality the case lacks becomes an all-zero normalised channel
    (what a model trained with modality dropout saw); the present ones are normalised together
    as usual.
    """
    names, arrays = present_images(case, config.modalities, allow_missing)
    check_values(case.case_id, names, arrays)
    present = normalise(np.stack(arrays), case.case_id, names)
    if len(names) == len(config.modalities):
        return present
    out = np.zeros((len(config.modalities), *present.shape[1:]), dtype=np.float32)
    for c, m in enumerate(names):
        out[config.modalities.index(m)] = present[c]
    return out


def _background_values(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per channel: the value most of the 8 corners share (ties: the smallest), and whether
    at least half the corners share it; the tensor twin of :func:`background_value`."""
    # eight views, no index tensor: nothing is copied to the device
    corners = torch.stack(
        [images[:, a, b, c] for a in (0, -1) for b in (0, -1) for c in (0, -1)], dim=1
    )
    counts = (corners[:, :, None] == corners[:, None, :]).sum(-1)  # (C, 8)
    best = counts.max(dim=1, keepdim=True).values
    inf = torch.full_like(corners, float("inf"))
    value = torch.where(counts == best, corners, inf).min(dim=1).values
    return value, best[:, 0] >= corners.shape[1] // 2


@torch.no_grad()
def normalise_tensor(
    images: torch.Tensor, case_id: str = "?", names: list[str] | None = None
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """:func:`normalise` on the device of ``images``, plus the head's bounding box.

    Takes the raw (C, z, y, x) stack in any float dtype, checks it (NaN/inf, all-zero
    modalities, no head, constant channels: the same errors as :func:`case_input`), z-scores
    each channel over the head in float64 (so the result equals the numpy path within float32
    rounding) and returns float32 with background 0, and the head's box with a margin of 2
    voxels (as :func:`bounding_box`). One small device-to-host transfer carries every check
    and the box; the volume itself stays on the device.
    """
    names = names or [f"channel {c}" for c in range(images.shape[0])]
    x = images.double()
    finite = torch.isfinite(x)
    n_bad = (~finite).flatten(1).sum(1)
    nonzero = x.ne(0).flatten(1).any(1)
    x = torch.where(finite, x, torch.zeros((), dtype=x.dtype, device=x.device))
    bg, has_bg = _background_values(x)
    differs = x != bg.view(-1, 1, 1, 1)
    fg = (differs | ~has_bg.view(-1, 1, 1, 1)).any(0)
    n = fg.sum()
    w = fg.to(x.dtype)
    mean = (x * w).flatten(1).sum(1) / n.clamp(min=1)
    centred = (x - mean.view(-1, 1, 1, 1)) * w
    sd = ((centred * centred).flatten(1).sum(1) / n.clamp(min=1)).sqrt()
    projections = [fg.any(dim=tuple(a for a in range(3) if a != axis)) for axis in range(3)]
    stats = torch.cat(
        [n_bad.double(), nonzero.double(), sd, mean, n.double().view(1)]
        + [p.double() for p in projections]
    ).cpu()  # the one synchronising transfer
    c = images.shape[0]
    n_bad_h, nonzero_h, sd_h = stats[:c], stats[c : 2 * c], stats[2 * c : 3 * c]
    mean_h = stats[3 * c : 4 * c]
    for i, name in enumerate(names):
        if n_bad_h[i] > 0:
            raise nonfinite_error(case_id, name, int(n_bad_h[i]))
        if not nonzero_h[i]:
            raise all_zero_error(case_id, name)
    if stats[4 * c] == 0:
        raise no_head_error(case_id)
    for i in range(c):
        # constant inside the head, up to the rounding of the float64 mean
        if sd_h[i] <= 1e-12 * max(1.0, abs(float(mean_h[i]))):
            raise constant_channel_error(case_id, i, names[i] if names else None)
    out = torch.where(
        fg, centred / sd.view(-1, 1, 1, 1), torch.zeros((), dtype=x.dtype, device=x.device)
    ).float()
    box = []
    offset = 4 * c + 1
    for size in images.shape[1:]:
        hit = torch.nonzero(stats[offset : offset + size]).ravel()
        offset += size
        lo, hi = int(hit[0]), int(hit[-1]) + 1
        box.append(slice(max(0, lo - 2), min(size, hi + 2)))
    return out, tuple(box)


def regions_to_labels_tensor(regions: torch.Tensor) -> torch.Tensor:
    """:func:`regions_to_labels` on a boolean (3, ...) tensor, on its device (uint8 labels)."""
    wt, tc, et = regions[0], regions[1], regions[2]
    tc = tc | et
    wt = wt | tc
    labels = torch.zeros(wt.shape, dtype=torch.uint8, device=regions.device)
    return labels.masked_fill_(wt, LABEL_ED).masked_fill_(tc, LABEL_NCR).masked_fill_(et, LABEL_ET)


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
