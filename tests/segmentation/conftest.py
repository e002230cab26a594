"""Fixtures for the segmentation tests: tiny phantom cases, a tiny config and a trained model."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from radsurv.data.case import Case
from radsurv.data.manifest import build_manifest, write_manifest
from radsurv.data.synthetic import make_phantom_case, synthesize_cohort
from radsurv.segmentation import SegmentationConfig, train_segmentation

TINY_SHAPE = (16, 48, 48)  # (z, y, x)
BENCH = Path(__file__).resolve().parents[2] / "bench"


def load_bench_script(name: str) -> ModuleType:
    """Import ``bench/NAME.py`` (with bench/ on the path while it loads, for its own imports)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def tiny_config(modalities: list[str] | None = None, dim: str = "2d") -> SegmentationConfig:
    """A network small enough to train in a second on the CPU."""
    config = SegmentationConfig.default(dim, modalities or ["flair", "t1", "t1gd", "t2"])
    config.channels, config.strides = [8, 16, 32], [2, 2]
    config.patch_size = [32, 32] if dim == "2d" else [16, 32, 32]
    return config.validate()


def phantom(index: int, spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> Case:
    """Phantom case ``index`` at the tiny shape, with the given spacing."""
    case = make_phantom_case(index, 0, TINY_SHAPE)
    case.spacing = spacing
    return case


@pytest.fixture(scope="session")
def tiny_cases() -> list[Case]:
    """Four phantom cases with tumours (non-trivial geometry on the last)."""
    cases = [phantom(i) for i in range(1, 5)]
    cases[3].spacing = (0.9, 0.9, 2.0)
    cases[3].origin = (10.0, -5.0, 3.0)
    assert all((c.labels > 0).any() for c in cases)
    return cases


@pytest.fixture(scope="session")
def small_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Manifest of a 2-case synthetic cohort (12 x 48 x 48) for CLI training tests."""
    root = tmp_path_factory.mktemp("small_cohort")
    cohort = synthesize_cohort(root / "cohort", n_cases=2, seed=1, shape=(12, 48, 48))
    manifest = root / "data_manifest.csv"
    write_manifest(build_manifest(cohort.root, relative_to=root, checksum=False), manifest)
    return manifest


def train_cli_option(
    manifest: Path, out: Path, option: str, good: str, bad: str
) -> SegmentationConfig:
    """Run ``segment train OPTION GOOD`` (one step, FLAIR + T1Gd) on ``manifest`` into ``out``
    and return the saved model's config; check that ``OPTION BAD`` is refused naming both."""
    from typer.testing import CliRunner

    from radsurv.cli import app
    from radsurv.segmentation.checkpoint import read_checkpoint

    args = "--epochs 1 --steps-per-epoch 1 --batch-size 2 --modalities flair,t1gd --device cpu"
    base = ["segment", "train", "-m", str(manifest), "-o", str(out), "--no-progress", *args.split()]
    res = CliRunner().invoke(app, [*base, option, good, "--val-fraction", "0"])
    assert res.exit_code == 0, res.output
    config = read_checkpoint(out)[1]
    res = CliRunner().invoke(app, [*base, option, bad])
    assert res.exit_code != 0 and f"{option} {bad}" in res.output, res.output
    return config


@pytest.fixture(scope="session")
def trained_model(tiny_cases: list[Case], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FLAIR+T1Gd 2D model trained for 2 short epochs; returns its best checkpoint."""
    out = tmp_path_factory.mktemp("model") / "model.pt"
    train_segmentation(
        tiny_cases[:3],
        out,
        config=tiny_config(["flair", "t1gd"]),
        epochs=2,
        val_fraction=0.34,
        seed=3,
        batch_size=4,
        steps_per_epoch=3,
        progress=False,
    )
    return out


@pytest.fixture
def nan_case() -> Case:
    case = phantom(5)
    case.case_id = "BraTS20_Training_NaN"
    case.images["flair"] = case.images["flair"].copy()
    case.images["flair"][3, 10, 10] = np.nan
    return case
