"""Every registered dataset format through the same tests: write a tiny case, detect, list,
read back identical values, describe as a manifest row, validate a damaged case."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from radsurv.data import formats
from radsurv.data.case import Case
from radsurv.data.formats import DataFormat, canonical_name, detect_format, get_format
from radsurv.data.listing import FolderListing
from radsurv.data.manifest import Manifest, build_manifest, write_manifest
from radsurv.data.sources import CaseSource, dataset_sources, iter_cases

SHAPE = (4, 10, 8)  # (z, y, x)
CASE_ID = "BraTS20_Training_007"
ALL_FORMATS = list(formats.FORMATS.values())


def _balanced_signs(rng: np.random.Generator) -> np.ndarray:
    """A volume of +-1 in equal numbers: mean 0 and sd 1 exactly, so the Kaggle pack's
    per-volume standardisation leaves every value as it is."""
    values = np.repeat([-1.0, 1.0], int(np.prod(SHAPE)) // 2)
    return rng.permutation(values).reshape(SHAPE)


@pytest.fixture(scope="module")
def case() -> Case:
    rng = np.random.default_rng(7)
    images = {m: _balanced_signs(rng) for m in ("flair", "t1", "t1gd", "t2")}
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[1, 2:5, 2:5] = 2
    labels[2, 3:5, 3:5] = 1
    labels[2, 5:7, 3:4] = 4
    return Case(CASE_ID, images, labels)


def _write(fmt: DataFormat, case: Case, dst: Path) -> Path:
    writer = fmt.open_writer(dst, [case.case_id])
    writer.write(case)
    writer.close([case.case_id])
    return dst


def _files(dst: Path) -> list[Path]:
    return sorted(p for p in dst.rglob("*") if p.is_file() and p.suffix in (".h5", ".gz", ".nii"))


def _same(a: Case, b: Case) -> None:
    assert a.case_id == b.case_id
    assert sorted(a.images) == sorted(b.images)
    for m in a.images:
        assert a.images[m].shape == b.images[m].shape
        np.testing.assert_array_equal(a.images[m], b.images[m])
    np.testing.assert_array_equal(a.labels, b.labels)


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.name)
def test_write_detect_list_read_back(fmt: DataFormat, case: Case, tmp_path: Path) -> None:
    dst = _write(fmt, case, tmp_path / "ds")
    assert _files(dst), f"{fmt.name} wrote no file"
    listing = FolderListing()
    assert fmt.detect(dst, listing)
    assert detect_format(dst, listing) == fmt.name
    others = [o for o in ALL_FORMATS if o.name != fmt.name]
    assert not any(o.detect(dst, FolderListing()) for o in others)

    name, sources = dataset_sources(dst)
    assert name == fmt.name
    assert [s.case_id for s in sources] == [CASE_ID]
    (source,) = sources
    _same(case, source.load())
    back, problems = source.validate()
    assert problems == [] and back is not None
    _same(case, back)
    # sources of a dataset go to worker processes: they must survive pickling
    _same(case, pickle.loads(pickle.dumps(source)).load())


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.name)
def test_manifest_row_reads_back_the_same_case(fmt: DataFormat, case: Case, tmp_path: Path) -> None:
    dst = _write(fmt, case, tmp_path / "ds")
    df = build_manifest(dst, relative_to=tmp_path, find_tables=False)
    assert list(df["case_id"]) == [CASE_ID]
    row = df.iloc[0]
    assert row["format"] == fmt.name and row["problem"] == ""
    assert row["shape"] == "x".join(str(n) for n in SHAPE)
    assert row["checksum"].startswith("sha256:")
    manifest = Manifest.read(write_manifest(df, tmp_path / "m.csv"))
    _same(case, manifest.load_case(CASE_ID))
    (source,) = iter_cases(tmp_path / "m.csv")
    _same(case, pickle.loads(pickle.dumps(source)).load())
    # the checksum depends on the content only: the same on a second build
    again = build_manifest(dst, relative_to=tmp_path, find_tables=False)
    assert again.iloc[0]["checksum"] == row["checksum"]


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.name)
def test_a_damaged_case_is_a_problem_naming_the_file(
    fmt: DataFormat, case: Case, tmp_path: Path
) -> None:
    dst = _write(fmt, case, tmp_path / "ds")
    damaged = _files(dst)[len(_files(dst)) // 2]
    damaged.write_bytes(damaged.read_bytes()[:64])  # truncated
    (source,) = dataset_sources(dst)[1]
    back, problems = source.validate()
    assert back is None and problems
    assert any(damaged.name in p.file or damaged.name in p.problem for p in problems), problems
    with pytest.raises(Exception, match=damaged.name):
        source.load()


@pytest.mark.parametrize("fmt", ALL_FORMATS, ids=lambda f: f.name)
def test_names_and_aliases_resolve_to_the_format(fmt: DataFormat) -> None:
    for name in (fmt.name, *fmt.aliases, fmt.name.upper()):
        assert canonical_name(name) == fmt.name
        assert get_format(name) is fmt
    assert fmt.describe


def test_kaggle_hdf5_is_an_alias_in_older_manifests(case: Case, tmp_path: Path) -> None:
    dst = _write(get_format("kaggle"), case, tmp_path / "ds")
    df = build_manifest(dst, relative_to=tmp_path, find_tables=False, checksum=False)
    path = write_manifest(df.assign(format="kaggle_hdf5"), tmp_path / "old.csv")
    manifest = Manifest.read(path)
    assert set(manifest.table["format"]) == {"kaggle"}
    _same(case, manifest.load_case(CASE_ID))
    assert (
        build_manifest(dst, fmt="kaggle_hdf5", relative_to=tmp_path, checksum=False).iloc[0][
            "format"
        ]
        == "kaggle"
    )


def test_case_source_of_a_case_and_of_a_pair(case: Case) -> None:
    sources = list(iter_cases([case, ("other", lambda: case)]))
    assert [s.case_id for s in sources] == [CASE_ID, "other"]
    assert all(isinstance(s, CaseSource) for s in sources)
    assert sources[0].load() is case
    assert sources[1].validate() == (case, [])
