"""Input checks, normalisation, labels <-> regions, and post-processing."""

from __future__ import annotations

import numpy as np
import pytest

from radsurv.data.case import Case
from radsurv.segmentation import BadVolumeError, ModalityMismatchError, postprocess_labels
from radsurv.segmentation.preprocess import (
    case_input,
    foreground_mask,
    labels_to_regions,
    regions_to_labels,
)

from .conftest import phantom, tiny_config


def test_labels_regions_round_trip_on_canonical_labels():
    labels = np.array([[[0, 1, 2, 4, 2, 0]]], np.uint8)
    regions = labels_to_regions(labels)
    assert regions[:, 0, 0].tolist() == [[0, 1, 1, 1, 1, 0], [0, 1, 0, 1, 0, 0], [0, 0, 0, 1, 0, 0]]
    np.testing.assert_array_equal(regions_to_labels(regions), labels)


def test_regions_to_labels_nests_upwards():
    # ET without TC/WT still becomes ET; TC without WT becomes NCR
    regions = np.zeros((3, 1, 1, 3), bool)
    regions[2, 0, 0, 0] = True
    regions[1, 0, 0, 1] = True
    assert regions_to_labels(regions).ravel().tolist() == [4, 1, 0]


def test_normalisation_zscores_the_head_and_zeroes_background():
    case = phantom(1)
    # the Kaggle pack standardises whole volumes: background becomes a constant negative value
    for m in case.images:
        arr = case.images[m]
        case.images[m] = ((arr - arr.mean()) / arr.std()).astype(np.float32)
    x = case_input(case, tiny_config(["flair", "t2"]))
    fg = foreground_mask(x)
    assert x.shape == (2, *case.shape)
    assert 0.1 < fg.mean() < 0.95
    for c in range(2):
        assert abs(x[c][fg].mean()) < 1e-3 and abs(x[c][fg].std() - 1) < 1e-3
        assert np.all(x[c][~fg] == 0)


def test_missing_modality_is_refused_naming_the_case():
    case = phantom(1)
    del case.images["t1gd"]
    with pytest.raises(ModalityMismatchError, match=r"BraTS20_Training_001.*t1gd"):
        case_input(case, tiny_config(["flair", "t1gd"]))


@pytest.mark.parametrize("problem", ["nan", "zero", "constant"])
def test_bad_volumes_are_refused_naming_the_case(problem):
    case = phantom(2)
    arr = case.images["flair"].copy()
    if problem == "nan":
        arr[2, 3, 4] = np.nan
    elif problem == "zero":
        arr[:] = 0
    else:
        arr[:] = 0
        arr[0, 0, 0] = 5  # head-less image: one voxel differs from the background
    case.images["flair"] = arr
    with pytest.raises(BadVolumeError, match="BraTS20_Training_002"):
        case_input(case, tiny_config(["flair"]))


def test_postprocess_relabels_small_et_and_drops_small_islands():
    labels = np.zeros((30, 30, 30), np.uint8)
    labels[5:20, 5:20, 5:20] = 2
    labels[8:12, 8:12, 8:12] = 4  # 64 voxels of ET: kept
    labels[15, 15, 15] = 4  # 1-voxel ET island inside the tumour -> NCR
    labels[25:27, 25:27, 25:27] = 2  # 8-voxel isolated island -> removed
    out = postprocess_labels(labels)
    assert out[15, 15, 15] == 1
    assert np.all(out[8:12, 8:12, 8:12] == 4)
    assert np.all(out[25:27, 25:27, 25:27] == 0)
    assert np.array_equal(out[5:20, 5:20, 5:20] > 0, labels[5:20, 5:20, 5:20] > 0)


def test_postprocess_keeps_the_largest_component_even_if_small():
    labels = np.zeros((10, 10, 10), np.uint8)
    labels[2:4, 2:4, 2:4] = 2
    out = postprocess_labels(labels, min_component_mm3=1000)
    np.testing.assert_array_equal(out, labels)


def test_postprocess_drops_islands_under_a_fraction_of_the_largest():
    labels = np.zeros((40, 40, 40), np.uint8)
    labels[2:22, 2:22, 2:22] = 2  # 8000 voxels
    labels[30:37, 30:37, 30:37] = 2  # 343 voxels: 4 % of the largest
    labels[25:35, 2:12, 2:12] = 2  # 1000 voxels: 12.5 %
    out = postprocess_labels(labels)
    assert out[33, 33, 33] == 0 and out[30, 5, 5] == 2
    kept = postprocess_labels(labels, min_component_fraction=0.0)
    assert kept[33, 33, 33] == 2


def test_postprocess_thresholds_are_in_mm3():
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[2:12, 2:12, 2:12] = 2
    labels[15:17, 15:17, 15:17] = 2  # 8 voxels
    kw = {"min_component_mm3": 50, "min_component_fraction": 0.0}
    assert postprocess_labels(labels, (1, 1, 1), **kw)[15, 15, 15] == 0
    assert postprocess_labels(labels, (2, 2, 2), **kw)[15, 15, 15] == 2


def test_case_type_is_used_unchanged():
    case = phantom(3)
    assert isinstance(case, Case) and case.labels is not None
