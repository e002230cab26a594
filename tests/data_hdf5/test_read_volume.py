"""read_volume: round trip, tolerated variants, and find_slice_dir."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest

from radsurv.data.case import Case
from radsurv.data.hdf5 import (
    MASK_CHANNEL_LABELS,
    PACK_SUBDIR,
    PackError,
    find_slice_dir,
    parse_channel_order,
    read_volume,
    scan_pack,
    standardise_per_volume,
    write_kaggle_volume,
)
from radsurv.errors import ConfigError, DataError

SHAPE = (16, 40, 36)


def test_round_trip_gives_the_same_arrays_and_labels(pack: Path, phantom: Case) -> None:
    volumes = scan_pack(pack)
    assert list(volumes) == ["BraTS20_Training_001", "BraTS20_Training_002"]
    case = read_volume(volumes["BraTS20_Training_001"])
    case.validate()
    assert case.case_id == "BraTS20_Training_001"
    assert case.shape == SHAPE
    assert case.spacing == (1.0, 1.0, 1.0)
    assert case.modalities == ["flair", "t1", "t1gd", "t2"]
    np.testing.assert_array_equal(case.labels, phantom.labels)
    assert set(np.unique(case.labels)) == {0, 1, 2, 4}
    for name, arr in case.images.items():
        # the pack stores float64: read exactly, never rounded to float32
        assert arr.dtype == np.float64 and arr.flags.c_contiguous
        np.testing.assert_array_equal(arr, standardise_per_volume(phantom.images[name]))
    prov = case.provenance
    assert prov["volume"] == 1 and prov["n_slices"] == SHAPE[0]
    assert prov["channel_order"] == ["flair", "t1", "t1gd", "t2"]
    assert prov["image_dtype"] == "float64" and prov["mask_dtype"] == "uint8"
    assert prov["source"] == str(pack)


def test_channel_order_names_the_channels(pack: Path) -> None:
    pv = scan_pack(pack)["BraTS20_Training_001"]
    default = read_volume(pv)
    swapped = read_volume(pv, "t1gd,t1,flair,t2")
    np.testing.assert_array_equal(swapped.images["t1gd"], default.images["flair"])
    np.testing.assert_array_equal(swapped.images["flair"], default.images["t1gd"])
    assert swapped.provenance["channel_order"] == ["t1gd", "t1", "flair", "t2"]
    assert parse_channel_order(["FLAIR", "t1", "t1ce", "t2"]) == ("flair", "t1", "t1gd", "t2")
    with pytest.raises(ConfigError, match="unknown modality"):
        parse_channel_order("flair,t1,pd,t2")
    with pytest.raises(ConfigError, match="twice"):
        parse_channel_order("flair,flair,t1,t2")


def test_missing_modality_written_as_zeros_reads_back_as_absent(tmp_path: Path, phantom) -> None:
    partial = Case("x", {k: phantom.images[k] for k in ("flair", "t1gd")}, phantom.labels)
    write_kaggle_volume(partial, tmp_path, 3)
    pv = scan_pack(tmp_path)["BraTS20_Training_003"]
    case = read_volume(pv)
    assert case.modalities == ["flair", "t1gd"]
    assert case.provenance["missing_modalities"] == ["t1", "t2"]
    kept = read_volume(pv, keep_empty_channels=True)
    assert kept.modalities == ["flair", "t1", "t1gd", "t2"]
    assert not kept.images["t2"].any()


def _write_variant(folder: Path, labels: np.ndarray, image: np.ndarray, mask_kind: str, **kw):
    """Write a volume slice by slice with a given image array and mask encoding."""
    folder.mkdir(parents=True, exist_ok=True)
    onehot = np.stack([labels == lab for lab in MASK_CHANNEL_LABELS], axis=-1)
    mask = {
        "uint8_01": onehot.astype(np.uint8),
        "uint8_0255": onehot.astype(np.uint8) * 255,
        "bool": onehot,
        "float_01": onehot.astype(np.float32),
        "int16_01": onehot.astype(np.int16),
    }[mask_kind]
    for z in range(labels.shape[0]):
        with h5py.File(folder / f"volume_7_slice_{z}.h5", "w") as f:
            f.create_dataset("image", data=image[z], **kw)
            f.create_dataset("mask", data=mask[z], **kw)


@pytest.mark.parametrize(
    ("image_dtype", "mask_kind", "compression"),
    [
        ("float32", "uint8_0255", None),
        ("float16", "bool", "gzip"),
        ("int16", "float_01", "lzf"),
        ("uint16", "int16_01", "gzip"),
        ("float64", "uint8_01", "lzf"),
    ],
)
def test_dtypes_compression_and_mask_encodings_are_tolerated(
    tmp_path: Path, phantom: Case, image_dtype: str, mask_kind: str, compression: str | None
) -> None:
    stack = np.stack([phantom.images[m] for m in ("flair", "t1", "t1gd", "t2")], axis=-1)
    image = stack.astype(image_dtype)
    kw = {"compression": compression, "chunks": True} if compression else {}
    _write_variant(tmp_path, phantom.labels, image, mask_kind, **kw)
    if compression:
        with h5py.File(tmp_path / "volume_7_slice_0.h5") as f:
            assert f["image"].compression == compression
    case = read_volume(scan_pack(tmp_path)["BraTS20_Training_007"])
    np.testing.assert_array_equal(case.labels, phantom.labels)
    for c, name in enumerate(("flair", "t1", "t1gd", "t2")):
        # stored values arrive exactly: float32 holds float16 and 16-bit integers, float64 the rest
        expected = np.float64 if image_dtype == "float64" else np.float32
        assert case.images[name].dtype == expected
        np.testing.assert_array_equal(case.images[name], image[..., c].astype(expected))
    assert case.provenance["image_dtype"] == image_dtype


def test_any_slice_count_and_in_plane_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(np.array([0, 1, 2, 4], dtype=np.uint8), size=(3, 7, 11))
    images = {m: rng.normal(size=(3, 7, 11)).astype(np.float32) for m in ("flair", "t1")}
    images |= {m: rng.normal(size=(3, 7, 11)).astype(np.float32) for m in ("t1gd", "t2")}
    write_kaggle_volume(Case("x", images, labels), tmp_path, 12, standardise=False)
    case = read_volume(scan_pack(tmp_path)["BraTS20_Training_012"])
    assert case.shape == (3, 7, 11)
    np.testing.assert_array_equal(case.labels, labels)
    np.testing.assert_allclose(case.images["t2"], images["t2"])


def test_find_slice_dir_accepts_the_pack_root_and_any_level(pack: Path, tmp_path: Path) -> None:
    root = tmp_path / "kaggle"
    slices = root / PACK_SUBDIR
    slices.parent.mkdir(parents=True)
    pack.rename(slices)
    assert find_slice_dir(root) == slices
    assert find_slice_dir(root / "BraTS2020_training_data") == slices
    assert find_slice_dir(slices) == slices
    nested = tmp_path / "a" / "b" / "slices"
    nested.mkdir(parents=True)
    (slices / "volume_1_slice_0.h5").rename(nested / "volume_1_slice_0.h5")
    assert find_slice_dir(tmp_path / "a") == nested
    with pytest.raises(PackError, match="several slice folders"):
        find_slice_dir(tmp_path)


@pytest.mark.parametrize("what", ["missing", "file", "empty"])
def test_find_slice_dir_errors_name_the_path(tmp_path: Path, what: str) -> None:
    target = tmp_path / "nothing_here"
    if what == "file":
        target.write_text("x")
    elif what == "empty":
        target.mkdir()
        (target / "notes.txt").write_text("no slices")
    with pytest.raises(PackError) as info:
        find_slice_dir(target)
    assert str(target) in str(info.value)
    assert isinstance(info.value, DataError)


def test_pack_error_survives_pickling(tmp_path: Path) -> None:
    err = PackError(tmp_path / "volume_1_slice_0.h5", "zero-byte file", "re-download it")
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.file, copy.problem, copy.hint, str(copy)) == (
        err.file,
        err.problem,
        err.hint,
        str(err),
    )


def test_slice_files_are_left_untouched(pack: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in pack.iterdir()}
    read_volume(scan_pack(pack)["BraTS20_Training_002"])
    assert {p: p.stat().st_mtime_ns for p in pack.iterdir()} == before
