"""Predicting with missing modalities: refused by default, zero channels when allowed."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from typer.testing import CliRunner

from radsurv.cli import app
from radsurv.data.manifest import build_manifest, write_manifest
from radsurv.segmentation import ModalityMismatchError, load_model, predict_masks, segment_case
from radsurv.segmentation.inference import infer_probabilities
from radsurv.segmentation.predict import NO_DROPOUT_NOTE
from radsurv.segmentation.preprocess import case_input, normalise, regions_to_labels

from .conftest import phantom


def _without(index: int, *modalities: str):
    case = phantom(index)
    for m in modalities:
        del case.images[m]
    return case


def test_case_input_fills_a_missing_modality_with_a_zero_channel(trained_model):
    model = load_model(trained_model, device="cpu")  # flair, t1gd
    case = _without(1, "t1gd")
    with pytest.raises(ModalityMismatchError, match=r"BraTS20_Training_001.*lacks \['t1gd'\]"):
        case_input(case, model.config)
    x = case_input(case, model.config, allow_missing=True)
    assert x.shape == (2, *case.shape) and not x[1].any()
    np.testing.assert_array_equal(x[0], normalise(case.images["flair"][None])[0])


def test_segmenting_with_a_missing_modality_uses_a_zero_channel(trained_model):
    model = load_model(trained_model, device="cpu")
    case = _without(2, "t1gd")
    with pytest.raises(ModalityMismatchError, match="t1gd"):
        segment_case(model, case)
    labels = segment_case(model, case, allow_missing_modalities=True, postprocess=False)
    # the same as feeding the network a zero t1gd channel by hand
    image = case_input(case, model.config, allow_missing=True)
    probs = infer_probabilities(model.members, image, model.config, torch.device("cpu"))
    expected = regions_to_labels(probs > model.config.threshold)
    assert np.mean(labels != expected) < 1e-4
    full = segment_case(load_model(trained_model, device="cpu"), phantom(2), postprocess=False)
    assert labels.shape == full.shape


def test_a_case_with_none_of_the_modalities_is_still_refused(trained_model):
    model = load_model(trained_model, device="cpu")
    case = _without(3, "flair", "t1gd")
    with pytest.raises(ModalityMismatchError, match=r"BraTS20_Training_003.*none of them"):
        segment_case(model, case, allow_missing_modalities=True)


def test_predict_records_missing_modalities_and_the_no_dropout_note(trained_model, tmp_path):
    model = load_model(trained_model, device="cpu")
    cases = [phantom(1), _without(2, "t1gd"), _without(3, "flair", "t1gd")]
    refused = predict_masks(model, cases, tmp_path / "strict")
    assert [r["status"] for r in refused] == ["ok", "failed", "failed"]
    assert "ModalityMismatchError" in refused[1]["error"] and "t1gd" in refused[1]["error"]
    records = predict_masks(model, cases, tmp_path / "allowed", allow_missing_modalities=True)
    with open(tmp_path / "allowed" / "segment_status.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "ok", "failed"]
    assert [r["missing_modalities"] for r in rows] == ["", "t1gd", ""]
    assert rows[1]["note"] == NO_DROPOUT_NOTE and rows[0]["note"] == ""
    assert "none of them" in records[2]["error"]
    assert (tmp_path / "allowed" / "BraTS20_Training_002.nii.gz").is_file()


def test_no_note_for_a_model_trained_with_modality_dropout(trained_model, tmp_path):
    model = load_model(trained_model, device="cpu")
    model.config.modality_dropout = 0.3  # what a --modality-dropout checkpoint carries
    records = predict_masks(model, [_without(2, "flair")], tmp_path, allow_missing_modalities=True)
    assert records[0]["missing_modalities"] == "flair" and records[0]["note"] == ""


def test_cli_predict_allow_missing_modalities(trained_model, tmp_path):
    # a NIfTI cohort whose second case has no T1Gd file
    for case in (phantom(1), _without(2, "t1gd")):
        folder = tmp_path / "nifti" / case.case_id
        folder.mkdir(parents=True)
        for m, suffix in (("flair", "flair"), ("t1", "t1"), ("t1gd", "t1ce"), ("t2", "t2")):
            if m in case.images:
                sitk.WriteImage(
                    case.to_sitk(case.images[m]), str(folder / f"{case.case_id}_{suffix}.nii.gz")
                )
    manifest = tmp_path / "data_manifest.csv"
    write_manifest(
        build_manifest(tmp_path / "nifti", relative_to=tmp_path, checksum=False), manifest
    )
    runner = CliRunner()
    args = ["segment", "predict", "--model", str(trained_model), "--manifest", str(manifest)]
    res = runner.invoke(app, [*args, "--out", str(tmp_path / "a"), "--device", "cpu"])
    assert res.exit_code == 1 and "t1gd" in res.output
    res = runner.invoke(
        app,
        [*args, "--out", str(tmp_path / "b"), "--device", "cpu", "--allow-missing-modalities"],
    )
    assert res.exit_code == 0, res.output
    assert "segmented without t1gd" in res.output and "modality dropout" in res.output
