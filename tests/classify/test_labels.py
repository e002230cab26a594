"""Label tables: vocabularies, explicit positive class, unknown labels, real name_mapping."""

from __future__ import annotations

from pathlib import Path

import pytest

from radsurv.clinical_labels import LabelTableError, read_binary_labels
from radsurv.errors import ClinicalTableError


def _write(tmp_path: Path, text: str, name: str = "labels.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_pseudoprogression_vocabulary_sets_the_positive_class(tmp_path):
    path = _write(tmp_path, "case_id,label\nA,PsP\nB,TP\nC,recurrence\nD,pseudoprogression\n")
    labels = read_binary_labels(path)
    assert labels.positive == "pseudoprogression"
    assert labels.y.to_dict() == {"A": 1, "B": 0, "C": 0, "D": 1}
    assert "positive class 'pseudoprogression'" in labels.summary()


@pytest.mark.parametrize(
    "values, expected",
    [
        (["1", "0", "1"], [1, 0, 1]),
        (["true", "False", "TRUE"], [1, 0, 1]),
        (["yes", "no", "no"], [1, 0, 0]),
    ],
)
def test_boolean_labels(tmp_path, values, expected):
    rows = "".join(f"c{i},{v}\n" for i, v in enumerate(values))
    labels = read_binary_labels(_write(tmp_path, "Brats20ID,outcome\n" + rows))
    assert labels.y.tolist() == expected
    assert labels.label_column == "outcome"


def test_explicit_positive_reverses_the_vocabulary(tmp_path):
    path = _write(tmp_path, "case_id,label\nA,PsP\nB,progression\nC,TP\n")
    labels = read_binary_labels(path, positive="progression")
    assert labels.y.to_dict() == {"A": 0, "B": 1, "C": 1}
    assert labels.positive == "progression"


def test_two_free_labels_need_a_positive_class(tmp_path):
    path = _write(tmp_path, "case_id,Grade\nA,HGG\nB,LGG\nC,HGG\n")
    with pytest.raises(LabelTableError, match="--positive"):
        read_binary_labels(path, label_column="Grade")
    labels = read_binary_labels(path, label_column="grade", positive="lgg")
    assert labels.y.to_dict() == {"A": 0, "B": 1, "C": 0}
    assert (labels.positive, labels.negative) == ("LGG", "HGG")


def test_unknown_and_missing_labels_are_errors_naming_lines(tmp_path):
    path = _write(tmp_path, "case_id,label\nA,PsP\nB,TP\nC,unclear\nD,\nE,NA\n")
    with pytest.raises(LabelTableError) as err:
        read_binary_labels(path)
    msg = str(err.value)
    assert "3 of 5 rows" in msg and "line 4 C: 'unclear'" in msg and "line 5 D" in msg
    assert "--drop-unknown" in msg
    assert isinstance(err.value, ClinicalTableError)


def test_drop_unknown_reports_what_it_dropped(tmp_path):
    path = _write(tmp_path, "case_id,label\nA,PsP\nB,TP\nC,unclear\nD,\n")
    labels = read_binary_labels(path, drop_unknown=True)
    assert labels.y.to_dict() == {"A": 1, "B": 0}
    assert labels.dropped["case_id"].tolist() == ["C", "D"]
    assert labels.dropped["line"].tolist() == [4, 5]
    assert "2 rows dropped" in labels.summary()


def test_single_class_is_an_error(tmp_path):
    with pytest.raises(LabelTableError, match="single class"):
        read_binary_labels(_write(tmp_path, "case_id,label\nA,1\nB,1\n"))


def test_ambiguous_negative_class_is_an_error(tmp_path):
    path = _write(tmp_path, "case_id,label\nA,x\nB,y\nC,z\n")
    with pytest.raises(LabelTableError, match="ambiguous"):
        read_binary_labels(path, positive="x")
    labels = read_binary_labels(path, positive="x", negative="y", drop_unknown=True)
    assert labels.y.to_dict() == {"A": 1, "B": 0}


def test_missing_label_column_and_duplicate_ids(tmp_path):
    path = _write(tmp_path, "case_id,a,b\nA,1,2\n")
    with pytest.raises(LabelTableError, match="--label-column"):
        read_binary_labels(path)
    with pytest.raises(LabelTableError, match="no label column 'c'"):
        read_binary_labels(path, label_column="c")
    dup = _write(tmp_path, "case_id,label\nA,1\nA,0\n", "dup.csv")
    with pytest.raises(ClinicalTableError, match="duplicate"):
        read_binary_labels(dup)


def test_positive_class_absent_is_an_error(tmp_path):
    path = _write(tmp_path, "case_id,label\nA,HGG\nB,LGG\n")
    with pytest.raises(LabelTableError, match="does not occur"):
        read_binary_labels(path, positive="GBM")


def test_real_name_mapping_grades(shared_data):
    labels = read_binary_labels(
        shared_data / "brats2020" / "name_mapping.csv", label_column="Grade", positive="LGG"
    )
    assert labels.n == 369
    assert labels.positives == 76  # 293 HGG, 76 LGG
    assert labels.y.index[0] == "BraTS20_Training_001"
    assert labels.y.index.is_unique
    assert labels.negative == "HGG"
