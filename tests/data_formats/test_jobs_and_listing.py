"""`radsurv manifest` / `radsurv check` on a pack: --jobs 2 gives what --jobs 1 gives, in the
same order, a bad case recorded and the others done; the slice folder is listed once per run."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radsurv.cli.app import app
from radsurv.data.case import Case
from radsurv.data.check import check_dataset
from radsurv.data.hdf5 import slice_filename, write_kaggle_volume
from radsurv.data.manifest import build_manifest
from radsurv.errors import ConfigError

SHAPE = (3, 6, 6)


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Volumes 1..5 of tiny slices; volume 3 has a truncated slice file."""
    folder = tmp_path_factory.mktemp("pack") / "BraTS2020_training_data" / "content" / "data"
    rng = np.random.default_rng(3)
    for volume in range(1, 6):
        images = {m: rng.normal(size=SHAPE) for m in ("flair", "t1", "t1gd", "t2")}
        labels = np.zeros(SHAPE, dtype=np.uint8)
        labels[1, 2:4, 2:4] = (1, 2, 4)[volume % 3]
        write_kaggle_volume(Case(f"v{volume}", images, labels), folder, volume)
    bad = folder / slice_filename(3, 1)
    bad.write_bytes(bad.read_bytes()[:100])
    return folder.parents[2]


def test_manifest_with_two_jobs_equals_one_job(pack: Path, tmp_path: Path) -> None:
    seen: list[tuple[int, int]] = []
    one = build_manifest(pack, relative_to=tmp_path, find_tables=False)
    two = build_manifest(
        pack,
        relative_to=tmp_path,
        find_tables=False,
        jobs=2,
        on_progress=lambda done, total, what: seen.append((done, total)),
    )
    pd.testing.assert_frame_equal(one, two)
    assert list(two["case_id"]) == [f"BraTS20_Training_{v:03d}" for v in range(1, 6)]
    problems = two.set_index("case_id")["problem"]
    assert "volume_3_slice_1.h5" in problems["BraTS20_Training_003"]
    assert (problems.drop("BraTS20_Training_003") == "").all()
    assert two["checksum"].drop("BraTS20_Training_003").str.startswith("sha256:").all()
    assert seen == [(i, 5) for i in range(1, 6)]


def test_check_with_two_jobs_equals_one_job(pack: Path) -> None:
    progress: list[tuple[str, int, int]] = []
    one = check_dataset(pack)
    two = check_dataset(
        pack, jobs=2, on_progress=lambda c, i, n: progress.append((c.case_id, i, n))
    )
    assert two.to_dict() == one.to_dict()
    assert [c.case_id for c in two.bad_cases] == ["BraTS20_Training_003"]
    assert [p[1] for p in progress] == [1, 2, 3, 4, 5]
    with pytest.raises(ConfigError, match="--jobs 0"):
        check_dataset(pack, jobs=0)


def test_cli_manifest_and_check_take_jobs(pack: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    outs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"m{jobs}.csv"
        result = runner.invoke(app, ["manifest", str(pack), "-o", str(out), "--jobs", jobs])
        assert result.exit_code == 1, result.output  # volume 3 is recorded as a problem
        assert "problem: BraTS20_Training_003" in result.output
        outs.append(out.read_text())
    assert outs[0] == outs[1]
    result = runner.invoke(app, ["check", str(pack), "--jobs", "2", "--no-progress"])
    assert result.exit_code == 1 and "BraTS20_Training_003" in result.output


def _count_scans(monkeypatch: pytest.MonkeyPatch, folder: Path) -> list[str]:
    """Record every os.scandir of ``folder`` (the real call still runs)."""
    calls: list[str] = []
    real = os.scandir

    def counting(path: str | os.PathLike = ".") -> os.ScandirIterator:
        if Path(path).resolve() == folder.resolve():
            calls.append(os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", counting)
    return calls


def test_the_slice_folder_is_listed_once_per_run(
    pack: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = pack / "BraTS2020_training_data" / "content" / "data"
    calls = _count_scans(monkeypatch, folder)
    build_manifest(pack, relative_to=tmp_path, find_tables=False, checksum=False)
    assert len(calls) == 1, calls
    calls.clear()
    check_dataset(pack)
    assert len(calls) == 1, calls
