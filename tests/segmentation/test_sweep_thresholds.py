"""bench/sweep_thresholds.py: its 0.5 row is radsurv's prediction; the closing by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from radsurv.data.case import Case
from radsurv.segmentation import load_model, segment_case

from .conftest import load_bench_script


@pytest.fixture(scope="module")
def sweep():
    return load_bench_script("sweep_thresholds")


@pytest.mark.parametrize("tta", [False, True])
def test_default_thresholds_reproduce_segment_case(
    sweep, trained_model: Path, tiny_cases: list[Case], tta: bool
):
    model = load_model(trained_model, device="cpu")
    case = tiny_cases[3]  # anisotropic spacing, shifted origin
    probs, box = sweep.case_probabilities(model, case, tta)
    variants = sweep.label_variants(probs, case.spacing, [0.3, 0.5], [0.5], 1)
    assert set(variants) == {"wt0.3_tc0.5", "wt0.3_tc0.5+close", "wt0.5_tc0.5", "wt0.5_tc0.5+close"}
    labels = np.zeros(case.shape, np.uint8)
    labels[box] = variants["wt0.5_tc0.5"]
    np.testing.assert_array_equal(labels, segment_case(model, case, tta=tta))


def test_closing_fills_a_one_voxel_gap_by_hand(sweep):
    labels = np.zeros((20, 20, 20), np.uint8)
    labels[5:15, 5:15, 5:10] = 2  # two oedema blocks either side of the plane x = 10
    labels[5:15, 5:15, 11:16] = 2
    labels[8:12, 8:12, 7:9] = 1  # a necrotic core stays what it is
    closed = sweep.close_whole_tumour(labels, iterations=1)
    added = (closed > 0) & (labels == 0)
    # the gap's interior (z, y in 6..13) is closed; its rim, open to the background, is not
    assert added.sum() == 64
    assert added[6:14, 6:14, 10].all() and not added[5, 5, 10]
    assert (closed[added] == 2).all()
    np.testing.assert_array_equal(closed[labels > 0], labels[labels > 0])
    assert (labels[5:15, 5:15, 10] == 0).all()  # the input is not modified
