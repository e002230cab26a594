"""The synthetic cohort: deterministic, Kaggle layout, real-table quirks, image signal."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from typer.testing import CliRunner

from radsurv.cli.app import app
from radsurv.data.labels import LABEL_ET
from radsurv.data.synthetic import make_phantom_case, sample_patient, synthesize_cohort

SHAPE = (12, 40, 40)


def test_phantom_is_deterministic_and_valid() -> None:
    a = make_phantom_case(3, seed=5, shape=SHAPE)
    b = make_phantom_case(3, seed=5, shape=SHAPE)
    a.validate()
    assert a.case_id == "BraTS20_Training_003"
    for m in a.images:
        np.testing.assert_array_equal(a.images[m], b.images[m])
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(make_phantom_case(3, seed=6, shape=SHAPE).labels, a.labels)


def test_phantom_contrasts_follow_mri() -> None:
    """ET is brightest on T1Gd, oedema bright on FLAIR and T2, relative to normal brain."""
    index = next(i for i in range(1, 50) if sample_patient(i).grade == "HGG")
    case = make_phantom_case(index, shape=(24, 64, 64))
    brain = (case.images["t1"] > 0) & (case.labels == 0)

    def ratio(modality: str, label: int) -> float:
        img = case.images[modality]
        return float(img[case.labels == label].mean() / img[brain].mean())

    assert ratio("t1gd", LABEL_ET) > 1.8
    assert ratio("t1gd", LABEL_ET) > max(ratio(m, LABEL_ET) for m in ("flair", "t1", "t2"))
    assert ratio("flair", 2) > 1.4 and ratio("t2", 2) > 1.4 and ratio("t1", 2) < 1.0


def test_lgg_cases_have_no_enhancing_tumour() -> None:
    lgg = [i for i in range(1, 40) if sample_patient(i).grade == "LGG"]
    assert lgg, "the cohort should hold LGG-like cases"
    case = make_phantom_case(lgg[0], shape=SHAPE)
    assert not (case.labels == LABEL_ET).any()
    assert (case.labels == 1).any()


def test_cohort_layout_and_tables(tmp_path: Path) -> None:
    cohort = synthesize_cohort(tmp_path / "c", n_cases=6, seed=1, shape=SHAPE)
    files = sorted(cohort.data_dir.glob("volume_*_slice_*.h5"))
    assert len(files) == 6 * SHAPE[0]
    with h5py.File(cohort.data_dir / "volume_2_slice_5.h5") as f:
        assert f["image"].shape == (SHAPE[1], SHAPE[2], 4)
        assert f["mask"].shape == (SHAPE[1], SHAPE[2], 3)
        assert f["mask"].dtype == np.uint8
        assert f["mask"][()].sum(axis=-1).max() <= 1  # one-hot, disjoint
    meta = pd.read_csv(cohort.data_dir / "meta_data.csv")
    assert list(meta.columns) == ["slice_path", "target", "volume", "slice"]
    assert len(meta) == 6 * SHAPE[0] and meta["slice_path"].str.startswith("/content/data/").all()

    raw = cohort.survival_csv.read_bytes()
    assert b"\r\n" in raw  # CRLF like the real table
    survival = pd.read_csv(cohort.survival_csv, keep_default_na=False)
    assert list(survival.columns) == ["Brats20ID", "Age", "Survival_days", "Extent_of_Resection"]
    assert set(survival["Extent_of_Resection"]) <= {"GTR", "STR", "NA"}
    days = survival["Survival_days"].astype(str)
    assert days.str.fullmatch(r"\d+|ALIVE \(\d+ days later\)").all()
    grades = pd.read_csv(cohort.name_mapping_csv)
    assert set(grades["Grade"]) <= {"HGG", "LGG"}
    labels = pd.read_csv(cohort.labels_csv)
    assert set(labels["label"]) <= {"pseudoprogression", "progression"}
    truth = json.loads(cohort.truth_json.read_text())
    assert truth["survival_model"]["coefficients"]["z_heterogeneity"] > 0


def test_outcomes_carry_image_signal(tmp_path: Path) -> None:
    """Survival depends on the image-derived volumes beyond age (the generative truth)."""
    from lifelines import CoxPHFitter

    synthesize_cohort(tmp_path / "c", n_cases=60, seed=0, shape=(16, 48, 48))
    props = pd.read_csv(tmp_path / "c" / "phantom_properties.csv")
    props["log_ncr"] = np.log1p(props["ncr_volume"])
    props["event"] = props["event"].astype(int)
    cph = CoxPHFitter().fit(
        props[["time", "event", "age", "log_ncr", "heterogeneity"]], "time", "event"
    )
    assert cph.params_["heterogeneity"] > 0 and cph.params_["log_ncr"] > 0


def test_synth_cli(tmp_path: Path) -> None:
    out = tmp_path / "cli"
    result = CliRunner().invoke(
        app, ["synth", str(out), "--cases", "2", "--seed", "3", "--shape", "8", "32", "32"]
    )
    assert result.exit_code == 0, result.output
    assert len(list((out / "data").glob("*.h5"))) == 16
    assert (out / "truth.json").exists()
