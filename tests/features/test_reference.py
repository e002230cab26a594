"""radsurv's features equal PyRadiomics' under NumPy 1.26, whatever the storage dtype.

The references in tests/reference/ were computed by ``make reference`` in a separate
environment (NumPy 1.26, PyRadiomics 3.0.1, no radsurv code; see tests/reference/README.md),
from the stored values as float64, on the whole uncropped image. Here radsurv reads the same
cases from files (NIfTI, the Kaggle HDF5 layout) in several storage dtypes, crops, filters and
extracts them under NumPy 2 and must give the reference values, and identical tables for the
same stored values in different dtypes.
"""

from __future__ import annotations

import functools
import importlib.util
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radsurv.data.case import Case
from radsurv.data.hdf5 import read_volume, scan_pack, write_kaggle_volume
from radsurv.data.nifti import read_mask_nifti, read_nifti_case
from radsurv.features.extract import ExtractionConfig, extract_case

REFERENCE = Path(__file__).resolve().parents[1] / "reference"
TOLERANCE = 1e-9  # relative; measured worst over every committed reference value: see README


def _synthetic_inputs():
    spec = importlib.util.spec_from_file_location(
        "synthetic_inputs", REFERENCE / "synthetic_inputs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SYNTHETIC = _synthetic_inputs()


@functools.cache
def reference(preset: str) -> dict[tuple[str, str], dict[str, float]]:
    """``{(case, intensity): {feature: value}}`` of one preset's reference CSV."""
    table = pd.read_csv(
        REFERENCE / f"reference_{preset}.csv.gz",
        index_col=["case", "intensity"],
        float_precision="round_trip",
    )
    return {key: row.dropna().astype(float).to_dict() for key, row in table.iterrows()}


def assert_matches_reference(
    values: dict[str, float], preset: str, case: str, intensity: str, subset: str = ""
):
    """Every reference value within TOLERANCE; NaN exactly where the reference has none.

    ``subset``, a regular expression, limits the comparison to the matching feature names
    (for runs that extract only some modalities or regions)."""
    expected = reference(preset)[(case, intensity)]
    if subset:
        pattern = re.compile(subset)
        expected = {k: v for k, v in expected.items() if pattern.match(k)}
        assert expected, f"no reference feature matches {subset!r}"
    missing = [k for k in expected if k not in values or math.isnan(values[k])]
    assert not missing, (
        f"{case}: no value for {len(missing)} reference features, e.g. {missing[:3]}"
    )
    extra = [k for k, v in values.items() if k not in expected and not math.isnan(v)]
    assert not extra, f"{case}: {len(extra)} values the reference lacks, e.g. {extra[:3]}"
    worst, where = 0.0, ""
    for key, ref in expected.items():
        ours = values[key]
        rel = 0.0 if ours == ref else abs(ours - ref) / max(abs(ours), abs(ref))
        if not rel <= worst:
            worst, where = rel, key
    assert worst <= TOLERANCE, f"{case} {preset} {intensity}: {where} off by {worst:.3g}"


def _extract(case: Case, preset: str, intensity: str = "zscore-brain") -> dict[str, float]:
    params = str(REFERENCE / "all-filters.yaml") if preset == "all-filters" else preset
    config = ExtractionConfig.create(params, intensity=intensity, modalities=list(case.images))
    return extract_case(case, config).values


def _write_nifti(folder: Path, images: dict[str, np.ndarray], labels, spacing, dtype) -> Path:
    import SimpleITK as sitk

    folder.mkdir(parents=True, exist_ok=True)
    for modality, array in images.items():
        image = sitk.GetImageFromArray(np.asarray(array).astype(dtype))
        image.SetSpacing(spacing)
        sitk.WriteImage(image, str(folder / f"case_{modality}.nii.gz"), True)
    mask = sitk.GetImageFromArray(np.asarray(labels, dtype=np.uint8))
    mask.SetSpacing(spacing)
    sitk.WriteImage(mask, str(folder / "case_seg.nii.gz"), True)
    return folder


def _read_synthetic_nifti(folder: Path) -> Case:
    patterns = {m: f"case_{m}.nii.gz" for m in SYNTHETIC.MODALITIES}
    return read_nifti_case(
        folder, modality_patterns=patterns, seg_pattern="case_seg.nii.gz", case_id="synthetic"
    )


# (case, storage dtype of the file): the lattice values are float32, so float32 and float64
# files hold them exactly; the int16 values fit every dtype here
STORAGES = [
    ("synthetic-float32-lattice", "float32"),
    ("synthetic-float32-lattice", "float64"),
    ("synthetic-int16", "int16"),
    ("synthetic-int16", "float32"),
    ("synthetic-int16", "float64"),
]


@pytest.fixture(scope="module")
def synthetic_files(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, str], Case]:
    """Each synthetic case written in each storage dtype and read back by radsurv."""
    root = tmp_path_factory.mktemp("reference_cases")
    cases = {}
    for name, dtype in STORAGES:
        images, labels, spacing = SYNTHETIC.CASES[name]()
        folder = _write_nifti(root / f"{name}-{dtype}", images, labels, spacing, dtype)
        case = _read_synthetic_nifti(folder)
        assert {str(a.dtype) for a in case.images.values()} == {
            "float64" if dtype == "float64" else "float32"
        }
        cases[(name, dtype)] = case
    return cases


