"""Whole-volume inference with MONAI inferers: slice-wise for 2D, sliding window for 3D.

Optionally averages the sigmoid probabilities over several networks (an ensemble) and over
mirror flips of the input (test-time augmentation, TTA).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers import SliceInferer, SlidingWindowInferer

from radsurv.segmentation.config import SegmentationConfig
from radsurv.segmentation.device import autocast
from radsurv.segmentation.preprocess import bounding_box, foreground_mask


def _pad_to_multiple(x: torch.Tensor, axes: tuple[int, ...], k: int) -> torch.Tensor:
    """Zero-pad ``x`` at the end of ``axes`` up to multiples of ``k``."""
    pad: list[int] = []
    for axis in reversed(range(x.ndim)):  # F.pad lists the last axis first
        extra = (-x.shape[axis]) % k if axis in axes else 0
        pad += [0, extra]
    return torch.nn.functional.pad(x, pad) if any(pad) else x


def tta_flips(dim: str) -> list[tuple[int, ...]]:
    """Spatial axes of a (N, C, z, y, x) tensor flipped by each TTA pass (``()`` = identity).

    2D models (axial slices) are mirrored in-plane: none, y, x, y+x (4 passes). 3D models are
    mirrored along every subset of z, y, x (8 passes).

    Examples
    --------
    >>> tta_flips("2d")
    [(), (3,), (4,), (3, 4)]
    >>> len(tta_flips("3d"))
    8
    """
    axes = (3, 4) if dim == "2d" else (2, 3, 4)
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def _networks(network: torch.nn.Module | Sequence[torch.nn.Module]) -> list[torch.nn.Module]:
    if isinstance(network, torch.nn.Module):
        return [network]
    nets = list(network)
    if not nets:
        raise ValueError("infer_probabilities needs at least one network")
    return nets


@torch.no_grad()
def infer_probabilities(
    network: torch.nn.Module | Sequence[torch.nn.Module],
    image: np.ndarray,
    config: SegmentationConfig,
    device: torch.device,
    amp: bool = True,
    sw_batch_size: int | None = None,
    tta: bool = False,
) -> np.ndarray:
    """Sigmoid probabilities (3, z, y, x) float32 of a normalised (C, z, y, x) image.

    Only the head's bounding box is run through the network (the rest is background).
    2D models see whole axial slices through :class:`monai.inferers.SliceInferer`; 3D models
    use :class:`monai.inferers.SlidingWindowInferer` over ``config.patch_size`` patches
    (overlap 0.5, Gaussian weighting). Mixed precision on CUDA only.

    Parameters
    ----------
    network
        One network, or several (an ensemble): their probabilities are averaged.
    tta
        Also average over mirror flips of the input (:func:`tta_flips`): 4 passes per network
        for 2D, 8 for 3D.
    """
    nets = _networks(network)
    for net in nets:
        net.eval()
    out = np.zeros((config.out_channels, *image.shape[1:]), dtype=np.float32)
    box = bounding_box(foreground_mask(image), margin=2)
    crop = image[(slice(None), *box)]
    x = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None].to(device)
    k = config.divisor
    if config.dim == "2d":
        pad_axes: tuple[int, ...] = (3, 4)
        inferer = SliceInferer(
            spatial_dim=0,
            roi_size=tuple(x.shape[3 + i] + (-x.shape[3 + i]) % k for i in range(2)),
            sw_batch_size=sw_batch_size or (64 if device.type == "cuda" else 8),
            overlap=0.0,
            progress=False,
        )
    else:
        pad_axes = (2, 3, 4)
        inferer = SlidingWindowInferer(
            roi_size=tuple(config.patch_size),
            sw_batch_size=sw_batch_size or (4 if device.type == "cuda" else 1),
            overlap=0.5,
            mode="gaussian",
            progress=False,
        )
    spatial = tuple(slice(0, n) for n in x.shape[2:])
    flips = tta_flips(config.dim) if tta else [()]
    total = torch.zeros((1, config.out_channels, *x.shape[2:]), device=device)
    for flip in flips:
        xf = torch.flip(x, flip) if flip else x
        xf = _pad_to_multiple(xf, pad_axes, k)
        if device.type == "cuda" and config.dim == "2d":
            xf = xf.contiguous(memory_format=torch.channels_last_3d)
        for net in nets:
            with autocast(device, amp):
                logits = inferer(xf, net)
            probs = torch.sigmoid(logits.float())[(slice(None), slice(None), *spatial)]
            total += torch.flip(probs, flip) if flip else probs
    probs = (total / (len(flips) * len(nets)))[0]
    out[(slice(None), *box)] = probs.cpu().numpy()
    return out
