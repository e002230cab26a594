"""Fixtures of the feature tests: small phantoms, a fast parameter file, a real BraTS case."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radsurv.data.case import Case

PHANTOM_SHAPE = (24, 48, 48)  # (z, y, x): small tumours keep PyRadiomics fast

FAST_PARAMS = """\
# a fast PyRadiomics parameter file for tests: shape, first order and GLCM only
imageType:
  Original: {}
featureClass:
  shape:
  firstorder:
  glcm: [JointEntropy, Contrast, Correlation, Idm]  # MCC (eigenvalues) is the slow one
setting:
  binWidth: 0.5
  minimumROIDimensions: 2
  minimumROISize: 10
"""


@pytest.fixture(scope="session")
def fast_params(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("params") / "fast.yaml"
    path.write_text(FAST_PARAMS)
    return path


@pytest.fixture(scope="session")
def phantoms() -> list[Case]:
    """Phantoms 1-4 of the synthetic cohort: case 2 has no ET, case 3 only 4 NCR voxels."""
    from radsurv.data.synthetic import make_phantom_case

    return [make_phantom_case(i, 0, PHANTOM_SHAPE) for i in range(1, 5)]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory, phantoms: list[Case]) -> Path:
    """A NIfTI cohort (BraTS 2020 layout) of 6 phantoms and its manifest."""
    from radsurv.data.manifest import build_manifest, write_manifest
    from radsurv.data.nifti import write_nifti_case
    from radsurv.data.synthetic import make_phantom_case

    root = tmp_path_factory.mktemp("cohort")
    cases = [*phantoms, *(make_phantom_case(i, 0, phantoms[0].shape) for i in (5, 6))]
    for case in cases:
        write_nifti_case(case, root / "data")
    table = build_manifest(root / "data", relative_to=root, checksum=False)
    return write_manifest(table, root / "data_manifest.csv")


def load_deepmedic(folder: Path) -> Case:
    """A real BraTS 2015 case (FLAIR, T1c z-scored; labels mapped to the canonical ones)."""
    import SimpleITK as sitk

    from radsurv.data.labels import to_canonical

    flair = sitk.ReadImage(str(folder / "Flair_subtrMeanDivStd.nii.gz"), sitk.sitkFloat32)
    t1c = sitk.ReadImage(str(folder / "T1c_subtrMeanDivStd.nii.gz"), sitk.sitkFloat32)
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "OTMultiClass.nii.gz")))
    return Case(
        case_id=folder.name,
        images={"flair": sitk.GetArrayFromImage(flair), "t1gd": sitk.GetArrayFromImage(t1c)},
        labels=to_canonical(raw, "brats2015", str(folder)),
        spacing=flair.GetSpacing(),
        origin=flair.GetOrigin(),
        direction=flair.GetDirection(),
    )


@pytest.fixture(scope="session")
def real_case(shared_data: Path) -> Case:
    return load_deepmedic(shared_data / "brats2015_deepmedic" / "brats_2013_pat0003_1")


def max_rel_diff(expected: dict[str, float], actual: dict[str, float]) -> tuple[float, str]:
    """Largest relative difference over the keys of ``expected`` (NaN == NaN)."""
    worst, where = 0.0, ""
    for key, a in expected.items():
        b = actual[key]
        if np.isnan(a) and np.isnan(b):
            continue
        rel = 0.0 if a == b else abs(a - b) / max(abs(a), abs(b))
        if not rel <= worst:
            worst, where = rel, key
    return worst, where


@pytest.fixture(scope="session")
def rel_diff():
    """:func:`max_rel_diff` as a fixture (test modules cannot import conftest)."""
    return max_rel_diff
