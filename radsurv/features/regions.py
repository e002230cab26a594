"""Tumour subregion masks, bounding boxes and padded crop boxes (numpy (z, y, x) order)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from radsurv.data.labels import mask_extent, region_mask

Box = tuple[slice, slice, slice]


def region_masks(labels: np.ndarray, regions: Sequence[str]) -> dict[str, np.ndarray]:
    """Boolean mask per subregion (NCR, ED, ET, TC, WT) of a canonical label array."""
    return {region: region_mask(labels, region) for region in regions}


def padded_box(mask: np.ndarray, pad: Sequence[int], full_when_clipped: bool = False) -> Box | None:
    """Crop box around ``mask`` widened by ``pad`` voxels per axis (z, y, x), clipped to the image.

    ``full_when_clipped`` widens an axis to the whole image when the padded box reaches the
    image border on that axis: filters with periodic boundaries (PyRadiomics' wavelet) see the
    opposite border there, so only the whole axis reproduces them. None when the mask is empty.
    """
    box = mask_extent(mask)
    if box is None:
        return None
    low, high = box
    shape = np.array(mask.shape)
    pad = np.asarray(pad, dtype=int)
    start = low - pad
    stop = high + pad
    slices = []
    for axis in range(mask.ndim):
        s, e = int(start[axis]), int(stop[axis])
        if full_when_clipped and (s <= 0 or e >= shape[axis]):
            s, e = 0, int(shape[axis])
        slices.append(slice(max(s, 0), min(e, int(shape[axis]))))
    return tuple(slices)  # type: ignore[return-value]