# raw int16 values would need thousands of 0.1-wide bins: that case is referenced z-scored only
ORIGINAL_RUNS = [
    (name, dtype, intensity)
    for name, dtype in STORAGES
    for intensity in ("zscore-brain", "as-is")
    if not (name == "synthetic-int16" and intensity == "as-is")
]


@pytest.mark.parametrize(("name", "dtype", "intensity"), ORIGINAL_RUNS)
def test_original_preset_equals_numpy126_reference_for_every_storage(
    synthetic_files, name: str, dtype: str, intensity: str
) -> None:
    values = _extract(synthetic_files[(name, dtype)], "brats-original", intensity)
    assert_matches_reference(values, "brats-original", name, intensity)


def test_same_values_in_float32_float64_int16_files_give_identical_tables(synthetic_files):
    for name in SYNTHETIC.CASES:
        tables = {
            dtype: _extract(case, "brats-original")
            for (case_name, dtype), case in synthetic_files.items()
            if case_name == name
        }
        first = next(iter(tables.values()))
        for dtype, values in tables.items():
            assert values.keys() == first.keys()
            same = all(
                values[k] == first[k] or (math.isnan(values[k]) and math.isnan(first[k]))
                for k in first
            )
            assert same, f"{name}: the {dtype} file gives other values"


def test_kaggle_float64_pack_equals_reference(tmp_path: Path) -> None:
    images, labels, spacing = SYNTHETIC.CASES["synthetic-float32-lattice"]()
    case = Case("synthetic", dict(images), labels, spacing=spacing)
    order = ("flair", "t1gd")
    write_kaggle_volume(case, tmp_path, 1, channel_order=order, standardise=False)
    read = read_volume(scan_pack(tmp_path)["BraTS20_Training_001"], order)
    assert read.images["flair"].dtype == np.float64  # the pack's float64, not rounded
    read = replace(read, spacing=spacing)  # the pack stores no geometry
    for intensity in ("as-is", "zscore-brain"):
        values = _extract(read, "brats-original", intensity)
        assert_matches_reference(values, "brats-original", "synthetic-float32-lattice", intensity)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dtype", "intensity"),
    [
        ("synthetic-float32-lattice", "float32", "as-is"),
        ("synthetic-float32-lattice", "float64", "as-is"),
        ("synthetic-int16", "int16", "zscore-brain"),
    ],
)
def test_filters_preset_equals_numpy126_reference(
    synthetic_files, name: str, dtype: str, intensity: str
) -> None:
    # LoG (float32 out of ITK whatever the input) and wavelet images, every feature class
    values = _extract(synthetic_files[(name, dtype)], "brats-filters", intensity)
    assert any("log-sigma-3-0-mm-3D_glcm" in k for k in values)
    assert any("wavelet-HHH_ngtdm" in k for k in values)
    assert_matches_reference(values, "brats-filters", name, intensity)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "dtype", "intensity"), [("synthetic-float32-lattice", "float32", "as-is")]
)
def test_every_pyradiomics_filter_equals_numpy126_reference(
    synthetic_files, name: str, dtype: str, intensity: str
) -> None:
    # Square, SquareRoot, Logarithm, Exponential, Gradient, LoG and wavelet (uncropped: these
    # settings need the whole image)
    values = _extract(synthetic_files[(name, dtype)], "all-filters", intensity)
    for image_type in ("square", "squareroot", "logarithm", "exponential", "gradient"):
        assert any(f"_{image_type}_glcm_" in k for k in values), image_type
    assert_matches_reference(values, "all-filters", name, intensity)


