"""Benchmark: what the HTML report adds to ``radsurv segment evaluate`` on real cases.

Baseline (named ``evaluate --no-report``): scoring alone (read the case and its mask, Dice and
HD95 of WT, TC, ET). Measured: the same call writing ``report.html`` (overlays, table,
distribution figure), and ``write_segmentation_report`` on its own (it reads every case again).

Data: the 2 real TCGA cases of ../shared/data/brainles_tcga (240x240x155, 1 mm, 4 modalities),
read once into memory so that disk reads do not blur the comparison; prediction: the
``isen-20`` algorithm's mask, reference: the ``fusion-mav`` fusion. ``--repeat`` copies the
cases under new ids to measure a larger cohort.

Prints the wall times, the ratio to the baseline, the report's size per case and the size
extrapolated to the 369 cases of BraTS 2020.

    .venv/bin/python bench/bench_segment_report.py --repeat 3
"""

from __future__ import annotations

import argparse
import copy
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "brainles_tcga"
MODALITIES = {"flair": "flair", "t1": "t1", "t1gd": "t1c", "t2": "t2"}


def load_cases(repeat: int) -> list:
    from radsurv.data.nifti import read_nifti_case

    base = []
    for folder in sorted(p for p in DATA.iterdir() if p.is_dir()):
        base.append(
            read_nifti_case(
                folder,
                modality_patterns={m: f"{folder.name}_{s}.nii.gz" for m, s in MODALITIES.items()},
                seg_pattern="segmentations/fusion-mav.nii.gz",
                label_convention="brats2020",
            )
        )
    cases = []
    for k in range(repeat):
        for case in base:
            c = copy.copy(case)
            c.case_id = f"{case.case_id}_r{k}"
            cases.append(c)
    return cases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2, help="copies of the 2 cases")
    args = parser.parse_args()
    if not DATA.is_dir():
        print(f"skipped: {DATA} is absent (real data lives only in the dev workplace)")
        return 0
    from radsurv.segmentation import evaluate_masks
    from radsurv.segmentation.report import write_segmentation_report

    cases = load_cases(args.repeat)
    pred = Path(tempfile.mkdtemp(prefix="bench-segreport-"))
    try:
        for case in cases:
            name = case.case_id.rsplit("_r", 1)[0]
            src = DATA / name / "segmentations" / "isen-20.nii.gz"
            shutil.copy(src, pred / f"{case.case_id}.nii.gz")
        evaluate_masks(pred, cases[:1], report=pred / "warm.html")  # imports, font cache

        t0 = time.perf_counter()
        result = evaluate_masks(pred, cases, report=False)
        base = time.perf_counter() - t0
        t0 = time.perf_counter()
        with_report = evaluate_masks(pred, cases, report=pred / "report.html")
        both = time.perf_counter() - t0
        t0 = time.perf_counter()
        alone_path = write_segmentation_report(pred, cases, pred / "alone.html", scores=result)
        alone = time.perf_counter() - t0
        assert not with_report.failed, with_report.cases
        size = (pred / "report.html").stat().st_size
        n = len(cases)
        print(f"{n} real cases (240x240x155, 4 modalities), in memory")
        print(f"baseline evaluate --no-report : {base:6.2f} s  ({base / n:.3f} s/case)")
        print(
            f"evaluate with report.html     : {both:6.2f} s  ({both / n:.3f} s/case)  "
            f"ratio {both / base:.2f}x"
        )
        print(
            f"write_segmentation_report     : {alone:6.2f} s  ({alone / n:.3f} s/case)  "
            f"ratio {alone / base:.2f}x"
        )
        print(
            f"report size: {size / 1e3:.0f} kB, {size / n / 1e3:.0f} kB/case; "
            f"extrapolated to 369 cases: {size / n * 369 / 1e6:.1f} MB"
        )
        assert alone_path.stat().st_size > 0
    finally:
        shutil.rmtree(pred, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
