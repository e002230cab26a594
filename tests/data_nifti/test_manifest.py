"""The manifest: rows, relative paths, checksums, clinical joins, loading cases back."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radsurv.data.manifest import Manifest, build_manifest, dataset_convention, write_manifest
from radsurv.data.synthetic import synthesize_cohort
from radsurv.errors import DataError, ManifestError

SYN_SHAPE = (8, 24, 24)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-case synthetic cohort (Kaggle layout + its clinical tables)."""
    root = tmp_path_factory.mktemp("syn") / "cohort"
    synthesize_cohort(root, n_cases=4, seed=2, shape=SYN_SHAPE)
    return root


def test_kaggle_manifest_of_a_synth_folder(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "sheets" / "m.csv"
    df = build_manifest(cohort, relative_to=out.parent)
    write_manifest(df, out)
    text = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(text["case_id"]) == [f"BraTS20_Training_{i:03d}" for i in range(1, 5)]
    assert set(text["format"]) == {"kaggle"}
    assert set(text["source"]) == {os.path.relpath(cohort / "data", out.parent)}
    assert list(text["n_slices"]) == ["8"] * 4 and set(text["shape"]) == {"8x24x24"}
    assert set(text["channel_order"]) == {"flair,t1,t1gd,t2"}
    # the synth folder's own tables were picked up
    truth = pd.read_csv(cohort / "phantom_properties.csv", index_col="case_id")
    assert list(text["grade"]) == list(truth["grade"])
    np.testing.assert_allclose(text["age"].astype(float), truth["age"].round(3))
    assert list(text["time"].astype(float)) == list(truth["time"].astype(float))
    assert list(text["event"]) == [str(bool(e)) for e in truth["event"]]
    labels = pd.read_csv(cohort / "pseudoprogression.csv", index_col="case_id")["label"]
    assert list(text["label"]) == list(labels)
    assert text["checksum"].str.match(r"^sha256:[0-9a-f]{64}$").all()
    assert text["checksum"].nunique() == 4


def test_load_case_from_manifest(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.csv"
    write_manifest(build_manifest(cohort / "data", relative_to=tmp_path), out)
    manifest = Manifest.read(out)
    assert manifest.root == tmp_path and manifest.case_ids[0] == "BraTS20_Training_001"
    case = manifest.load_case("BraTS20_Training_002")
    assert case.shape == SYN_SHAPE and case.modalities == ["flair", "t1", "t1gd", "t2"]
    assert set(np.unique(case.labels)) <= {0, 1, 2, 4}
    cached = manifest.load_case("BraTS20_Training_002", cache_dir=tmp_path / "cache")
    np.testing.assert_array_equal(cached.images["t1gd"], case.images["t1gd"])
    clinical = manifest.clinical()
    assert clinical.index.name == "case_id"
    assert {"grade", "age", "time", "event", "resection", "label"} <= set(clinical.columns)
    assert clinical["event"].map(type).eq(bool).all()
    with pytest.raises(ManifestError, match="BraTS20_Training_999.*not in"):
        manifest.load_case("BraTS20_Training_999")


def test_paths_are_relative_and_the_manifest_moves_with_the_data(
    tmp_path: Path, make_case_folder
) -> None:
    project = tmp_path / "project"
    make_case_folder(project / "data", "BraTS20_Training_010")
    make_case_folder(project / "data", "BraTS20_Training_011", modalities=("flair", "t2"))
    write_manifest(build_manifest(project / "data"), project / "m.csv")  # cwd-relative first
    text = (project / "m.csv").read_text()
    assert str(tmp_path) not in text
    moved = tmp_path / "elsewhere"
    shutil.move(project, moved)
    manifest = Manifest.read(moved / "m.csv")
    assert manifest.table.loc["BraTS20_Training_010", "source"] == "data/BraTS20_Training_010"
    case = manifest.load_case("BraTS20_Training_011")
    assert case.modalities == ["flair", "t2"]
    assert manifest.table.loc["BraTS20_Training_011", "modalities"] == "flair,t2"
    assert bool(manifest.table.loc["BraTS20_Training_011", "has_mask"])


def test_checksum_is_deterministic_content_only(tmp_path: Path, make_case_folder) -> None:
    a = make_case_folder(tmp_path / "a", "c1", seed=1)
    make_case_folder(tmp_path / "b", "c1", seed=1)
    first = build_manifest(tmp_path / "a")["checksum"].iloc[0]
    assert build_manifest(tmp_path / "b")["checksum"].iloc[0] == first  # other place, same data
    os.utime(a / "c1_flair.nii.gz", (1, 1))  # mtimes do not matter
    assert build_manifest(tmp_path / "a")["checksum"].iloc[0] == first
    make_case_folder(tmp_path / "a", "c1", seed=2)  # new content
    assert build_manifest(tmp_path / "a")["checksum"].iloc[0] != first
    assert build_manifest(tmp_path / "a", checksum=False)["checksum"].iloc[0] == ""


def test_kaggle_checksum_survives_a_rewrite(tmp_path: Path) -> None:
    one = synthesize_cohort(tmp_path / "one", n_cases=2, seed=4, shape=(4, 16, 16))
    two = synthesize_cohort(tmp_path / "two", n_cases=2, seed=4, shape=(4, 16, 16))
    a = build_manifest(one.root)["checksum"]
    b = build_manifest(two.root)["checksum"]
    assert list(a) == list(b)


def test_unmatched_clinical_ids_are_reported(
    cohort: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    table = pd.read_csv(cohort / "survival_info.csv", dtype=str, keep_default_na=False)
    table = table.iloc[1:]  # BraTS20_Training_001 has no row
    extra = table.iloc[[0]].assign(Brats20ID="BraTS20_Training_300")
    pd.concat([table, extra]).to_csv(tmp_path / "surv.csv", index=False)
    with caplog.at_level(logging.WARNING):
        df = build_manifest(cohort / "data", clinical=tmp_path / "surv.csv")
    assert len(df) == 4  # the case without a row stays, with empty fields
    assert pd.isna(df.loc["BraTS20_Training_001", "time"])
    assert not pd.isna(df.loc["BraTS20_Training_002", "time"])
    log = " ".join(r.getMessage() for r in caplog.records)
    assert "1 only in data (BraTS20_Training_001)" in log
    assert "1 only in surv.csv (BraTS20_Training_300)" in log


def test_nifti_manifest_fields_and_dataset_convention(
    tmp_path: Path, make_case_folder, caplog: pytest.LogCaptureFixture
) -> None:
    make_case_folder(tmp_path / "d", "p1", labels=(1, 2, 3, 4))
    make_case_folder(tmp_path / "d", "p2", labels=(1, 3))  # alone this would read as BraTS 2023
    make_case_folder(tmp_path / "d", "p3", labels=None)
    # the data layer logs it (radsurv.data.formats.nifti since the formats moved there)
    with caplog.at_level(logging.INFO, logger="radsurv.data"):
        df = build_manifest(tmp_path / "d", relative_to=tmp_path)
    assert list(df["label_convention"]) == ["brats2015", "brats2015", ""]
    assert list(df["has_mask"]) == [True, True, False]
    assert "label convention brats2015 detected" in caplog.text
    assert df.loc["p1", "shape"] == "6x10x8" and df.loc["p1", "spacing"] == "0.9x0.9x1.5"
    assert df.loc["p1", "files"] == (
        "flair=p1_flair.nii.gz;t1=p1_t1.nii.gz;t1gd=p1_t1ce.nii.gz;t2=p1_t2.nii.gz;seg=p1_seg.nii.gz"
    )
    case = Manifest.from_table(df).load_case("p2")
    assert set(np.unique(case.labels)) == {0, 1}  # 3 -> NCR under BraTS 2015
    assert dataset_convention({"a": {0, 1, 2, 3}})[0] == "brats2023"


def test_bad_manifests(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="does not exist"):
        Manifest.read(tmp_path / "none.csv")
    (tmp_path / "m.csv").write_text("case_id,format\nx,kaggle\n")
    with pytest.raises(ManifestError, match=r"missing column\(s\) \['source'\]"):
        Manifest.read(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("case_id,format,source\nx,kaggle,a\nx,nifti,b\n")
    with pytest.raises(ManifestError, match="duplicate case ids x"):
        Manifest.read(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("case_id,format,source\nx,dicom,a\n")
    with pytest.raises(ManifestError, match="unknown format"):
        Manifest.read(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("case_id,format,source,files\nx,nifti,gone,flair=a.nii.gz\n")
    with pytest.raises(Exception, match=r"case x: source .*gone.*Rebuild the manifest"):
        Manifest.read(tmp_path / "m.csv").load_case("x")
    with pytest.raises(ManifestError, match="neither Kaggle slice files"):
        build_manifest(tmp_path)


def test_unreadable_cases_get_a_problem_row(tmp_path: Path, make_case_folder) -> None:
    from typer.testing import CliRunner

    from radsurv.cli.app import app

    cohort = synthesize_cohort(tmp_path / "syn", n_cases=3, seed=1, shape=(4, 16, 16))
    (cohort.data_dir / "volume_2_slice_0.h5").write_bytes(b"\x89HDF\r\n truncated")
    (cohort.data_dir / "volume_3_slice_2.h5").unlink()
    (cohort.data_dir / "meta_data.csv").unlink()
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(app, ["manifest", str(cohort.root), "-o", str(out)])
    assert result.exit_code == 1
    assert "problem: BraTS20_Training_002: " in result.output
    assert "volume_2_slice_0.h5" in result.output
    manifest = Manifest.read(out)
    assert manifest.case_ids == [f"BraTS20_Training_{i:03d}" for i in (1, 2, 3)]
    assert manifest.table.loc["BraTS20_Training_001", "problem"] == ""
    assert "slice file(s) [2] missing" in manifest.table.loc["BraTS20_Training_003", "problem"]
    assert manifest.load_case("BraTS20_Training_001").shape == (4, 16, 16)
    with pytest.raises(DataError, match="BraTS20_Training_003: .*records a problem"):
        manifest.load_case("BraTS20_Training_003")
    make_case_folder(tmp_path / "n", "c1")
    make_case_folder(tmp_path / "n", "c2")
    (tmp_path / "n" / "c2" / "c2_t1.nii.gz").write_bytes(b"junk")
    df = build_manifest(tmp_path / "n")
    assert df.loc["c1", "problem"] == "" and "c2_t1.nii.gz" in df.loc["c2", "problem"]


def test_a_stray_table_beside_the_data_is_ignored_not_fatal(
    tmp_path: Path, make_case_folder, caplog: pytest.LogCaptureFixture
) -> None:
    make_case_folder(tmp_path / "ds", "p1")
    (tmp_path / "ds" / "survival_info.csv").write_text(
        "Brats20ID,Age,Survival_days,Extent_of_Resection\nzz,50,100,GTR\n"
    )
    with caplog.at_level(logging.WARNING):
        df = build_manifest(tmp_path / "ds")
    assert list(df.index) == ["p1"] and pd.isna(df.loc["p1", "time"])
    assert "survival_info.csv ignored" in caplog.text
    with pytest.raises(Exception, match="no case id in common"):
        build_manifest(tmp_path / "ds", clinical=tmp_path / "ds" / "survival_info.csv")
