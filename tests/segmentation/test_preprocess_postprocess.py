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


def test_postprocess_fills_core_and_tumour_holes_slice_by_slice():
    labels = np.zeros((12, 30, 30), np.uint8)
    labels[2:10, 4:26, 4:26] = 2  # oedema
    labels[3:9, 8:22, 8:22] = 4  # an enhancing rim ...
    labels[3:9, 11:19, 11:19] = 0  # ... around a core the model missed (background)
    labels[3:9, 13:17, 13:17] = 2  # ... part of it called oedema
    labels[5, 1:3, 1:3] = 0
    out = postprocess_labels(labels)
    # every voxel inside the rim is necrotic core now; the rim stays ET
    assert np.all(out[3:9, 11:19, 11:19] == 1)
    assert np.all(out[3:9, 8:11, 8:22] == 4)
    # a hole of the whole tumour in one slice (not enclosed in 3D) becomes oedema
    labels2 = np.zeros((12, 30, 30), np.uint8)
    labels2[2:10, 4:26, 4:26] = 2
    labels2[2:10, 12:16, 12:16] = 0  # a tube through every slice: no 3D hole
    assert np.all(postprocess_labels(labels2)[2:10, 12:16, 12:16] == 2)
    # a notch open to the outside of the slice is not a hole
    labels2[2:10, 12:16, 4:16] = 0
    assert np.all(postprocess_labels(labels2)[2:10, 12:16, 4:16] == 0)
    # off: the holes stay
    kept = postprocess_labels(labels, fill_holes=False)
    assert np.all(kept[3:9, 11:13, 11:19] == 0)


def test_hole_filling_barely_changes_real_expert_masks(shared_data):
    """Expert WT and TC are solid: filling their holes must leave real reference masks nearly as
    they are (the islands rule is left out: it removes a real satellite lesion of pat0005)."""
    from radsurv.data.labels import region_mask
    from radsurv.data.nifti import read_nifti_case

    folders = sorted(p for p in (shared_data / "brats2015_deepmedic").iterdir() if p.is_dir())
    assert len(folders) == 4
    for folder in folders:
        case = read_nifti_case(
            folder,
            modality_patterns={"flair": "Flair_subtrMeanDivStd.nii.gz"},
            seg_pattern="OTMultiClass.nii.gz",
            label_convention="brats2015",
        )
        off = {"min_et_mm3": 0.0, "min_component_mm3": 0.0, "min_component_fraction": 0.0}
        out = postprocess_labels(case.labels, case.spacing, **off)
        changed = out != case.labels
        assert changed.any(), case.case_id  # expert masks have a few holes: the rule ran
        assert np.all(np.isin(out[changed], [1, 2])), case.case_id  # holes -> NCR or ED only
        for region in ("WT", "TC"):
            before, after = region_mask(case.labels, region), region_mask(out, region)
            added = np.sum(after & ~before) / np.sum(before)
            assert added < 0.01, (case.case_id, region, added)


def test_case_type_is_used_unchanged():
    case = phantom(3)
    assert isinstance(case, Case) and case.labels is not None
