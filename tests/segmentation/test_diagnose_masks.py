"""bench/diagnose_masks.py: error volumes and intensity profiles against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from .conftest import load_bench_script


@pytest.fixture(scope="module")
def bench():
    return load_bench_script("diagnose_masks")


def test_error_volumes_by_hand(bench):
    ref = np.zeros((30, 30, 30), np.uint8)
    ref[5:15, 5:15, 5:15] = 2  # oedema cube, 1000 voxels
    ref[8:12, 8:12, 8:12] = 4  # enhancing core, 64 voxels
    pred = np.zeros_like(ref)
    pred[5:15, 5:15, 6:16] = 2  # shifted by one voxel in x: 100 missed, 100 false positives
    pred[8:12, 8:12, 8:12] = 4
    pred[27:29, 27:29, 27:29] = 1  # 8 voxels far (> 10 mm) from the reference
    e = bench.error_volumes(pred, ref)
    assert e["WT"] == {
        "reference": 1000,
        "predicted": 1008,
        "missed": 100,
        "false_positive": 108,
        "far_false_positive": 8,
    }
    assert e["TC"] == {
        "reference": 64,
        "predicted": 72,
        "missed": 0,
        "false_positive": 8,
        "far_false_positive": 8,
    }
    assert e["ET"]["false_positive"] == 0 and e["ET"]["missed"] == 0
    # a reference region that is empty makes every false positive of it far
    no_et = np.where(ref == 4, 1, ref).astype(np.uint8)
    e2 = bench.error_volumes(pred, no_et)
    assert e2["ET"] == {
        "reference": 0,
        "predicted": 64,
        "missed": 0,
        "false_positive": 64,
        "far_false_positive": 64,
    }


def test_error_volumes_far_threshold_uses_spacing(bench):
    ref = np.zeros((1, 1, 40), np.uint8)
    ref[0, 0, :5] = 2
    pred = np.zeros_like(ref)
    pred[0, 0, 11] = 2  # 7 voxels from the reference's last voxel (index 4)
    assert bench.error_volumes(pred, ref)["WT"]["far_false_positive"] == 0  # 7 mm
    assert bench.error_volumes(pred, ref, spacing=(2.0, 1.0, 1.0))["WT"]["far_false_positive"] == 1


def test_intensity_profile_by_hand(bench):
    rng = np.random.default_rng(0)
    image = rng.normal(100.0, 10.0, size=(20, 20, 20))
    labels = np.zeros(image.shape, np.uint8)
    labels[:4] = 2
    image[:4] += 40.0  # oedema 4 sd brighter than normal tissue
    head = np.ones(image.shape, bool)
    prof = bench.intensity_profile(image, labels, head)
    assert prof["wt_share_of_head"] == pytest.approx(0.2)
    values = image.ravel()
    z = (image - values.mean()) / values.std()
    assert prof["zscore"]["normal_p95"] == pytest.approx(np.percentile(z[4:], 95))
    assert prof["zscore"]["oedema_median"] == pytest.approx(np.median(z[:4]))
    q25, q50, q75 = np.percentile(values, [25, 50, 75])
    robust = (image - q50) / ((q75 - q25) / 1.349)
    assert prof["median_iqr"]["normal_median"] == pytest.approx(np.median(robust[4:]))
    # the tumour inflates the z-score's sd, so oedema sits fewer sd above normal tissue
    # than under the robust scale
    assert prof["zscore"]["oedema_median"] < prof["median_iqr"]["oedema_median"]


def test_kept_masks_and_diagnose(bench, tmp_path):
    from radsurv.data.case import Case

    labels = np.zeros((10, 12, 14), np.uint8)
    labels[3:6, 3:6, 3:6] = 2
    rng = np.random.default_rng(1)
    images = {m: rng.normal(0, 1, labels.shape).astype(np.float32) for m in ("flair", "t1gd")}
    case = Case(case_id="c1", images=images, labels=labels, spacing=(1.0, 1.0, 1.0))
    fold = tmp_path / "fold0"
    fold.mkdir()
    pred = labels.copy()
    pred[0, 0, 0] = 2
    sitk.WriteImage(sitk.GetImageFromArray(pred), str(fold / "c1_2d_tta.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(fold / "c10_2d.nii.gz"))  # other case
    assert list(bench.kept_masks(tmp_path, "c1")) == ["2d_tta"]
    result = bench.diagnose([case], tmp_path, far_mm=10.0)
    assert result["errors"]["c1"]["2d_tta"]["WT"]["false_positive"] == 1
    assert result["errors"]["c1"]["2d_tta"]["WT"]["missed"] == 0
    assert result["flair"]["c1"]["wt_share_of_head"] == pytest.approx(27 / labels.size)
