"""Benchmark: ``radsurv robustness`` over P rows per case against P single extractions.

Baselines, measured in the same run, in this process (``jobs=1``), after a warm-up:

- ``P x extract-features``: P times one plain extraction (read the files, preprocess, crop,
  compute) of the unperturbed case. The ratio ``time(robustness) / (P x one extraction)`` is
  the figure asked for; it is <= 1 when perturbed rows cost what the original costs. It can
  exceed 1 when the perturbed ROIs are costlier to featurise (a dilated mask is larger; PyRadiomics'
  texture matrices grow with the ROI and its grey levels), which no pipeline can avoid.
- ``naive``: every row computed from scratch (read, preprocess and crop the case again for each
  row, then perturb and compute): the same feature work without radsurv's sharing. The ratio
  ``time(robustness) / time(naive)`` isolates what reading, preprocessing and cropping once saves.

P counts every row of the long table, the unperturbed ``original`` included.

Data: the real TCGA case TCGA-FG-6692 of ../shared/data/brainles_tcga (240x240x155, 1 mm,
4 modalities; its hnfnetv1-20 segmentation as the mask) when present, else a synthetic phantom
written as NIfTI (``--synthetic``).

    .venv/bin/python bench/bench_robustness.py                    # real case, brats-original
    .venv/bin/python bench/bench_robustness.py --synthetic --modalities t1gd,flair
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TCGA = ROOT.parent / "shared" / "data" / "brainles_tcga"
CASE = "TCGA-FG-6692"
PATTERNS = {"flair": "*_flair.nii.gz", "t1": "*_t1.nii.gz", "t1gd": "*_t1c.nii.gz",
            "t2": "*_t2.nii.gz"}  # fmt: skip


def _inputs(tmp: Path, synthetic: bool) -> tuple[Path, dict[str, str] | str, str]:
    """(manifest, masks for extract_features, reference for compute_robustness)."""
    from radsurv.data.manifest import build_manifest, write_manifest

    if not synthetic and (TCGA / CASE).is_dir():
        data = tmp / "data"
        (data / CASE).mkdir(parents=True)
        for image in (TCGA / CASE).glob("*.nii.gz"):  # the images, not the segmentations
            (data / CASE / image.name).symlink_to(image)
        table = build_manifest(data, fmt="nifti", modality_patterns=PATTERNS, relative_to=tmp,
                               checksum=False, find_tables=False)  # fmt: skip
        mask = str(TCGA / CASE / "segmentations" / "hnfnetv1-20.nii.gz")
        return write_manifest(table, tmp / "m.csv"), {CASE: mask}, mask
    from radsurv.data.nifti import write_nifti_case
    from radsurv.data.synthetic import make_phantom_case

    case = make_phantom_case(1, 0, (64, 128, 128))
    write_nifti_case(case, tmp / "data")
    table = build_manifest(tmp / "data", relative_to=tmp, checksum=False, find_tables=False)
    return write_manifest(table, tmp / "m.csv"), "ground-truth", ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", action="store_true", help="use a synthetic phantom")
    parser.add_argument("--params", default="brats-original")
    parser.add_argument("--regions", default="WT,TC,ET")
    parser.add_argument("--modalities", default="t1gd,flair")
    parser.add_argument(
        "--perturbations", default="erode,dilate,contour,translate,rotate:-5,rotate:5,noise"
    )
    parser.add_argument("--repeats", type=int, default=1, help="timed runs of each (best kept)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    from radsurv.features import extract_features
    from radsurv.features.robustness import compute_robustness

    regions = args.regions.split(",")
    modalities = args.modalities.split(",")
    kw = {"params": args.params, "regions": regions, "modalities": modalities, "jobs": 1}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        manifest, masks, mask_file = _inputs(tmp, args.synthetic)
        rob_masks = None if not mask_file else {"ref": {CASE: mask_file}}
        reference = "ground-truth" if not mask_file else "ref"

        def one() -> float:
            t0 = time.perf_counter()
            res = extract_features(manifest, masks=masks, **kw)
            assert not res.failed, res.status
            return time.perf_counter() - t0

        def robust() -> tuple[float, int]:
            t0 = time.perf_counter()
            res = compute_robustness(manifest, perturbations=args.perturbations, masks=rob_masks,
                                     reference=reference, **kw)  # fmt: skip
            assert not res.failed, res.status
            return time.perf_counter() - t0, res.features["perturbation"].nunique()

        def naive() -> float:
            from radsurv.features.extract import ExtractionConfig
            from radsurv.features.perturb import parse_perturbations
            from radsurv.features.robustness import (
                plan_variants,
                task_prepare_robust,
                variant_features,
            )
            from radsurv.features.runner import case_refs

            config = ExtractionConfig.create(args.params, regions=regions, modalities=modalities)
            perts = parse_perturbations(args.perturbations)
            sets = rob_masks or {}
            t0 = time.perf_counter()
            for ref in case_refs(manifest)[0]:
                for v in plan_variants(perts, list(sets), reference):
                    rc, _ = task_prepare_robust(ref, config, sets, reference, perts)
                    variant_features(rc, config, v.mask_set, v.perturbation, v.index, 0)
            return time.perf_counter() - t0

        one()  # warm-up: PyRadiomics import, extractor and column probe
        t_one = min(one() for _ in range(args.repeats))
        runs = [robust() for _ in range(args.repeats)]
        t_rob, p = min(runs)
        t_naive = min(naive() for _ in range(args.repeats))
    source = "synthetic phantom 64x128x128" if args.synthetic or not mask_file else CASE
    print(f"case: {source}; params {args.params}; regions {regions}; modalities {modalities}")
    print(f"one extraction (read + preprocess + crop + features): {t_one:.2f} s")
    print(f"robustness, P = {p} rows (original + {p - 1} perturbations): {t_rob:.2f} s")
    print(f"baseline P x one extraction: {p * t_one:.2f} s")
    print(f"ratio time / (P x one extraction): {t_rob / (p * t_one):.2f}  (target <= 1)")
    print(f"naive (each row read, preprocessed and cropped again): {t_naive:.2f} s")
    print(f"ratio time / naive: {t_rob / t_naive:.2f}")


if __name__ == "__main__":
    main()
