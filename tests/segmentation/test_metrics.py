"""Dice and HD95 against hand-made masks with known answers, and the BraTS empty-mask rule."""

from __future__ import annotations

import numpy as np
import pytest

from radsurv.segmentation import HD95_EMPTY_MM, case_scores, region_scores


def cube(shape=(30, 30, 30), lo=(5, 5, 5), size=10) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[lo[0] : lo[0] + size, lo[1] : lo[1] + size, lo[2] : lo[2] + size] = True
    return m


def sphere(radius: float, shape=(40, 40, 40)) -> np.ndarray:
    z, y, x = np.indices(shape) - np.array(shape)[:, None, None, None] // 2
    return z**2 + y**2 + x**2 <= radius**2


def test_identical_masks_score_perfectly():
    assert region_scores(cube(), cube()) == {"dice": 1.0, "hd95": 0.0}


def test_shifted_cube_dice_and_hd95_follow_the_geometry():
    a, b = cube(), cube(lo=(5, 5, 8))  # shifted 3 voxels along x
    scores = region_scores(a, b)
    assert scores["dice"] == pytest.approx(2 * 700 / 2000, abs=1e-6)
    assert scores["hd95"] == pytest.approx(3.0)


def test_hd95_uses_spacing_in_sitk_order():
    a, b = cube(), cube(lo=(5, 5, 8))  # shift along x, the last array axis
    assert region_scores(a, b, spacing=(2.0, 1.0, 1.0))["hd95"] == pytest.approx(6.0)
    assert region_scores(a, b, spacing=(1.0, 1.0, 5.0))["hd95"] == pytest.approx(3.0)


def test_concentric_spheres():
    inner, outer = sphere(10), sphere(13)
    scores = region_scores(inner, outer)
    expected_dice = 2 * inner.sum() / (inner.sum() + outer.sum())
    assert scores["dice"] == pytest.approx(expected_dice, abs=1e-6)
    assert scores["hd95"] == pytest.approx(3.0, abs=1.0)


def test_brats_empty_convention():
    empty = np.zeros((10, 10, 10), bool)
    assert region_scores(empty, empty) == {"dice": 1.0, "hd95": 0.0}
    assert region_scores(cube((10, 10, 10), (2, 2, 2), 3), empty) == {
        "dice": 0.0,
        "hd95": HD95_EMPTY_MM,
    }
    assert region_scores(empty, cube((10, 10, 10), (2, 2, 2), 3))["hd95"] == HD95_EMPTY_MM


def test_case_scores_use_nested_regions():
    ref = np.zeros((20, 20, 20), np.uint8)
    ref[5:15, 5:15, 5:15] = 2  # ED
    ref[8:12, 8:12, 8:12] = 1  # NCR
    pred = ref.copy()
    pred[pred == 1] = 4  # core predicted as ET: WT and TC right, ET wrong
    scores = case_scores(pred, ref)
    assert scores["WT"]["dice"] == 1.0
    assert scores["TC"]["dice"] == 1.0
    assert scores["ET"] == {"dice": 0.0, "hd95": HD95_EMPTY_MM}
