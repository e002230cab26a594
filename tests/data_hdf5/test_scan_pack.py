"""scan_pack: listing from meta_data.csv when consistent, from the files otherwise."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pandas as pd
import pytest

from radsurv.data.hdf5 import META_DATA_NAME, PackError, read_meta_data, scan_pack


def test_listing_from_files_without_meta(pack: Path) -> None:
    volumes = scan_pack(pack)
    pv = volumes["BraTS20_Training_002"]
    assert pv.listed_from == "files"
    assert sorted(pv.files) == list(range(16))
    assert pv.files[3] == pack / "volume_2_slice_3.h5"
    assert pv.duplicates == {} and pv.expected_slices is None
    assert pv.sources == [pv.files[s] for s in range(16)]


def test_meta_data_used_when_consistent(pack: Path, write_meta, caplog) -> None:
    write_meta(pack, [(v, s) for v in (2, 1) for s in reversed(range(16))])  # unsorted, like Kaggle
    with caplog.at_level(logging.WARNING, logger="radsurv.data.hdf5"):
        volumes = scan_pack(pack)
    assert not caplog.records
    assert {pv.listed_from for pv in volumes.values()} == {META_DATA_NAME}
    assert list(volumes) == ["BraTS20_Training_001", "BraTS20_Training_002"]
    assert list(volumes["BraTS20_Training_001"].files) == list(range(16))
    assert volumes["BraTS20_Training_001"].expected_slices == 16


@pytest.mark.parametrize("change", ["extra_file", "missing_file", "wrong_row", "duplicate_row"])
def test_meta_data_ignored_when_inconsistent(pack: Path, write_meta, caplog, change: str) -> None:
    rows = [(v, s) for v in (1, 2) for s in range(16)]
    if change == "extra_file":
        shutil.copy(pack / "volume_2_slice_0.h5", pack / "volume_3_slice_0.h5")
    elif change == "missing_file":
        rows.append((4, 0))
    elif change == "duplicate_row":
        rows.append((1, 0))
    meta = write_meta(pack, rows)
    if change == "wrong_row":
        meta.write_text(
            meta.read_text().replace("volume_1_slice_5.h5,0,1,5", "volume_1_slice_5.h5,0,1,6")
        )
    with caplog.at_level(logging.WARNING, logger="radsurv.data.hdf5"):
        volumes = scan_pack(pack)
    assert {pv.listed_from for pv in volumes.values()} == {"files"}
    assert "not used for listing" in caplog.text
    # the listing still matches the files on disk
    expected = {1, 2, 3} if change == "extra_file" else {1, 2}
    assert {pv.volume for pv in volumes.values()} == expected


def test_unreadable_meta_data_falls_back(pack: Path, caplog) -> None:
    (pack / META_DATA_NAME).write_text("a,b\n1,2\n")
    with caplog.at_level(logging.WARNING, logger="radsurv.data.hdf5"):
        volumes = scan_pack(pack)
    assert "lacks column(s) ['slice_path', 'volume', 'slice']" in caplog.text
    assert len(volumes) == 2


def test_read_meta_data_names_row_and_column(tmp_path: Path) -> None:
    path = tmp_path / META_DATA_NAME
    path.write_text("slice_path,target,volume,slice\n/content/data/volume_1_slice_0.h5,0,1,x\n")
    with pytest.raises(PackError, match=r"row 2, column slice: 'x'"):
        read_meta_data(path)


def test_other_h5_files_are_ignored_with_a_warning(pack: Path, caplog) -> None:
    (pack / "notes.h5").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="radsurv.data.hdf5"):
        volumes = scan_pack(pack)
    assert "ignoring 1 HDF5 file" in caplog.text
    assert len(volumes) == 2


def test_real_meta_data_csv(shared_data: Path, tmp_path: Path) -> None:
    real = shared_data / "brats2020" / META_DATA_NAME
    table = read_meta_data(real)
    assert len(table) == 57_195
    assert table["volume"].nunique() == 369
    assert set(table.groupby("volume")["slice"].nunique()) == {155}
    assert table["slice_path"].str.startswith("/content/data/volume_").all()
    assert not table["volume"].is_monotonic_increasing  # rows are not sorted in the real file
    # a two-volume excerpt in the real file's own formatting lists a folder of (empty) files
    lines = real.read_text().splitlines()
    keep = [lines[0]] + [ln for ln in lines[1:] if ln.split(",")[2] in ("1", "2")]
    folder = tmp_path / "content" / "data"
    folder.mkdir(parents=True)
    (folder / META_DATA_NAME).write_text("\n".join(keep) + "\n")
    excerpt = pd.read_csv(folder / META_DATA_NAME)
    for name in excerpt["slice_path"].str.rsplit("/", n=1).str[-1]:
        (folder / name).touch()
    volumes = scan_pack(tmp_path)
    assert list(volumes) == ["BraTS20_Training_001", "BraTS20_Training_002"]
    assert all(pv.listed_from == META_DATA_NAME for pv in volumes.values())
    assert all(sorted(pv.files) == list(range(155)) for pv in volumes.values())
