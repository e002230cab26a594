"""Fixtures for the Kaggle-pack reader tests: small phantom volumes written as real slice files."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from radsurv.data.case import Case
from radsurv.data.hdf5 import slice_filename, write_kaggle_volume
from radsurv.data.synthetic import make_phantom_case

SHAPE = (16, 40, 36)  # (z, y, x): small, and deliberately not 240 x 240


@pytest.fixture(scope="session")
def phantom() -> Case:
    """An HGG phantom (index 4: NCR, ED and ET present) of shape SHAPE."""
    return make_phantom_case(4, shape=SHAPE)


@pytest.fixture(scope="session")
def lgg_phantom() -> Case:
    """An LGG phantom: no enhancing tumour."""
    case = make_phantom_case(2, shape=SHAPE)
    assert case.labels is not None and not (case.labels == 4).any()
    return case


@pytest.fixture
def pack(tmp_path: Path, phantom: Case) -> Path:
    """A folder with volumes 1 and 2 (the same phantom), files only (no meta_data.csv)."""
    folder = tmp_path / "data"
    write_kaggle_volume(phantom, folder, 1)
    write_kaggle_volume(phantom, folder, 2)
    return folder


def _rewrite_slice(path: Path, **datasets: np.ndarray | None) -> None:
    """Rewrite one slice file, replacing (array) or dropping (None) datasets."""
    with h5py.File(path, "r") as f:
        data = {name: f[name][()] for name in f}
    data.update(datasets)
    path.unlink()
    with h5py.File(path, "w") as f:
        for name, arr in data.items():
            if arr is not None:
                f.create_dataset(name, data=arr)


def _write_meta(folder: Path, rows: list[tuple[int, int]]) -> Path:
    """A meta_data.csv in the pack's own format for the given (volume, slice) rows."""
    lines = ["slice_path,target,volume,slice"]
    lines += [f"/content/data/{slice_filename(v, s)},0,{v},{s}" for v, s in rows]
    path = folder / "meta_data.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def rewrite_slice():
    """``rewrite_slice(path, image=..., mask=None)``: replace or drop datasets of a slice file."""
    return _rewrite_slice


@pytest.fixture
def write_meta():
    """``write_meta(folder, [(volume, slice), ...])``: a meta_data.csv in the pack's format."""
    return _write_meta
