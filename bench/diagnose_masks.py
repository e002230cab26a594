"""Where kept segmentations go wrong, and how the cases' intensities compare.

Reads the masks that ``bench_segment_real.py --keep DIR`` wrote (``<case>_<variant>.nii.gz``)
and prints, per case, variant and region (WT, TC, ET): the reference and predicted voxels, the
voxels missed, the false positives and those more than ``--far-mm`` from the reference. Then,
for every case (training and external), the share of the head that is tumour and where FLAIR's
normal-appearing tissue (head minus WT) and oedema fall under two normalisations: radsurv's
z-score over the head, and a robust one (median and IQR/1.349 over the head). When the
normal-tissue tail of a new case reaches the training cases' oedema, a model trained on them
labels it tumour. These are the figures of the README's "Why the TCGA cases fail"::

    .venv/bin/python bench/bench_segment_real.py --external --variants 2d,2d+tta --keep /tmp/ext
    .venv/bin/python bench/diagnose_masks.py --keep /tmp/ext
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from bench_segment_real import DEFAULT_DATA, DEFAULT_EXTERNAL, load_cases, load_external
from scipy import ndimage

from radsurv.data.case import Case
from radsurv.data.labels import LABEL_ED, region_mask
from radsurv.data.nifti import read_mask_nifti
from radsurv.segmentation.metrics import EVAL_REGIONS
from radsurv.segmentation.preprocess import foreground_mask


def error_volumes(
    pred: np.ndarray,
    ref: np.ndarray,
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
    far_mm: float = 10.0,
) -> dict[str, dict[str, int]]:
    """Per region of two canonical (z, y, x) label masks: voxel counts of the reference, the
    prediction, the missed voxels, the false positives, and the false positives farther than
    ``far_mm`` from the reference (all of them when the reference region is empty).

    ``spacing`` is SimpleITK order (x, y, z) in mm.
    """
    out = {}
    for region in EVAL_REGIONS:
        p, r = region_mask(pred, region), region_mask(ref, region)
        false_pos = p & ~r
        if r.any():
            distance = ndimage.distance_transform_edt(~r, sampling=tuple(reversed(spacing)))
            far = int(np.count_nonzero(false_pos & (distance > far_mm)))
        else:
            far = int(np.count_nonzero(false_pos))
        out[region] = {
            "reference": int(np.count_nonzero(r)),
            "predicted": int(np.count_nonzero(p)),
            "missed": int(np.count_nonzero(r & ~p)),
            "false_positive": int(np.count_nonzero(false_pos)),
            "far_false_positive": far,
        }
    return out


def _robust(values: np.ndarray) -> tuple[float, float]:
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    return float(q50), float((q75 - q25) / 1.349)  # IQR / 1.349 = sd for a normal distribution


def intensity_profile(image: np.ndarray, labels: np.ndarray, head: np.ndarray) -> dict[str, Any]:
    """Where normal-appearing tissue (head minus WT) and oedema of one modality fall.

    Returns the WT share of the head and, for the z-score over the head and the median/IQR
    normalisation, the normal tissue's median and 95th/99th percentiles and the oedema's median
    (NaN without oedema), in units of each normalisation's scale.
    """
    wt, oedema = labels > 0, labels == LABEL_ED
    values = image[head].astype(np.float64)
    normal = image[head & ~wt].astype(np.float64)
    oedema_median = float(np.median(image[oedema])) if oedema.any() else float("nan")
    centres = {
        "zscore": (float(values.mean()), float(values.std())),
        "median_iqr": _robust(values),
    }
    profile: dict[str, Any] = {"wt_share_of_head": float(wt.sum() / head.sum())}
    for name, (loc, scale) in centres.items():
        p50, p95, p99 = (np.percentile(normal, [50, 95, 99]) - loc) / scale
        profile[name] = {
            "normal_median": float(p50),
            "normal_p95": float(p95),
            "normal_p99": float(p99),
            "oedema_median": (oedema_median - loc) / scale,
        }
    return profile


def kept_masks(keep: Path, case_id: str) -> dict[str, Path]:
    """Variant name -> mask path of the masks ``bench_segment_real.py --keep`` wrote for a case."""
    prefix = f"{case_id}_"
    return {
        p.name[len(prefix) : -len(".nii.gz")]: p for p in sorted(keep.rglob(f"{prefix}*.nii.gz"))
    }


def diagnose(cases: list[Case], keep: Path | None, far_mm: float) -> dict[str, Any]:
    """Error volumes of every kept mask and the FLAIR intensity profile of every case."""
    result: dict[str, Any] = {"far_mm": far_mm, "errors": {}, "flair": {}}
    for case in cases:
        head = foreground_mask(np.stack([case.images[m] for m in sorted(case.images)]))
        result["flair"][case.case_id] = intensity_profile(case.images["flair"], case.labels, head)
        for variant, path in (kept_masks(keep, case.case_id) if keep else {}).items():
            pred = read_mask_nifti(path, case, label_convention="brats2020")
            errors = error_volumes(pred, case.labels, case.spacing, far_mm)
            result["errors"].setdefault(case.case_id, {})[variant] = errors
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"errors of the kept masks (far: over {result['far_mm']:g} mm from the reference)")
    print(
        f"{'case':24s}{'variant':9s}{'region':7s}{'ref':>9s}{'pred':>9s}{'missed':>9s}"
        f"{'FP':>9s}{'far FP':>9s}"
    )
    for case_id, variants in result["errors"].items():
        for variant, regions in variants.items():
            for region, e in regions.items():
                print(
                    f"{case_id:24s}{variant:9s}{region:7s}{e['reference']:9d}{e['predicted']:9d}"
                    f"{e['missed']:9d}{e['false_positive']:9d}{e['far_false_positive']:9d}"
                )
    print(
        "\nFLAIR: normal-appearing tissue (head minus WT) and oedema, in sd of each normalisation"
    )
    print(
        f"{'case':24s}{'WT/head':>8s}  {'z: normal p50 p95 p99 / oedema':34s}"
        f"{'median/IQR: normal p50 p95 p99 / oedema'}"
    )
    for case_id, prof in result["flair"].items():
        cols = [
            f"{p['normal_median']:+.2f} {p['normal_p95']:+.2f} {p['normal_p99']:+.2f} / "
            f"{p['oedema_median']:+.2f}"
            for p in (prof["zscore"], prof["median_iqr"])
        ]
        print(f"{case_id:24s}{prof['wt_share_of_head']:8.3f}  {cols[0]:34s}{cols[1]}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="the --keep folder of bench_segment_real.py")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--external-data", type=Path, default=DEFAULT_EXTERNAL)
    parser.add_argument("--far-mm", type=float, default=10.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cases = load_cases(args.data)
    if args.external_data.is_dir():
        cases += load_external(args.external_data)
    result = diagnose(cases, args.keep, args.far_mm)
    _print(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
