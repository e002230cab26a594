"""Shared test fixtures: the real-data folder and GPU/slow markers."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

# OpenMP threads (torch, XGBoost) sleep instead of spinning while they wait: the suite must
# pass on a busy machine, where spinning threads make training steps several times slower.
# Set before any test imports torch or xgboost; subprocesses (notebook kernels) inherit it.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data folder ../shared/data; the test skips when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent (only in the dev workplace)")
    return SHARED_DATA


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return  # spare the torch import
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    if has_cuda:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in gpu_items:
        item.add_marker(skip_gpu)


# A cheap but real radiomics set-up shared by the tests that check that models recover the
# generative truth (radsurv.data.synthetic: survival depends on age, resection, grade, NCR and ET
# volume and tumour heterogeneity; pseudoprogression on heterogeneity and the ET fraction):
# 100 phantom cases at (24, 64, 64), PyRadiomics shape + first-order features of NCR, ET and WT
# on T1Gd (the modality where necrosis, enhancement and the tumour texture show).
SYNTH_CASES = 100
SYNTH_SHAPE = (24, 64, 64)
SYNTH_SEED = 0
SYNTH_PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {"shape": None, "firstorder": None},
    "setting": {"binWidth": 0.1, "label": 1, "minimumROIDimensions": 2, "minimumROISize": 10},
}


@dataclass(frozen=True)
class RadiomicsCohort:
    root: Path
    manifest: Path
    features: Path
    truth: Path


@pytest.fixture(scope="session")
def radiomics_cohort(tmp_path_factory: pytest.TempPathFactory) -> RadiomicsCohort:
    """Synthetic cohort -> data_manifest.csv -> features.csv (real PyRadiomics), once per run."""
    from radsurv.data.manifest import build_manifest, write_manifest
    from radsurv.data.synthetic import synthesize_cohort
    from radsurv.features import extract_features

    root = tmp_path_factory.mktemp("radiomics_cohort")
    cohort = synthesize_cohort(root / "cohort", SYNTH_CASES, SYNTH_SEED, SYNTH_SHAPE)
    manifest = write_manifest(
        build_manifest(cohort.root, relative_to=root, checksum=False), root / "data_manifest.csv"
    )
    features = root / "features.csv"
    result = extract_features(
        manifest,
        params=SYNTH_PARAMS,
        regions=["NCR", "ET", "WT"],
        modalities=["t1gd"],
        jobs=2,
        output=features,
        progress=False,
    )
    assert result.failed == [], result.status
    return RadiomicsCohort(root, manifest, features, cohort.truth_json)


@pytest.fixture(scope="session")
def screenshot_dir() -> Path:
    """Where browser checks leave screenshots for a person to look at (git-ignored)."""
    folder = Path(
        os.environ.get("RADSURV_SCREENSHOTS", PROJECT_ROOT / "test-artifacts" / "screenshots")
    )
    folder.mkdir(parents=True, exist_ok=True)
    return folder
