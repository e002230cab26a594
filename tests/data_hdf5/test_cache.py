"""VolumeCache and read_volume_cached: hits, invalidation, atomic files, folder choice."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import h5py
import numpy as np
import pytest

from radsurv.data.cache import (
    CACHE_ENV,
    CacheError,
    VolumeCache,
    default_cache_dir,
    pack_cache_key,
    read_volume_cached,
)
from radsurv.data.case import Case
from radsurv.data.hdf5 import read_volume, scan_pack, slice_filename


class CountingLoader:
    """Wraps read_volume and counts how often the cache had to call it."""

    def __init__(self, pv) -> None:
        self.pv, self.calls = pv, 0

    def __call__(self) -> Case:
        self.calls += 1
        return read_volume(self.pv)


def _same(a: Case, b: Case) -> None:
    assert a.case_id == b.case_id and a.spacing == b.spacing and a.provenance == b.provenance
    assert list(a.images) == list(b.images)
    for name in a.images:
        np.testing.assert_array_equal(a.images[name], b.images[name])
        assert b.images[name].dtype == a.images[name].dtype == np.float64  # as the pack stores
    np.testing.assert_array_equal(a.labels, b.labels)


def test_second_access_is_a_hit_with_identical_data(pack: Path, tmp_path: Path) -> None:
    pv = scan_pack(pack)["BraTS20_Training_001"]
    cache = VolumeCache(tmp_path / "cache")
    loader = CountingLoader(pv)
    first = cache.load("case1", pv.sources, loader)
    second = cache.load("case1", pv.sources, loader)
    assert loader.calls == 1
    _same(first, second)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["case1.h5"]  # no tmp left


def test_changed_source_invalidates(pack: Path, tmp_path: Path) -> None:
    pv = scan_pack(pack)["BraTS20_Training_001"]
    cache = VolumeCache(tmp_path / "cache")
    loader = CountingLoader(pv)
    cache.load("case1", pv.sources, loader)
    path = pack / slice_filename(1, 3)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000))  # same size, new mtime
    cache.load("case1", pv.sources, loader)
    assert loader.calls == 2
    cache.load("case1", pv.sources, loader)
    assert loader.calls == 2
    cache.load("case1", pv.sources, loader, params="channel_order=t1,flair,t1gd,t2")
    assert loader.calls == 3


def test_read_volume_cached_sees_new_data(pack: Path, tmp_path: Path) -> None:
    pv = scan_pack(pack)["BraTS20_Training_002"]
    cached = read_volume_cached(pv, tmp_path / "c")
    _same(read_volume(pv), cached)
    _same(cached, read_volume_cached(pv, tmp_path / "c"))
    assert [p.name for p in (tmp_path / "c").iterdir()] == [f"{pack_cache_key(pv)}.h5"]
    with h5py.File(pv.files[4], "r+") as f:  # rewrite one slice's data in place
        f["image"][0, 0, 0] = 123.0
    after = read_volume_cached(pv, tmp_path / "c")
    assert after.images["flair"][4, 0, 0] == np.float32(123.0)
    swapped = read_volume_cached(pv, tmp_path / "c", "t1gd,t1,flair,t2")
    np.testing.assert_array_equal(swapped.images["t1gd"], after.images["flair"])


def test_two_packs_with_the_same_volume_numbers_keep_separate_entries(
    pack: Path, tmp_path: Path, phantom: Case
) -> None:
    other = tmp_path / "other"
    other.mkdir()
    for p in pack.glob("volume_1_*"):
        with h5py.File(p) as src, h5py.File(other / p.name, "w") as dst:
            dst["image"] = src["image"][()] * 2
            dst["mask"] = src["mask"][()]
    a = scan_pack(pack)["BraTS20_Training_001"]
    b = scan_pack(other)["BraTS20_Training_001"]
    assert pack_cache_key(a) != pack_cache_key(b)
    ca = read_volume_cached(a, tmp_path / "c")
    cb = read_volume_cached(b, tmp_path / "c")
    np.testing.assert_allclose(cb.images["t2"], 2 * ca.images["t2"])
    assert len(list((tmp_path / "c").iterdir())) == 2


def test_corrupt_entry_is_rebuilt(pack: Path, tmp_path: Path, caplog) -> None:
    pv = scan_pack(pack)["BraTS20_Training_001"]
    cache = VolumeCache(tmp_path)
    loader = CountingLoader(pv)
    cache.load("case1", pv.sources, loader)
    cache.path_for("case1").write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="radsurv.data.cache"):
        case = cache.load("case1", pv.sources, loader)
    assert loader.calls == 2 and "unreadable" in caplog.text
    _same(case, cache.load("case1", pv.sources, loader))
    assert loader.calls == 2


def test_loader_errors_propagate_and_nothing_is_cached(tmp_path: Path) -> None:
    cache = VolumeCache(tmp_path)

    def broken() -> Case:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        cache.load("x", [], broken)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_cache_still_returns_the_case(pack: Path, tmp_path: Path, caplog) -> None:
    pv = scan_pack(pack)["BraTS20_Training_001"]
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where the cache folder should be")
    with caplog.at_level(logging.WARNING, logger="radsurv.data.cache"):
        case = VolumeCache(blocker).load("case1", pv.sources, lambda: read_volume(pv))
    assert case.shape == (16, 40, 36)
    assert "could not write cache entry" in caplog.text


def test_unsafe_keys_are_refused(tmp_path: Path) -> None:
    with pytest.raises(CacheError, match="not a safe file name"):
        VolumeCache(tmp_path).path_for("../escape")


def test_cache_folder_choice(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "env"))
    assert default_cache_dir() == tmp_path / "env"
    assert default_cache_dir(tmp_path / "explicit") == tmp_path / "explicit"
    assert VolumeCache().folder == tmp_path / "env"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "radsurv" / "volumes"


def test_clear_removes_entries(pack: Path, tmp_path: Path) -> None:
    pv = scan_pack(pack)["BraTS20_Training_001"]
    read_volume_cached(pv, tmp_path / "c")
    assert VolumeCache(tmp_path / "c").clear() == 1
    assert list((tmp_path / "c").iterdir()) == []
