"""Small NIfTI datasets in BraTS 2020, BraTS 2023 and custom naming, built per test."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import SimpleITK as sitk

SHAPE = (6, 10, 8)  # (z, y, x)
SPACING = (0.9, 0.9, 1.5)  # (x, y, z) mm
ORIGIN = (-10.0, 4.0, 2.5)

# file name parts per naming scheme: modality -> suffix (the case id is prepended)
NAMING = {
    "brats2020": {"flair": "_flair", "t1": "_t1", "t1gd": "_t1ce", "t2": "_t2", "seg": "_seg"},
    "brats2023": {"flair": "-t2f", "t1": "-t1n", "t1gd": "-t1c", "t2": "-t2w", "seg": "-seg"},
}


def make_arrays(seed: int, labels: tuple[int, ...] = (1, 2, 4)) -> tuple[dict, np.ndarray]:
    """Random float32 images per modality and a mask holding ``labels`` in separate blocks."""
    rng = np.random.default_rng(seed)
    images = {
        m: rng.normal(100 + 10 * i, 20, SHAPE).astype(np.float32)
        for i, m in enumerate(("flair", "t1", "t1gd", "t2"))
    }
    mask = np.zeros(SHAPE, dtype=np.uint8)
    for i, value in enumerate(labels):
        mask[1 + i, 2:6, 2:5] = value
    return images, mask


def write_image(path: Path, array: np.ndarray, spacing=SPACING, origin=ORIGIN) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)
    return path


@pytest.fixture
def make_case_folder() -> Callable[..., Path]:
    """Write one case folder; returns the folder.

    ``naming`` is ``brats2020``/``brats2023`` or a dict modality -> file name (``seg`` too).
    """

    def make(
        root: Path,
        case_id: str,
        naming: str | dict = "brats2020",
        modalities: tuple[str, ...] = ("flair", "t1", "t1gd", "t2"),
        labels: tuple[int, ...] | None = (1, 2, 4),
        seed: int = 0,
        seg_dtype: type = np.uint8,
    ) -> Path:
        folder = root / case_id
        images, mask = make_arrays(seed, labels or ())
        for modality in modalities:
            if isinstance(naming, dict):
                name = naming[modality]
            else:
                name = f"{case_id}{NAMING[naming][modality]}.nii.gz"
            write_image(folder / name, images[modality])
        if labels is not None:
            name = (
                naming["seg"]
                if isinstance(naming, dict)
                else (f"{case_id}{NAMING[naming]['seg']}.nii.gz")
            )
            write_image(folder / name, mask.astype(seg_dtype))
        return folder

    return make


@pytest.fixture
def nt() -> SimpleNamespace:
    """The helpers and constants above (test modules cannot import conftest in importlib mode)."""
    return SimpleNamespace(
        SHAPE=SHAPE,
        SPACING=SPACING,
        ORIGIN=ORIGIN,
        make_arrays=make_arrays,
        write_image=write_image,
    )
