"""Reference PyRadiomics features, computed OUTSIDE the environment under test.

Run by ``make reference`` inside a separate virtual environment with NumPy 1.26 and
PyRadiomics 3.0.1 (the environment PyRadiomics was built and tested in; see ``build.sh``).
It deliberately imports nothing from radsurv: it reads the images with SimpleITK, maps the
labels, z-scores inside the brain in float64 and calls ``RadiomicsFeatureExtractor.execute``
on the whole, uncropped image, once per region and modality. radsurv's tests compare their
own features with the CSVs written here.

What radsurv promises, and so what this script computes: the features PyRadiomics 3.0.1
computes under NumPy 1.26 from the stored values as float64, after radsurv's documented
intensity step:

- ``zscore-brain``: (v - mean) / sd over the modality's non-zero voxels, mean and population
  sd in float64; background stays 0;
- ``as-is``: the stored values, as float64.

Regions (canonical labels 1 NCR, 2 ED, 4 ET): NCR, ED, ET, TC = NCR + ET, WT = all three.
Columns: ``{region}_{key}`` for shape (once per region), ``{modality}_{region}_{key}`` for
every other class, as radsurv names them. A region PyRadiomics refuses (too small, empty) has
no rows here; radsurv reports NaN for it.

Output: ``reference_{preset}.csv.gz``, one row per (case, intensity) and one column per
feature (values with 17 significant digits: exact float64 round trip; empty where PyRadiomics
gave no value), and ``provenance.json`` (versions, settings, inputs).
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import logging
import platform
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import yaml

HERE = Path(__file__).resolve().parent
PRESETS = HERE.parents[1] / "radsurv" / "features" / "params"
REGIONS = {"NCR": (1,), "ED": (2,), "ET": (4,), "TC": (1, 4), "WT": (1, 2, 4)}
BRATS2015_TO_CANONICAL = {0: 0, 1: 1, 2: 2, 3: 1, 4: 4}  # 1 necrosis + 3 non-enhancing -> NCR


def _synthetic_module():
    spec = importlib.util.spec_from_file_location("synthetic_inputs", HERE / "synthetic_inputs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def zscore_brain(array: np.ndarray) -> np.ndarray:
    arr = np.asarray(array)
    brain = arr != 0
    values = arr[brain].astype(np.float64)
    out = np.zeros(arr.shape, dtype=np.float64)
    out[brain] = (values - values.mean()) / values.std()
    return out


def _image(array: np.ndarray, geometry: sitk.Image | None, spacing=None) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    if geometry is not None:
        image.CopyInformation(geometry)
    else:
        image.SetSpacing(spacing)
    return image


def extract(images, labels, geometry, spacing, params, intensity) -> dict[str, float]:
    """Every feature of one case: shape once per region, the rest per modality x region."""
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    classes = params.get("featureClass") or {}
    texture_params = dict(params, featureClass={k: v for k, v in classes.items() if k != "shape"})
    out: dict[str, float] = {}
    extractors = []
    if "shape" in classes:
        shape_params = dict(
            params, imageType={"Original": {}}, featureClass={"shape": classes["shape"]}
        )
        extractors.append(("shape", RadiomicsFeatureExtractor(shape_params)))
    extractors.append(("texture", RadiomicsFeatureExtractor(texture_params)))
    for _, extractor in extractors:
        extractor.settings["additionalInfo"] = False
    first = next(iter(images))
    for region, values in REGIONS.items():
        mask = _image(np.isin(labels, values).astype(np.uint8), geometry, spacing)
        for kind, extractor in extractors:
            modalities = [first] if kind == "shape" else list(images)
            for modality in modalities:
                stored = np.asarray(images[modality]).astype(np.float64)  # exact
                array = zscore_brain(stored) if intensity == "zscore-brain" else stored
                try:
                    result = extractor.execute(_image(array, geometry, spacing), mask, label=1)
                except ValueError:  # region too small or empty: radsurv gives NaN
                    continue
                for key, value in result.items():
                    if key.startswith("diagnostics_"):
                        continue
                    name = f"{region}_{key}" if kind == "shape" else f"{modality}_{region}_{key}"
                    out[name] = float(value)
    return out


def brats2015_case(folder: Path):
    flair = sitk.ReadImage(str(folder / "Flair_subtrMeanDivStd.nii.gz"))
    t1c = sitk.ReadImage(str(folder / "T1c_subtrMeanDivStd.nii.gz"))
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "OTMultiClass.nii.gz")))
    lut = np.zeros(5, dtype=np.uint8)
    for src, dst in BRATS2015_TO_CANONICAL.items():
        lut[src] = dst
    labels = lut[np.round(raw).astype(np.intp)]
    images = {"flair": sitk.GetArrayFromImage(flair), "t1gd": sitk.GetArrayFromImage(t1c)}
    return images, labels, flair


def tcga_case(folder: Path, mask: str = "fusion-mav"):
    names = {"flair": "flair", "t1": "t1", "t1gd": "t1c", "t2": "t2"}
    read = {m: sitk.ReadImage(str(folder / f"{folder.name}_{s}.nii.gz")) for m, s in names.items()}
    labels = sitk.GetArrayFromImage(
        sitk.ReadImage(str(folder / "segmentations" / f"{mask}.nii.gz"))
    )
    images = {m: sitk.GetArrayFromImage(im) for m, im in read.items()}
    return images, labels.astype(np.uint8), read["flair"]


def pyradiomics_case(folder: Path, name: str):
    image = sitk.ReadImage(str(folder / f"{name}_image.nrrd"))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{name}_label.nrrd")))
    labels = (label == 1).astype(np.uint8)  # label 1 -> canonical 1 (NCR)
    return {"t1": sitk.GetArrayFromImage(image)}, labels, image


def plan(shared: Path):
    """(case name, loader, intensities, presets) of every reference case."""
    synthetic = _synthetic_module()
    both = ("brats-original", "brats-filters")
    rows = []
    for name, make in synthetic.CASES.items():
        intensities = ("zscore-brain", "as-is") if "float32" in name else ("zscore-brain",)
        presets = (*both, "all-filters")
        rows.append((name, lambda make=make: (*make()[:2], None, make()[2]), intensities, presets))
    deepmedic = shared / "brats2015_deepmedic"
    for folder in sorted(deepmedic.glob("brats_*")):
        presets = both if folder.name == "brats_2013_pat0004_1" else ("brats-original",)
        rows.append(
            (
                f"brats2015/{folder.name}",
                lambda f=folder: (*brats2015_case(f), None),
                ("zscore-brain",),
                presets,
            )
        )
    for name in ("brain1", "brain2"):
        rows.append(
            (
                f"pyradiomics/{name}",
                lambda n=name: (*pyradiomics_case(shared / "pyradiomics", n), None),
                ("zscore-brain",),
                ("brats-original",),
            )
        )
    for folder in sorted((shared / "brainles_tcga").glob("TCGA-*")):
        rows.append(
            (
                f"brainles_tcga/{folder.name}",
                lambda f=folder: (*tcga_case(f), None),
                ("zscore-brain",),
                ("brats-original",),
            )
        )
    return rows


def write_wide(rows: list[tuple[str, str, dict[str, float]]], path: Path) -> None:
    """Write ``[(case, intensity, {feature: value})]`` as one gzip CSV row per case."""
    import gzip
    import io

    columns = sorted({k for _, _, values in rows for k in values})
    # mtime=0: the same values give the same bytes (no timestamp in the gzip header)
    with gzip.GzipFile(path, "wb", compresslevel=9, mtime=0) as raw:
        f = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        writer = csv.writer(f)
        writer.writerow(["case", "intensity", *columns])
        for case, intensity, values in rows:
            cells = [repr(values[c]) if c in values else "" for c in columns]
            writer.writerow([case, intensity, *cells])
        f.flush()
        f.detach()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=HERE.parents[2] / "shared" / "data")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--only", default="", help="comma-separated case names (default: all)")
    args = parser.parse_args()

    import radiomics

    radiomics.setVerbosity(logging.ERROR)
    only = {s for s in args.only.split(",") if s}
    presets = {
        p: yaml.safe_load((PRESETS / f"{p}.yaml").read_text())
        for p in ("brats-original", "brats-filters")
    }
    presets["all-filters"] = yaml.safe_load((HERE / "all-filters.yaml").read_text())
    rows: dict[str, list] = {preset: [] for preset in presets}
    inputs = {}
    for name, load, intensities, case_presets in plan(args.shared):
        if only and name not in only:
            continue
        images, labels, geometry, spacing = load()
        inputs[name] = {m: str(a.dtype) for m, a in images.items()}
        for preset in case_presets:
            for intensity in intensities:
                t0 = time.perf_counter()
                values = extract(images, labels, geometry, spacing, presets[preset], intensity)
                rows[preset].append((name, intensity, values))
                print(
                    f"{name} {preset} {intensity}: {len(values)} features, "
                    f"{time.perf_counter() - t0:.1f} s",
                    flush=True,
                )
    for preset, preset_rows in rows.items():
        write_wide(preset_rows, args.out / f"reference_{preset}.csv.gz")
    import pywt
    import radiomics as rad

    provenance = {
        "made_by": "tests/reference/compute_references.py (make reference)",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyradiomics": rad.__version__,
        "SimpleITK": sitk.Version_VersionString(),
        "PyWavelets": pywt.__version__,
        "platform": platform.platform(),
        "date": time.strftime("%Y-%m-%d"),
        "inputs_storage_dtype": inputs,
        "presets": presets,
    }
    (args.out / "provenance.json").write_text(
        json.dumps(provenance, indent=2, sort_keys=True) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
