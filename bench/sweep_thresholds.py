"""Do thresholds or morphology rescue the held-out cases? A sweep over kept models.

Run after ``bench_segment_real.py --variants 2d --keep DIR`` (leave-one-out): for every fold
it loads ``DIR/foldK/model_2d.pt``, computes the held-out case's probabilities once (plain and
with mirror TTA), then labels them with each WT and TC threshold (ET stays at 0.5), radsurv's
post-processing, and optionally a morphological closing of the whole tumour (``+close``: WT
closed with a 6-connected element, ``--close-iterations`` times, then its holes filled, the
added voxels becoming oedema). It prints mean Dice per variant and the WT of each case.

The row ``wt0.5_tc0.5`` is radsurv's own prediction and reproduces the Dice of the run that kept
the models. Choosing a threshold on these rows would tune on the test cases: the sweep says how
much any choice could move the mean, not which one to use.

    .venv/bin/python bench/bench_segment_real.py --minutes 8 --variants 2d --keep DIR
    .venv/bin/python bench/sweep_thresholds.py --keep DIR --json sweep.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from bench_segment_real import DEFAULT_DATA, load_cases
from scipy import ndimage

from radsurv.data.case import Case
from radsurv.data.labels import LABEL_ED
from radsurv.segmentation import case_scores, load_model
from radsurv.segmentation.inference import box_probabilities
from radsurv.segmentation.metrics import EVAL_REGIONS
from radsurv.segmentation.postprocess import postprocess_labels
from radsurv.segmentation.predict import SegmentationModel
from radsurv.segmentation.preprocess import present_images, regions_to_labels


def case_probabilities(
    model: SegmentationModel, case: Case, tta: bool
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Sigmoid probabilities (3, z, y, x) of the head's box and the box, as segment_case sees it."""
    names, arrays = present_images(case, model.config.modalities)
    probs, box = box_probabilities(
        model.members, arrays, model.config, model.device, model.amp, tta, names, case.case_id
    )
    return probs.cpu().numpy(), box


def close_whole_tumour(labels: np.ndarray, iterations: int) -> np.ndarray:
    """``labels`` with WT closed (6-connected element, ``iterations`` times) and its holes
    filled; the voxels added become oedema (``LABEL_ED``). Returns a new array."""
    wt = labels > 0
    element = ndimage.generate_binary_structure(3, 1)
    closed = ndimage.binary_fill_holes(ndimage.binary_closing(wt, element, iterations=iterations))
    out = labels.copy()
    out[closed & ~wt] = LABEL_ED
    return out


def label_variants(
    probs: np.ndarray,
    spacing: tuple[float, float, float],
    wt_thresholds: list[float],
    tc_thresholds: list[float],
    close_iterations: int,
) -> dict[str, np.ndarray]:
    """Post-processed labels of ``probs`` for every (WT, TC) threshold pair, ET at 0.5, and
    each with the whole tumour closed (name suffix ``+close``)."""
    out: dict[str, np.ndarray] = {}
    for wt_t in wt_thresholds:
        for tc_t in tc_thresholds:
            thresholds = np.array([wt_t, tc_t, 0.5], dtype=np.float32)[:, None, None, None]
            labels = postprocess_labels(regions_to_labels(probs > thresholds), spacing)
            name = f"wt{wt_t:g}_tc{tc_t:g}"
            out[name] = labels
            out[f"{name}+close"] = close_whole_tumour(labels, close_iterations)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, required=True, help="bench_segment_real's --keep")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--wt", default="0.3,0.4,0.5", help="WT thresholds, comma-separated")
    parser.add_argument("--tc", default="0.3,0.5", help="TC thresholds, comma-separated")
    parser.add_argument("--close-iterations", type=int, default=2)
    parser.add_argument("--json", type=Path, help="write the per-case Dice here")
    args = parser.parse_args()
    wt_t = [float(v) for v in args.wt.split(",")]
    tc_t = [float(v) for v in args.tc.split(",")]
    cases = load_cases(args.data)
    folds = sorted(args.keep.glob("fold*/model_2d.pt"))
    if len(folds) != len(cases):
        parser.error(
            f"{args.keep}: {len(folds)} fold models for {len(cases)} cases; keep a "
            "full leave-one-out run (bench_segment_real.py --variants 2d --keep DIR)"
        )
    dice: dict[str, dict[str, dict[str, float]]] = {}
    for k, case in enumerate(cases):
        model = load_model(args.keep / f"fold{k}" / "model_2d.pt", device="cpu")
        for tta in (False, True):
            probs, box = case_probabilities(model, case, tta)
            for name, crop in label_variants(
                probs, case.spacing, wt_t, tc_t, args.close_iterations
            ).items():
                labels = np.zeros(case.shape, np.uint8)
                labels[box] = crop
                scores = case_scores(labels, case.labels, case.spacing)
                key = f"{'tta' if tta else 'plain'}:{name}"
                dice.setdefault(key, {})[case.case_id] = {
                    r: scores[r]["dice"] for r in EVAL_REGIONS
                }
    print(f"{'variant':<28}" + "".join(f"{r + ' Dice':>9}" for r in EVAL_REGIONS) + "  WT per case")
    for name, per_case in dice.items():
        means = [np.mean([d[r] for d in per_case.values()]) for r in EVAL_REGIONS]
        per = " ".join(f"{d['WT']:.3f}" for d in per_case.values())
        print(f"{name:<28}" + "".join(f"{m:>9.3f}" for m in means) + f"  {per}")
    if args.json:
        args.json.write_text(json.dumps(dice, indent=1))


if __name__ == "__main__":
    main()
