"""CUDA path: mixed-precision training and inference, channels-last (skipped without CUDA)."""

from __future__ import annotations

import numpy as np
import pytest

from radsurv.segmentation import load_model, segment_case, train_segmentation

from .conftest import tiny_config


@pytest.mark.gpu
@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_cuda_train_and_segment(tiny_cases, tmp_path, dim):
    import torch

    result = train_segmentation(
        tiny_cases[:2],
        tmp_path / "m.pt",
        config=tiny_config(dim=dim),
        epochs=2,
        device="cuda",
        val_fraction=0.0,
        batch_size=4,
        steps_per_epoch=3,
        progress=False,
    )
    model = load_model(result.best_path, device="cuda")
    assert model.device.type == "cuda"
    labels = segment_case(model, tiny_cases[3])
    assert labels.shape == tiny_cases[3].shape and set(np.unique(labels)) <= {0, 1, 2, 4}
    # the same checkpoint on the CPU gives (nearly) the same mask: AMP changes little
    cpu = segment_case(load_model(result.best_path, device="cpu"), tiny_cases[3])
    assert (cpu == labels).mean() > 0.95
    assert torch.cuda.max_memory_allocated() > 0
