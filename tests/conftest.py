"""Shared test fixtures: the real-data folder and GPU/slow markers."""

from __future__ import annotations

from pathlib import Path

import pytest

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


# A small synthetic cohort with extracted features, shared by the tests that check that models
# recover the generative truth (survival and pseudoprogression carry image signal).
SIGNAL_COHORT_CASES = 80
SIGNAL_COHORT_SHAPE = (24, 64, 64)
SIGNAL_FEATURE_PARAMS = {
    "imageType": {"Original": {}},
    "featureClass": {"shape": None, "firstorder": None, "glcm": None},
    "setting": {"binWidth": 0.25, "label": 1, "minimumROIDimensions": 2, "minimumROISize": 10},
}


@pytest.fixture(scope="session")
def signal_cohort(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """80 phantom cases (24x64x64) + manifest + shape/firstorder/GLCM features of NCR/ET/WT.

    Returns the paths ``root``, ``manifest``, ``features``, ``truth``.
    """
    from radsurv.data.manifest import build_manifest, write_manifest
    from radsurv.data.synthetic import synthesize_cohort
    from radsurv.features import extract_features

    root = tmp_path_factory.mktemp("signal_cohort")
    cohort = synthesize_cohort(
        root / "cohort", n_cases=SIGNAL_COHORT_CASES, seed=0, shape=SIGNAL_COHORT_SHAPE
    )
    manifest = root / "data_manifest.csv"
    write_manifest(build_manifest(cohort.data_dir, relative_to=root, checksum=False), manifest)
    features = root / "features.csv"
    result = extract_features(
        manifest,
        params=SIGNAL_FEATURE_PARAMS,
        regions=["NCR", "ET", "WT"],
        modalities=["t1gd", "flair"],
        jobs=2,
        output=features,
        progress=False,
    )
    failed = result.status[result.status["status"] != "ok"]
    assert failed.empty, failed
    return {"root": root, "manifest": manifest, "features": features, "truth": cohort.truth_json}
