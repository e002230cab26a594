"""Every kind of bad pack input gives a PackError naming the file; validate_volume lists all."""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

from radsurv.data.hdf5 import (
    PackError,
    PackVolume,
    read_volume,
    scan_pack,
    slice_filename,
    validate_volume,
)
from radsurv.errors import DataError, RadsurvError


def _read(folder: Path, volume: int = 1):
    return read_volume(scan_pack(folder)[f"BraTS20_Training_{volume:03d}"])


def _raises(folder: Path, file_name: str, match: str) -> PackError:
    with pytest.raises(PackError, match=match) as info:
        _read(folder)
    err = info.value
    assert isinstance(err, DataError) and isinstance(err, RadsurvError)
    assert Path(err.file).name == file_name, str(err)
    assert file_name in str(err)
    return err


def _slice(folder: Path, s: int, volume: int = 1) -> Path:
    return folder / slice_filename(volume, s)


def test_missing_slice_numbers(pack: Path) -> None:
    _slice(pack, 3).unlink()
    _slice(pack, 5).unlink()
    err = _raises(pack, "volume_1_slice_3.h5", "lacks 2 of 16 slices")
    assert "slice 3, 5" in err.problem


def test_missing_trailing_slices_found_through_meta_data(pack: Path, write_meta) -> None:
    write_meta(pack, [(v, s) for v in (1, 2) for s in range(16)])
    _slice(pack, 15).unlink()  # meta_data.csv is now inconsistent, but still says 16 slices
    _raises(pack, "volume_1_slice_15.h5", "lacks 1 of 16 slices")


def test_duplicate_slices(pack: Path) -> None:
    shutil.copy(_slice(pack, 2), pack / "volume_1_slice_02.h5")
    err = _raises(pack, "volume_1_slice_02.h5", "duplicate slice 2")
    assert "volume_1_slice_2.h5" in err.problem


def test_inconsistent_shapes_across_slices(pack: Path, rewrite_slice) -> None:
    with h5py.File(_slice(pack, 0)) as f:
        image, mask = f["image"][()], f["mask"][()]
    rewrite_slice(_slice(pack, 6), image=image[:30], mask=mask[:30])
    err = _raises(pack, "volume_1_slice_6.h5", r"in-plane shape \(30, 36\) differs")
    assert "volume_1_slice_0.h5" in err.problem


def test_unreadable_file_broken_link(pack: Path) -> None:
    target = _slice(pack, 4)
    target.unlink()
    target.symlink_to(pack / "gone.h5")
    _raises(pack, "volume_1_slice_4.h5", "missing .*broken link")


def test_unreadable_file_not_a_regular_file(pack: Path) -> None:
    target = _slice(pack, 4)
    target.unlink()
    target.mkdir()
    _raises(pack, "volume_1_slice_4.h5", "not a regular file")


def test_zero_byte_file(pack: Path) -> None:
    _slice(pack, 7).write_bytes(b"")
    _raises(pack, "volume_1_slice_7.h5", "zero-byte file")


def test_truncated_file(pack: Path) -> None:
    path = _slice(pack, 8)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _raises(pack, "volume_1_slice_8.h5", "truncated HDF5 file")


def test_not_an_hdf5_file(pack: Path) -> None:
    _slice(pack, 9).write_text("<html>403 Forbidden</html>")
    _raises(pack, "volume_1_slice_9.h5", "not an HDF5 file")


@pytest.mark.parametrize("dataset", ["image", "mask"])
def test_missing_dataset(pack: Path, rewrite_slice, dataset: str) -> None:
    rewrite_slice(_slice(pack, 1), **{dataset: None})
    _raises(pack, "volume_1_slice_1.h5", f"dataset '{dataset}' is missing")


def test_wrong_image_channel_count(pack: Path, rewrite_slice) -> None:
    with h5py.File(_slice(pack, 2)) as f:
        image = f["image"][()]
    rewrite_slice(_slice(pack, 2), image=image[..., :3])
    _raises(pack, "volume_1_slice_2.h5", r"image has shape \(40, 36, 3\); expected \(H, W, 4\)")


