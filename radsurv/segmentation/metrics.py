"""Segmentation metrics per BraTS region (WT, TC, ET): Dice and HD95 from MONAI.

Empty masks follow the BraTS challenge convention:

- reference and prediction both empty: Dice 1, HD95 0 (a correct "no such region");
- exactly one empty: Dice 0, HD95 373.13 mm (BraTS' maximum, the diagonal of the
  240 x 240 x 155 mm volume), so a missed or hallucinated region is penalised and means stay
  finite.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.metrics import DiceMetric, HausdorffDistanceMetric

from radsurv.data.labels import region_mask
from radsurv.segmentation.preprocess import bounding_box

EVAL_REGIONS: tuple[str, ...] = ("WT", "TC", "ET")
HD95_EMPTY_MM = 373.13  # BraTS' value when exactly one of reference / prediction is empty


def _crop_to_union(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both masks to their union's box + 2 voxels; surface distances do not change."""
    box = bounding_box(pred | ref, margin=2)
    return pred[box], ref[box]


def region_scores(
    pred: np.ndarray, ref: np.ndarray, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
) -> dict[str, float]:
    """Dice and HD95 (mm) of two boolean (z, y, x) masks, with the BraTS empty-mask convention.

    ``spacing`` is SimpleITK order (x, y, z).

    Examples
    --------
    >>> a = np.zeros((10, 10, 10), bool); a[2:6, 2:6, 2:6] = True
    >>> region_scores(a, a)
    {'dice': 1.0, 'hd95': 0.0}
    """
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from reference {ref.shape}")
    p_empty, r_empty = not pred.any(), not ref.any()
    if p_empty and r_empty:
        return {"dice": 1.0, "hd95": 0.0}
    if p_empty or r_empty:
        return {"dice": 0.0, "hd95": HD95_EMPTY_MM}
    pred, ref = _crop_to_union(pred, ref)
    p = torch.from_numpy(pred)[None, None].float()
    r = torch.from_numpy(ref)[None, None].float()
    dice = DiceMetric(include_background=True, reduction="none")(p, r)
    with warnings.catch_warnings():  # MONAI warns about its own deprecated internal argument
        warnings.simplefilter("ignore", FutureWarning)
        hd = HausdorffDistanceMetric(include_background=True, percentile=95, reduction="none")(
            p,
            r,
            spacing=[float(s) for s in reversed(spacing)],  # arrays are (z, y, x)
        )
    return {"dice": float(dice.item()), "hd95": float(hd.item())}


def case_scores(
    pred_labels: np.ndarray,
    ref_labels: np.ndarray,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> dict[str, dict[str, float]]:
    """Dice and HD95 for WT, TC and ET of two canonical label masks."""
    return {
        region: region_scores(
            region_mask(pred_labels, region), region_mask(ref_labels, region), spacing
        )
        for region in EVAL_REGIONS
    }


def mean_scores(cases: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean Dice and HD95 per region over cases (NaN when there are none)."""
    return {
        region: {
            metric: float(np.mean([c[region][metric] for c in cases])) if cases else float("nan")
            for metric in ("dice", "hd95")
        }
        for region in EVAL_REGIONS
    }
