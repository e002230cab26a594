"""CUDA path: mixed-precision training and inference, channels-last (skipped without CUDA).

The device-resident prediction path must agree with the CPU (the same code, float32) and with
the numpy normalisation, and must move only the raw images in and the uint8 labels out.
"""

from __future__ import annotations

import numpy as np
import pytest

from radsurv.segmentation import load_model, segment_case, train_segmentation

from .conftest import phantom, tiny_config


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
    tta = segment_case(model, tiny_cases[3], tta=True)
    tta_cpu = segment_case(load_model(result.best_path, device="cpu"), tiny_cases[3], tta=True)
    assert (tta == tta_cpu).mean() > 0.95


@pytest.mark.gpu
def test_cuda_normalisation_equals_numpy():
    import torch

    from radsurv.segmentation.inference import upload
    from radsurv.segmentation.preprocess import (
        bounding_box,
        foreground_mask,
        normalise,
        normalise_tensor,
    )

    case = phantom(2)
    # Kaggle-pack-like: whole-volume standardised float64, constant negative background
    images = np.stack(
        [(a - a.mean()) / a.std() for a in (case.images[m].astype(np.float64) for m in case.images)]
    )
    got, box = normalise_tensor(upload(list(images), torch.device("cuda")), "case")
    assert got.is_cuda and got.dtype == torch.float32
    np.testing.assert_allclose(got.cpu().numpy(), normalise(images), atol=2e-6, rtol=1e-6)
    assert box == bounding_box(foreground_mask(images), margin=2)


@pytest.mark.gpu
def test_cuda_fast_path_agrees_with_the_cpu(trained_model, tiny_cases):
    gpu = load_model(trained_model, device="cuda")
    cpu = load_model(trained_model, device="cpu")
    for case in tiny_cases:
        reference = segment_case(cpu, case)
        gpu.amp = True
        amp = segment_case(gpu, case)
        gpu.amp = False
        fp32 = segment_case(gpu, case)
        assert np.mean(fp32 != reference) < 1e-3  # cuDNN may use TF32 for float32 convs
        assert np.mean(amp != reference) < 0.02


@pytest.mark.gpu
def test_cuda_path_moves_raw_images_in_and_labels_out_only(trained_model, tiny_cases):
    import torch
    from torch.profiler import ProfilerActivity, profile

    model = load_model(trained_model, device="cuda")
    case = tiny_cases[1]
    segment_case(model, case)  # warm-up: CUDA context, cuDNN handles
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        segment_case(model, case)
        torch.cuda.synchronize()
    names = [e.name for e in prof.events()]
    to_device = [n for n in names if "Memcpy HtoD" in n]
    to_host = [n for n in names if "Memcpy DtoH" in n]
    # one copy per modality straight into the device stack; back: the checks/box, the labels
    assert len(to_device) == len(model.config.modalities), to_device
    assert len(to_host) == 2, to_host


@pytest.mark.gpu
def test_cuda_compiled_network_gives_the_eager_result():
    import torch

    from radsurv.segmentation.inference import GuardedCompiled

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU()).cuda()
    x = torch.randn(3, 2, 32, 32, device="cuda")
    guarded = GuardedCompiled(net)
    with torch.no_grad():
        np.testing.assert_allclose(
            guarded(x).cpu().numpy(), net(x).cpu().numpy(), atol=1e-2, rtol=1e-2
        )