def _brats2015(shared_data: Path, name: str) -> Case:
    return read_nifti_case(
        shared_data / "brats2015_deepmedic" / name,
        modality_patterns={"flair": "Flair_*.nii.gz", "t1gd": "T1c_*.nii.gz"},
        seg_pattern="OTMultiClass.nii.gz",
        label_convention="brats2015",
    )


BRATS2015 = [f"brats_2013_pat000{i}_1" for i in (3, 4, 5, 6)]


@pytest.mark.slow
@pytest.mark.parametrize("name", BRATS2015)
def test_real_brats2015_float32_cases_equal_reference(shared_data: Path, name: str) -> None:
    case = _brats2015(shared_data, name)
    assert case.images["flair"].dtype == np.float32  # stored float32
    values = _extract(case, "brats-original")
    assert_matches_reference(values, "brats-original", f"brats2015/{name}", "zscore-brain")


@pytest.mark.slow
def test_real_case_in_a_float64_file_gives_the_identical_table(
    shared_data: Path, tmp_path: Path
) -> None:
    from radsurv.data.nifti import write_nifti_case

    case = _brats2015(shared_data, BRATS2015[1])
    wide = replace(case, images={m: a.astype(np.float64) for m, a in case.images.items()})
    folder = write_nifti_case(wide, tmp_path)
    again = read_nifti_case(folder, label_convention="brats2020")
    assert again.images["flair"].dtype == np.float64
    config = ExtractionConfig.create("brats-original", regions=["ET", "WT"], modalities=["t1gd"])
    assert extract_case(again, config).values == extract_case(case, config).values


@pytest.mark.slow
def test_real_case_filters_preset_equals_reference(shared_data: Path) -> None:
    # every LoG and wavelet image of the real case's T1Gd, two regions (the synthetic cases
    # above cover every region and modality of the preset)
    name = BRATS2015[1]
    config = ExtractionConfig.create("brats-filters", regions=["ET", "WT"], modalities=["t1gd"])
    values = extract_case(_brats2015(shared_data, name), config).values
    assert any("log-sigma-1-0-mm-3D_glcm" in k for k in values)
    subset = r"(ET|WT)_original_shape_|t1gd_(ET|WT)_"
    assert_matches_reference(values, "brats-filters", f"brats2015/{name}", "zscore-brain", subset)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["TCGA-DU-7294", "TCGA-FG-6692"])
def test_real_int16_tcga_cases_equal_reference(shared_data: Path, name: str) -> None:
    folder = shared_data / "brainles_tcga" / name
    suffixes = {"flair": "flair", "t1": "t1", "t1gd": "t1c", "t2": "t2"}
    case = read_nifti_case(
        folder, modality_patterns={m: f"{name}_{s}.nii.gz" for m, s in suffixes.items()}
    )
    labels = read_mask_nifti(folder / "segmentations" / "fusion-mav.nii.gz", case, "brats2020")
    case = replace(case, labels=labels)
    values = _extract(case, "brats-original")
    assert_matches_reference(values, "brats-original", f"brainles_tcga/{name}", "zscore-brain")


@pytest.mark.parametrize("name", ["brain1", "brain2"])
def test_pyradiomics_test_cases_equal_reference(shared_data: Path, name: str) -> None:
    import SimpleITK as sitk

    folder = shared_data / "pyradiomics"
    image = sitk.ReadImage(str(folder / f"{name}_image.nrrd"))
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / f"{name}_label.nrrd")))
    case = Case(
        name,
        {"t1": sitk.GetArrayFromImage(image)},  # int16, as stored
        (label == 1).astype(np.uint8),
        spacing=image.GetSpacing(),
        origin=image.GetOrigin(),
        direction=image.GetDirection(),
    )
    values = _extract(case, "brats-original")
    assert_matches_reference(values, "brats-original", f"pyradiomics/{name}", "zscore-brain")
