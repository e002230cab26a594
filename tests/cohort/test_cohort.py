"""Cohort columns: sites from BraTS ids (real name_mapping.csv), subject / timepoint tables,
and their place in the manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from radsurv.cli.app import app
from radsurv.data.cohort import (
    CohortError,
    read_cohort_columns,
    site_from_ids,
    sites_from_name_mapping,
)
from radsurv.data.manifest import Manifest, build_manifest, write_manifest
from radsurv.data.synthetic import synthesize_cohort
from radsurv.errors import ClinicalTableError, ManifestError

SHAPE = (8, 24, 24)

# the real BraTS 2020 training cases with survival data (survival_info.csv), by site
REAL_SURVIVAL_SITES = {
    "CBICA": 129,
    "unknown": 24,  # new in 2020: no BraTS 2019 id and no TCGA id
    "TCIA02": 22,
    "TCIA01": 19,
    "TCIA03": 12,
    "TCIA08": 9,
    "TCIA04": 7,
    "TCIA06": 5,
    "TMC": 5,
    "TCIA05": 2,
    "2013": 2,
}
REAL_ALL_SITES = {
    "CBICA": 129,
    "TCIA10": 35,
    "TCIA02": 34,
    "unknown": 34,
    "2013": 30,
    "TCIA01": 22,
    "TCIA08": 14,
    "TCIA13": 13,
    "TCIA03": 12,
    "TCIA09": 11,
    "TMC": 9,
    "TCIA04": 8,
    "TCIA06": 8,
    "TCIA12": 6,
    "TCIA05": 4,
}


def test_site_from_ids() -> None:
    assert site_from_ids("BraTS19_CBICA_AAB_1", "NA") == "CBICA"
    assert site_from_ids("BraTS19_TCIA10_109_1", "TCGA-DU-5849") == "TCIA10"
    assert site_from_ids("BraTS19_2013_10_1", None) == "2013"
    assert site_from_ids("BraTS19_TMC_06290_1", "") == "TMC"
    assert site_from_ids("NA", "TCGA-06-0130") == "TCGA-06"  # fallback: tissue-source code
    assert site_from_ids(None, "tcga-hT-7475") == "TCGA-HT"
    assert site_from_ids(np.nan, "NA") == "unknown"
    assert site_from_ids("garbage", "garbage") == "unknown"


def test_sites_of_the_real_brats2020_cases(shared_data: Path) -> None:
    mapping_csv = shared_data / "brats2020" / "name_mapping.csv"
    survival = pd.read_csv(shared_data / "brats2020" / "survival_info.csv", dtype=str)
    cohort = read_cohort_columns(mapping_csv)  # id: BraTS_2020_subject_ID; site from the ids
    assert len(cohort) == 369 and cohort.index[0] == "BraTS20_Training_001"
    assert cohort.attrs["sources"]["site"].endswith("BraTS 2019 / TCGA ids")
    assert cohort["site"].value_counts().to_dict() == REAL_ALL_SITES
    sites = cohort.loc[survival["Brats20ID"], "site"]
    assert len(sites) == 236
    assert sites.value_counts().to_dict() == REAL_SURVIVAL_SITES
    # subjects default to the case id; single scans have no time point
    assert (cohort["subject_id"] == cohort.index).all() and cohort["timepoint"].isna().all()
    # the 24 'unknown' survival cases are exactly those without a BraTS 2019 id (none has a
    # TCGA id either), so the TCGA fallback is not needed on this table ...
    raw = pd.read_csv(mapping_csv, dtype=str, keep_default_na=False)
    raw = raw.set_index("BraTS_2020_subject_ID")
    unknown = sites.index[sites == "unknown"]
    assert (raw.loc[unknown, "BraTS_2019_subject_ID"] == "NA").all()
    assert (raw.loc[unknown, "TCGA_TCIA_subject_ID"] == "NA").all()
    assert raw.loc[unknown].index.str[-3:].astype(int).min() >= 336  # new cases of 2020
    # ... but it gives the TCGA tissue-source code when the 2019 id is missing
    blank = raw.assign(BraTS_2019_subject_ID="NA")
    tcga = sites_from_name_mapping(blank)
    assert tcga["BraTS20_Training_158"] == "TCGA-02"  # TCGA-02-0006
    with_tcga = raw["TCGA_TCIA_subject_ID"] != "NA"
    assert tcga[with_tcga].str.match(r"^TCGA-[0-9A-Z]{2}$").all()
    assert (tcga[~with_tcga] == "unknown").all()
    assert int(with_tcga.sum()) == 167


def test_read_cohort_columns_from_any_table(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "Brats20ID": ["s1_a", "s1_b", "s2_a", "s3"],
            "patient": ["p1", "p1", "p2", ""],
            "day": ["0", "90", "0", ""],
            "hospital": ["H1", "H1", "", "H2"],
            "Age": ["50", "50", "60", "70"],
        }
    )
    path = tmp_path / "clinical.csv"
    table.to_csv(path, index=False)
    df = read_cohort_columns(
        path, site_column="hospital", subject_column="patient", timepoint_column="day"
    )
    assert df.index.name == "case_id" and list(df.index) == ["s1_a", "s1_b", "s2_a", "s3"]
    assert list(df["subject_id"]) == ["p1", "p1", "p2", "s3"]  # empty subject: the case id
    assert df["timepoint"].tolist()[:3] == [0.0, 90.0, 0.0] and np.isnan(df["timepoint"].iloc[3])
    assert list(df["site"]) == ["H1", "H1", "unknown", "H2"]
    # the same from a DataFrame and from Parquet; usual names are found without options
    renamed = table.rename(
        columns={"patient": "subject_id", "day": "timepoint", "hospital": "site"}
    )
    renamed.to_parquet(tmp_path / "c.parquet")
    for source in (renamed, tmp_path / "c.parquet"):
        pd.testing.assert_frame_equal(read_cohort_columns(source), df, check_dtype=False)
    # a survival table alone: defaults (no site information at all)
    plain = read_cohort_columns(table[["Brats20ID", "Age"]])
    assert list(plain["subject_id"]) == list(plain.index) and plain["site"].isna().all()


def test_cohort_table_errors(tmp_path: Path) -> None:
    table = pd.DataFrame(
        {"case_id": ["a", "b", "c"], "subject_id": ["p1", "p1", "p2"], "timepoint": [0, 0, 5]}
    )
    with pytest.raises(
        CohortError, match=r"subject 'p1' has several scans at time point 0 \(a, b\)"
    ):
        read_cohort_columns(table)
    with pytest.raises(CohortError, match="no site column 'centre_x'.*columns are"):
        read_cohort_columns(table, site_column="centre_x")
    with pytest.raises(CohortError, match="row 2 .*time point 'late' is not a number"):
        read_cohort_columns(table.assign(timepoint=["0", "late", "3"]))
    with pytest.raises(CohortError, match="no case id column"):
        read_cohort_columns(table.rename(columns={"case_id": "scan"}).drop(columns="subject_id"))
    with pytest.raises(CohortError, match="duplicate case id 'a'"):
        read_cohort_columns(table.assign(case_id=["a", "a", "c"], timepoint=[0, 1, 2]))


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort") / "cohort"
    synthesize_cohort(root, n_cases=4, seed=1, shape=SHAPE)
    return root


def _ids(n: int = 4) -> list[str]:
    return [f"BraTS20_Training_{i:03d}" for i in range(1, n + 1)]


def test_manifest_sites_from_the_name_mapping(cohort: Path, tmp_path: Path) -> None:
    mapping = pd.read_csv(cohort / "name_mapping.csv", dtype=str, keep_default_na=False)
    mapping["BraTS_2019_subject_ID"] = ["BraTS19_CBICA_AAB_1", "NA", "NA", "NA"]
    mapping["TCGA_TCIA_subject_ID"] = ["NA", "TCGA-06-0130", "NA", "NA"]
    mapping = mapping.iloc[:3]  # case 4 has no row
    mapping.to_csv(tmp_path / "mapping.csv", index=False)
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(
        app,
        ["manifest", str(cohort), "-o", str(out), "--no-checksum"]
        + ["--name-mapping", str(tmp_path / "mapping.csv")],
    )
    assert result.exit_code == 0, result.output
    assert "sites: " in result.output
    text = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(text.columns[:5]) == ["case_id", "subject_id", "timepoint", "site", "format"]
    assert list(text["site"]) == ["CBICA", "TCGA-06", "unknown", "unknown"]
    assert list(text["subject_id"]) == _ids() and set(text["timepoint"]) == {""}
    manifest = Manifest.read(out)
    got = manifest.cohort()
    assert list(got["site"]) == ["CBICA", "TCGA-06", "unknown", "unknown"]
    assert got["timepoint"].isna().all() and list(got["subject_id"]) == _ids()
    assert {"subject_id", "timepoint", "site", "grade"} <= set(manifest.clinical().columns)


def test_manifest_cohort_table_options(cohort: Path, tmp_path: Path) -> None:
    table = pd.DataFrame(
        {
            "scan": _ids()[:3],  # case 4 has no row: it keeps the defaults
            "patient": ["P1", "P1", "P2"],
            "days": ["0", "120", "0"],
            "centre": ["A", "A", "B"],
        }
    )
    table.to_csv(tmp_path / "scans.csv", index=False)
    out = tmp_path / "m.csv"
    options = ["--cohort-table", str(tmp_path / "scans.csv"), "--cohort-id-column", "scan"]
    options += ["--site-column", "centre", "--subject-column", "patient"]
    options += ["--timepoint-column", "days"]
    result = CliRunner().invoke(
        app, ["manifest", str(cohort), "-o", str(out), "--no-checksum", *options]
    )
    assert result.exit_code == 0, result.output
    assert "subjects: 3 (4 scans)" in result.output
    text = pd.read_csv(out, dtype=str, keep_default_na=False)
    assert list(text["subject_id"]) == ["P1", "P1", "P2", "BraTS20_Training_004"]
    assert list(text["timepoint"]) == ["0", "120", "0", ""]
    assert list(text["site"]) == ["A", "A", "B", "unknown"]
    # the clinical fields are joined as before
    assert text["grade"].ne("").all() and text["label"].ne("").all()

    # column options need the table; duplicate time points name the subject
    with pytest.raises(ManifestError, match="--site-column.*--cohort-table"):
        build_manifest(cohort, site_column="centre", checksum=False)
    table.assign(days=["0", "0", "0"]).to_csv(tmp_path / "dup.csv", index=False)
    with pytest.raises(ClinicalTableError, match="subject 'P1' has several scans at time point 0"):
        build_manifest(
            cohort,
            cohort_table=tmp_path / "dup.csv",
            cohort_id_column="scan",
            subject_column="patient",
            timepoint_column="days",
            checksum=False,
        )
    result = CliRunner().invoke(
        app,
        ["manifest", str(cohort), "-o", str(out), "--no-checksum", "--site-column", "x"],
    )
    assert result.exit_code == 2 and "--cohort-table" in result.output


def test_older_manifests_get_default_cohort_columns(cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.csv"
    write_manifest(build_manifest(cohort, relative_to=tmp_path, checksum=False), out)
    old = pd.read_csv(out, dtype=str, keep_default_na=False)
    old.drop(columns=["subject_id", "timepoint", "site"]).to_csv(out, index=False)
    got = Manifest.read(out).cohort()
    assert list(got["subject_id"]) == _ids() and got["timepoint"].isna().all()
    assert got["site"].isna().all()
