"""Batch prediction (geometry, status records, failures) and evaluation of mask folders."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest
import SimpleITK as sitk

from radsurv.data.case import Case
from radsurv.segmentation import evaluate_masks, load_model, predict_masks
from radsurv.segmentation.predict import write_mask

from .conftest import phantom
from .test_report import case_section


def test_predict_writes_masks_on_the_case_grid_and_records_failures(
    trained_model, tiny_cases, nan_case, tmp_path
):
    no_t1gd = phantom(6)
    no_t1gd.case_id = "no_t1gd"
    del no_t1gd.images["t1gd"]
    zero = phantom(7)
    zero.case_id = "all_zero"
    zero.images["flair"] = np.zeros_like(zero.images["flair"])

    def broken_loader() -> Case:
        raise OSError("disk went away")

    source = [tiny_cases[0], nan_case, no_t1gd, zero, ("unreadable", broken_loader), tiny_cases[3]]
    records = predict_masks(load_model(trained_model, device="cpu"), source, tmp_path)
    status = {r["case_id"]: r for r in records}
    assert [status[c.case_id]["status"] for c in (tiny_cases[0], tiny_cases[3])] == ["ok", "ok"]
    assert "NaN" in status["BraTS20_Training_NaN"]["error"]
    assert "t1gd" in status["no_t1gd"]["error"]
    assert "all zero" in status["all_zero"]["error"]
    assert "disk went away" in status["unreadable"]["error"]
    with open(tmp_path / "segment_status.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "failed", "failed", "failed", "failed", "ok"]
    case = tiny_cases[3]  # anisotropic spacing and a shifted origin
    img = sitk.ReadImage(str(tmp_path / f"{case.case_id}.nii.gz"))
    assert np.allclose(img.GetSpacing(), case.spacing) and np.allclose(img.GetOrigin(), case.origin)
    assert sitk.GetArrayFromImage(img).shape == case.shape
    # these cases have reference masks: their report comes from `segment evaluate`
    assert records.report is None and not (tmp_path / "report.html").exists()


def test_predict_without_reference_masks_writes_a_prediction_report(
    trained_model, tiny_cases, tmp_path
):
    unlabelled = [dataclasses.replace(c, labels=None) for c in tiny_cases[:2]]
    no_t1gd = dataclasses.replace(tiny_cases[2], labels=None, case_id="no_t1gd")
    no_t1gd.images = {k: v for k, v in no_t1gd.images.items() if k != "t1gd"}
    model = load_model(trained_model, device="cpu")
    records = predict_masks(model, [*unlabelled, no_t1gd], tmp_path)
    assert records.report == tmp_path / "report.html"
    html = records.report.read_text()
    assert "No reference masks" in html and "http" not in html.split("<body")[1]
    for case in unlabelled:
        section = case_section(html, case.case_id)
        assert section.count('class="overlay prediction"') == 3
        assert "overlay reference" not in section
    assert "t1gd" in case_section(html, "no_t1gd").split("</p>")[0]
    assert predict_masks(model, unlabelled, tmp_path / "quiet", report=False).report is None
    assert not (tmp_path / "quiet" / "report.html").exists()


def test_evaluate_reference_masks_score_perfectly_and_missing_cases_are_named(tiny_cases, tmp_path):
    for case in tiny_cases[:3]:
        write_mask(case, case.labels, tmp_path / f"{case.case_id}.nii.gz")
    result = evaluate_masks(
        tmp_path, tiny_cases, json_path=tmp_path / "s.json", csv_path=tmp_path / "s.csv"
    )
    assert result.failed == [tiny_cases[3].case_id]
    failed = result.cases[3]
    assert tiny_cases[3].case_id in failed["error"] and "no mask" in failed["error"]
    for region in ("WT", "TC", "ET"):
        assert result.mean[region] == {"dice": 1.0, "hd95": 0.0}
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["mean"]["ET"]["dice"] == 1.0 and len(doc["cases"]) == 4
    with open(tmp_path / "s.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["WT_dice"] == "1.0" and rows[3]["status"] == "failed"
    assert "<table>" in result._repr_html_()


def test_evaluate_scores_an_imperfect_mask(tiny_cases, tmp_path):
    case = tiny_cases[2]
    pred = case.labels.copy()
    pred[pred == 4] = 1  # ET missed entirely, TC/WT intact
    write_mask(case, pred, tmp_path / f"{case.case_id}.nii.gz")
    result = evaluate_masks(tmp_path, [case])
    assert result.mean["WT"]["dice"] == 1.0 and result.mean["TC"]["dice"] == 1.0
    assert result.mean["ET"] == {"dice": 0.0, "hd95": pytest.approx(373.13)}


def test_evaluate_on_a_real_case(shared_data, tmp_path):
    from radsurv.data.nifti import read_nifti_case

    folder = shared_data / "brats2015_deepmedic" / "brats_2013_pat0005_1"
    case = read_nifti_case(
        folder,
        modality_patterns={"flair": "Flair_subtrMeanDivStd.nii.gz"},
        seg_pattern="OTMultiClass.nii.gz",
        label_convention="brats2015",
    )
    pred = case.labels.copy()
    pred[:, :, 1:] = pred[:, :, :-1]  # shift one voxel along x
    write_mask(case, pred, tmp_path / f"{case.case_id}.nii.gz")
    result = evaluate_masks(tmp_path, [case])
    assert 0.6 < result.mean["WT"]["dice"] < 1.0
    assert result.mean["WT"]["hd95"] == pytest.approx(1.0, abs=0.5)
    # the report of a real case: 6 overlays at full resolution, the cuts through the tumour
    import base64
    import io
    import re

    from PIL import Image

    from radsurv.segmentation.report import GREY_LEVELS

    html = result.report.read_text()
    srcs = re.findall(r'<img class="overlay [a-z]+" src="data:image/png;base64,([^"]+)"', html)
    overlays = [Image.open(io.BytesIO(base64.b64decode(s))) for s in srcs]
    assert len(overlays) == 6 and overlays[0].size == (240, 240)
    assert all(np.any(np.asarray(im) >= GREY_LEVELS) for im in overlays)  # labels drawn
