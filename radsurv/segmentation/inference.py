"""Whole-volume inference with MONAI inferers: slice-wise for 2D, sliding window for 3D."""

from __future__ import annotations

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


@torch.no_grad()
def infer_probabilities(
    network: torch.nn.Module,
    image: np.ndarray,
    config: SegmentationConfig,
    device: torch.device,
    amp: bool = True,
    sw_batch_size: int | None = None,
) -> np.ndarray:
    """Sigmoid probabilities (3, z, y, x) float32 of a normalised (C, z, y, x) image.

    Only the head's bounding box is run through the network (the rest is background).
    2D models see whole axial slices through :class:`monai.inferers.SliceInferer`; 3D models
    use :class:`monai.inferers.SlidingWindowInferer` over ``config.patch_size`` patches
    (overlap 0.5, Gaussian weighting). Mixed precision on CUDA only.
    """
    network.eval()
    out = np.zeros((config.out_channels, *image.shape[1:]), dtype=np.float32)
    box = bounding_box(foreground_mask(image), margin=2)
    crop = image[(slice(None), *box)]
    x = torch.from_numpy(np.ascontiguousarray(crop, dtype=np.float32))[None].to(device)
    k = config.divisor
    if config.dim == "2d":
        x = _pad_to_multiple(x, (3, 4), k)
        inferer = SliceInferer(
            spatial_dim=0,
            roi_size=tuple(x.shape[3:]),
            sw_batch_size=sw_batch_size or (64 if device.type == "cuda" else 8),
            overlap=0.0,
            progress=False,
        )
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last_3d)
    else:
        x = _pad_to_multiple(x, (2, 3, 4), k)
        inferer = SlidingWindowInferer(
            roi_size=tuple(config.patch_size),
            sw_batch_size=sw_batch_size or (4 if device.type == "cuda" else 1),
            overlap=0.5,
            mode="gaussian",
            progress=False,
        )
    with autocast(device, amp):
        logits = inferer(x, network)
    probs = torch.sigmoid(logits.float())[0]
    probs = probs[(slice(None), *(slice(0, s.stop - s.start) for s in box))]
    out[(slice(None), *box)] = probs.cpu().numpy()
    return out
