"""radsurv.clinical: real BraTS tables, the validation form, bad values, targets and joins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radsurv.clinical import (
    join_tables,
    read_label_table,
    read_name_mapping,
    read_survival_table,
    survival_target,
)
from radsurv.errors import ClinicalTableError

HEADER = "Brats20ID,Age,Survival_days,Extent_of_Resection"


def _write(tmp_path: Path, lines: list[str], name: str = "s.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(("\r\n".join(lines) + "\r\n").encode())
    return path


def test_real_survival_table_parses_exactly(shared_data: Path) -> None:
    table = read_survival_table(shared_data / "brats2020" / "survival_info.csv")
    assert len(table) == 236 and table.index.is_unique
    assert table.index[0] == "BraTS20_Training_001"
    assert table["event"].dtype == bool
    assert int(table["event"].sum()) == 235
    row = table.loc["BraTS20_Training_084"]
    assert row["time"] == 361.0 and not row["event"] and row["resection"] == "GTR"
    counts = table["resection"].value_counts(dropna=False)
    assert counts["GTR"] == 119 and counts["STR"] == 10 and table["resection"].isna().sum() == 107
    assert table.loc["BraTS20_Training_001", "age"] == pytest.approx(60.463)
    assert table.loc["BraTS20_Training_001", "time"] == 289.0
    y = survival_target(table)
    assert y.dtype.names == ("event", "time") and len(y) == 236


def test_real_name_mapping(shared_data: Path) -> None:
    mapping = read_name_mapping(shared_data / "brats2020" / "name_mapping.csv")
    assert len(mapping) == 369
    assert mapping["grade"].value_counts().to_dict() == {"HGG": 293, "LGG": 76}
    survival = read_survival_table(shared_data / "brats2020" / "survival_info.csv")
    joined = join_tables(survival, mapping, left_name="survival", right_name="mapping")
    assert len(joined.table) == 236 and not joined.only_left and len(joined.only_right) == 133
    assert set(joined.table["grade"]) == {"HGG"}  # all survival cases are HGG


def test_validation_form_has_no_survival(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            "BraTS20ID,Age,ResectionStatus",
            "BraTS20_Validation_001,68.2,GTR",
            "BraTS20_Validation_002,50,NA",
        ],
    )
    table = read_survival_table(path)
    assert table["time"].isna().all() and table["event"].isna().all()
    assert table.loc["BraTS20_Validation_002", "resection"] is pd.NA
    with pytest.raises(ClinicalTableError, match="without survival"):
        survival_target(table)


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ("BraTS20_Training_001,61,-5,GTR", r"row 2 \(line 3\), column Survival_days.*>= 0"),
        ("BraTS20_Training_001,61,abc,GTR", r"row 2 \(line 3\), column Survival_days.*abc"),
        ("BraTS20_Training_001,130,100,GTR", r"row 2 \(line 3\), column Age.*0-120"),
        ("BraTS20_Training_001,x,100,GTR", r"row 2 \(line 3\), column Age.*not a number"),
        ("BraTS20_Training_001,61,100,XTR", r"row 2 \(line 3\), column Extent_of_Resection.*XTR"),
        ("BraTS20_Training_000,61,100,GTR", r"duplicate case id 'BraTS20_Training_000'"),
    ],
)
def test_bad_values_name_row_and_column(tmp_path: Path, row: str, match: str) -> None:
    path = _write(tmp_path, [HEADER, "BraTS20_Training_000,50,200,STR", row])
    with pytest.raises(ClinicalTableError, match=match):
        read_survival_table(path)


def test_missing_column_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, ["Brats20ID,Survival_days", "BraTS20_Training_001,100"])
    with pytest.raises(ClinicalTableError, match="missing column Age"):
        read_survival_table(path)


def test_alive_rows_and_target(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        [
            HEADER,
            "A,50,ALIVE (12 days later),GTR",
            "B,60.5,400,STR",
            "C,70,alive (7 days later),NA",
        ],
    )
    table, y = read_survival_table(path, return_target=True)
    assert table["time"].tolist() == [12.0, 400.0, 7.0]
    assert table["event"].tolist() == [False, True, False]
    assert y["event"].tolist() == [False, True, False]
    np.testing.assert_array_equal(y["time"], [12.0, 400.0, 7.0])


def test_join_reports_both_sides() -> None:
    left = pd.DataFrame({"a": [1, 2, 3]}, index=["x", "y", "z"])
    right = pd.DataFrame({"b": [1, 2]}, index=["y", "w"])
    result = join_tables(left, right, left_name="clinical", right_name="features")
    assert list(result.table.index) == ["y"]
    assert result.only_left == ["x", "z"] and result.only_right == ["w"]
    assert "2 only in clinical" in result.summary() and "1 only in features" in result.summary()
    with pytest.raises(ClinicalTableError, match="no case id in common"):
        join_tables(left, pd.DataFrame({"b": [1]}, index=["q"]))


def test_synthetic_tables_parse(tmp_path: Path) -> None:
    from radsurv.data.synthetic import synthesize_cohort

    cohort = synthesize_cohort(tmp_path / "syn", n_cases=8, seed=3, shape=(8, 24, 24))
    table = read_survival_table(cohort.survival_csv)
    assert len(table) == 8 and table["time"].notna().all()
    assert read_name_mapping(cohort.name_mapping_csv)["grade"].notna().all()
    labels = read_label_table(cohort.labels_csv)
    assert set(labels) <= {"pseudoprogression", "progression"} and len(labels) == 8
