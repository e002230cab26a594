"""Benchmark: ``radsurv extract-features`` vs the ``pyradiomics`` command in batch mode.

Baseline (named ``pyradiomics --jobs N``): the way people run PyRadiomics today. A CSV with one
(Image, Mask) row per case x modality x region, the same parameter file, run as
``.venv/bin/pyradiomics batch.csv --param params.yaml --jobs N``. Its images are the same
preprocessed (z-scored inside the brain) volumes, written as NIfTI; each region is its own
binary label file. radsurv reads the same cases through a manifest (``--jobs 2``).

Data: the 4 real BraTS 2015 cases of ../shared/data/brats2015_deepmedic (240x240x155, 1 mm,
FLAIR and T1c, labels mapped from the BraTS 2015 convention). They have 2 modalities; with
``--modalities 4`` (the default) the FLAIR volume also stands in for T2 and the T1c volume for
T1, so each case has 4 modalities (each is extracted separately; nothing is shared across them).

Prints both wall times, the ratios and the largest relative feature difference.

    .venv/bin/python bench/bench_features.py --cases 2
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "brats2015_deepmedic"


def load_cases(n_cases: int, n_modalities: int) -> list:
    import SimpleITK as sitk

    from radsurv.data.case import Case
    from radsurv.data.labels import to_canonical

    cases = []
    for folder in sorted(DATA.iterdir())[:n_cases]:
        flair = sitk.ReadImage(str(folder / "Flair_subtrMeanDivStd.nii.gz"), sitk.sitkFloat32)
        t1c = sitk.ReadImage(str(folder / "T1c_subtrMeanDivStd.nii.gz"), sitk.sitkFloat32)
        raw = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "OTMultiClass.nii.gz")))
        images = {"flair": sitk.GetArrayFromImage(flair), "t1gd": sitk.GetArrayFromImage(t1c)}
        if n_modalities == 4:  # documented stand-ins: same volumes under the other two names
            images["t1"] = images["t1gd"].copy()
            images["t2"] = images["flair"].copy()
        idx = len(cases) + 1
        cases.append(
            Case(
                case_id=f"BraTS20_Training_{900 + idx:03d}",
                images=images,
                labels=to_canonical(raw, "brats2015", str(folder)),
                spacing=flair.GetSpacing(),
                origin=flair.GetOrigin(),
                direction=flair.GetDirection(),
            )
        )
    return cases


def write_inputs(cases: list, work: Path, regions: list[str], intensity: str) -> Path:
    """NIfTI cases + manifest for radsurv; preprocessed images + region masks + CSV for baseline."""
    import SimpleITK as sitk

    from radsurv.data.labels import region_mask
    from radsurv.data.manifest import build_manifest, write_manifest
    from radsurv.data.nifti import write_nifti_case
    from radsurv.features.preprocessing import preprocess

    rows = []
    for case in cases:
        write_nifti_case(case, work / "cohort")
        base = work / "baseline" / case.case_id
        base.mkdir(parents=True, exist_ok=True)
        for modality in case.modalities:
            arr = preprocess(case.images[modality], intensity)
            sitk.WriteImage(case.to_sitk(arr), str(base / f"{modality}.nii.gz"), True)
        for region in regions:
            mask = region_mask(case.labels, region).astype(np.uint8)
            sitk.WriteImage(case.to_sitk(mask), str(base / f"mask_{region}.nii.gz"), True)
            for modality in case.modalities:
                rows.append(
                    {
                        "Image": str(base / f"{modality}.nii.gz"),
                        "Mask": str(base / f"mask_{region}.nii.gz"),
                        "case_id": case.case_id,
                        "modality": modality,
                        "region": region,
                    }
                )
    pd.DataFrame(rows).to_csv(work / "batch.csv", index=False)
    manifest = build_manifest(work / "cohort", relative_to=work, checksum=False)
    write_manifest(manifest, work / "data_manifest.csv")
    return work / "data_manifest.csv"


def run_baseline(work: Path, params: Path, jobs: int) -> tuple[float, pd.DataFrame]:
    out = work / f"pyradiomics_j{jobs}.csv"
    out.unlink(missing_ok=True)
    exe = Path(sys.executable).with_name("pyradiomics")
    cmd = [str(exe), str(work / "batch.csv"), "--param", str(params), "--jobs", str(jobs)]
    cmd += ["-o", str(out), "-f", "csv", "--verbosity", "1"]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0, pd.read_csv(out)


def max_rel_diff(ours: pd.DataFrame, baseline: pd.DataFrame) -> tuple[float, str, int]:
    ours = ours.set_index("case_id")
    worst, where, compared = 0.0, "", 0
    keys = [c for c in baseline.columns if c.startswith("original_") or "-" in c.split("_")[0]]
    for _, row in baseline.iterrows():
        for key in keys:
            if "_shape_" in key:
                col = f"{row['region']}_{key}"
            else:
                col = f"{row['modality']}_{row['region']}_{key}"
            a, b = float(row[key]), float(ours.at[row["case_id"], col])
            compared += 1
            if math.isnan(a) and math.isnan(b):
                continue
            rel = 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))
            if not rel <= worst:
                worst, where = rel, f"{row['case_id']} {col}"
    return worst, where, compared


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=2)
    ap.add_argument("--modalities", type=int, choices=(2, 4), default=4)
    ap.add_argument("--params", default="brats-original")
    ap.add_argument("--regions", default="NCR,ED,ET,TC,WT")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--skip-jobs1", action="store_true", help="skip the pyradiomics --jobs 1 run")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if not DATA.is_dir():
        sys.exit(f"real data {DATA} absent: this benchmark needs the shared BraTS cases")

    from radsurv.features.params import load_params, preset_path
    from radsurv.features.runner import extract_features

    regions = args.regions.split(",")
    name, _ = load_params(args.params)
    params_file = preset_path(name) if name in ("brats-original", "brats-filters") else Path(name)
    work = Path(tempfile.mkdtemp(prefix="bench_features_"))
    try:
        cases = load_cases(args.cases, args.modalities)
        manifest = write_inputs(cases, work, regions, "zscore-brain")
        del cases
        n_rows = len(pd.read_csv(work / "batch.csv"))
        print(
            f"{args.cases} case(s) 240x240x155, {args.modalities} modalities, regions "
            f"{args.regions}, params {name}: {n_rows} pyradiomics rows"
        )

        t0 = time.perf_counter()
        res = extract_features(
            manifest,
            params=str(params_file),
            regions=regions,
            jobs=args.jobs,
            progress=False,
            output=work / "radsurv.csv",
        )
        t_ours = time.perf_counter() - t0
        if res.failed:
            sys.exit(f"radsurv failed cases: {res.status.to_string()}")
        print(f"radsurv extract-features --jobs {args.jobs}: {t_ours:8.1f} s")

        runs = [args.jobs] + ([] if args.skip_jobs1 else [1])
        for jobs in runs:
            t_base, base = run_baseline(work, params_file, jobs)
            worst, where, n = max_rel_diff(res.features, base)
            print(
                f"pyradiomics --jobs {jobs}:            {t_base:8.1f} s   radsurv is "
                f"{t_base / t_ours:5.2f}x faster; largest relative difference {worst:.3g} "
                f"over {n} values{(' at ' + where) if worst else ''}"
            )
    finally:
        if args.keep:
            print(f"work folder kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