def test_wrong_mask_channel_count(pack: Path, rewrite_slice) -> None:
    with h5py.File(_slice(pack, 2)) as f:
        mask = f["mask"][()]
    rewrite_slice(_slice(pack, 2), mask=np.concatenate([mask, mask[..., :1]], axis=-1))
    _raises(pack, "volume_1_slice_2.h5", r"mask has shape \(40, 36, 4\)")


@pytest.mark.parametrize(
    ("value", "what"), [(np.nan, "1 NaN"), (np.inf, "1 inf"), (1e300, "1 beyond float32")]
)
def test_nan_inf_voxels(pack: Path, rewrite_slice, value: float, what: str) -> None:
    with h5py.File(_slice(pack, 5)) as f:
        image = f["image"][()]
    image[10, 11, 2] = value
    rewrite_slice(_slice(pack, 5), image=image)
    _raises(pack, "volume_1_slice_5.h5", rf"channel 2 \(t1gd\) holds {what} voxel")


def test_overlapping_mask_channels(pack: Path, rewrite_slice, phantom) -> None:
    z = int(np.flatnonzero((phantom.labels == 2).any(axis=(1, 2)))[0])
    with h5py.File(_slice(pack, z)) as f:
        mask = f["mask"][()]
    y, x = np.argwhere(mask[..., 1])[0]
    mask[y, x, 2] = 1  # ED and ET both on
    rewrite_slice(_slice(pack, z), mask=mask)
    _raises(pack, f"volume_1_slice_{z}.h5", "mask channels overlap in 1 voxel")


@pytest.mark.parametrize("bad", [2, 0.5, -1])
def test_mask_values_that_are_not_one_hot(pack: Path, rewrite_slice, bad: float) -> None:
    with h5py.File(_slice(pack, 3)) as f:
        mask = f["mask"][()].astype(np.float32)
    mask[0, 0, 0] = bad
    rewrite_slice(_slice(pack, 3), mask=mask)
    _raises(pack, "volume_1_slice_3.h5", "mask holds values")


def test_empty_volume_all_zero(tmp_path: Path) -> None:
    for s in range(3):
        with h5py.File(tmp_path / slice_filename(1, s), "w") as f:
            f["image"] = np.zeros((8, 8, 4))
            f["mask"] = np.zeros((8, 8, 3), dtype=np.uint8)
    with pytest.raises(PackError, match="empty volume: every image voxel of volume 1 is 0") as info:
        _read(tmp_path)
    assert info.value.file == str(tmp_path)


def test_empty_volume_without_files(tmp_path: Path) -> None:
    with pytest.raises(PackError, match="has no slice files"):
        read_volume(PackVolume(5, {}))


def test_validate_volume_records_every_problem(pack: Path, rewrite_slice) -> None:
    _slice(pack, 0).write_bytes(b"")
    _slice(pack, 4).unlink()
    _slice(pack, 9).write_text("not hdf5")
    with h5py.File(_slice(pack, 12)) as f:
        image = f["image"][()]
    image[0, 0, 0] = np.nan
    rewrite_slice(_slice(pack, 12), image=image)
    volumes = scan_pack(pack)
    case, problems = validate_volume(volumes["BraTS20_Training_001"])
    assert case is None
    files = [Path(p.file).name for p in problems]
    assert files == [
        "volume_1_slice_4.h5",
        "volume_1_slice_0.h5",
        "volume_1_slice_9.h5",
        "volume_1_slice_12.h5",
    ]
    good, none = validate_volume(volumes["BraTS20_Training_002"])
    assert good is not None and none == []


def test_channel_order_with_the_wrong_length(pack: Path) -> None:
    with pytest.raises(PackError, match="expected \\(H, W, 3\\) for channel order flair,t1,t1gd"):
        read_volume(scan_pack(pack)["BraTS20_Training_001"], "flair,t1,t1gd")
