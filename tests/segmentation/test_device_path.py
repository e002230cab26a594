"""The device-resident prediction path against the host (numpy) path it replaces, on the CPU.

The same code runs on CUDA (tests/segmentation/test_gpu.py); here it must agree with numpy
normalisation, host thresholds and whole-volume post-processing.
"""

from __future__ import annotations

import copy
import logging

import numpy as np
import pytest
import torch

from radsurv.segmentation import BadVolumeError, load_model, postprocess_labels, segment_case
from radsurv.segmentation.inference import GuardedCompiled, infer_probabilities, upload
from radsurv.segmentation.preprocess import (
    bounding_box,
    case_input,
    foreground_mask,
    normalise,
    normalise_tensor,
    regions_to_labels,
    regions_to_labels_tensor,
)

from .conftest import phantom


def _kaggle_like(case):
    """The Kaggle pack standardises whole volumes: a constant negative background, float64."""
    for m, arr in case.images.items():
        case.images[m] = ((arr - arr.mean()) / arr.std()).astype(np.float64)
    return case


def _host_path(model, case):
    """Segmentation as it was done before the device path: numpy in, numpy out."""
    image = case_input(case, model.config)
    probs = infer_probabilities(model.members, image, model.config, model.device, model.amp)
    return postprocess_labels(
        regions_to_labels(probs > model.config.threshold), case.spacing, crop=False
    )


@pytest.mark.parametrize("kind", ["zero_background", "kaggle_float64", "no_background", "int16"])
def test_tensor_normalisation_equals_numpy(kind):
    case = phantom(2)
    images = np.stack([case.images[m] for m in ("flair", "t1gd", "t2")])
    if kind == "kaggle_float64":
        images = np.stack([(a - a.mean()) / a.std() for a in images.astype(np.float64)])
    elif kind == "no_background":  # no value shared by half the corners: the head is everything
        images = images + np.random.default_rng(0).normal(0, 1, images.shape).astype(np.float32)
    elif kind == "int16":
        images = np.round(images * 100).astype(np.int16)
    expected = normalise(images.astype(np.float64) if kind == "int16" else images)
    tensor = upload(list(images), torch.device("cpu"))
    assert tensor.dtype == (torch.float64 if kind == "kaggle_float64" else torch.float32)
    got, box = normalise_tensor(tensor, "case")
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-6, rtol=1e-6)
    assert box == bounding_box(foreground_mask(images), margin=2)
    if kind == "no_background":
        assert box == tuple(slice(0, n) for n in images.shape[1:])


def test_tensor_labels_equal_numpy():
    regions = np.random.default_rng(1).random((3, 5, 6, 7)) > 0.6
    np.testing.assert_array_equal(
        regions_to_labels_tensor(torch.from_numpy(regions)).numpy(), regions_to_labels(regions)
    )


@pytest.mark.parametrize("problem", ["nan", "zero", "constant", "inf"])
def test_device_path_refuses_bad_volumes_like_the_host_path(trained_model, problem):
    model = load_model(trained_model, device="cpu")
    case = phantom(2)
    arr = case.images["t1gd"].copy()
    if problem in ("nan", "inf"):
        arr[2, 3, 4] = np.nan if problem == "nan" else np.inf
        arr[5, 3, 4] = np.nan
    elif problem == "zero":
        arr[:] = 0
    case.images["t1gd"] = arr
    if problem == "constant":  # every image constant except one voxel: no head to speak of
        for m in ("flair", "t1gd"):
            case.images[m] = np.zeros_like(case.images[m])
            case.images[m][0, 0, 0] = 5
    with pytest.raises(BadVolumeError) as host:
        case_input(case, model.config)
    with pytest.raises(BadVolumeError) as path:
        segment_case(model, case)
    # the tensor normalisation (the CUDA path) raises the same errors
    names = model.config.modalities
    raw = upload([case.images[m] for m in names], torch.device("cpu"))
    with pytest.raises(BadVolumeError) as tensor:
        normalise_tensor(raw, case.case_id, names)
    first = str(host.value).split(";")[0]
    assert str(path.value).split(";")[0] == first == str(tensor.value).split(";")[0]
    assert "BraTS20_Training_002" in first


@pytest.mark.parametrize("index", [1, 4])
def test_device_path_equals_the_host_path(trained_model, tiny_cases, index):
    model = load_model(trained_model, device="cpu")
    case = _kaggle_like(phantom(index)) if index == 4 else tiny_cases[0]
    new = segment_case(model, case)
    old = _host_path(model, case)
    assert (old > 0).any()
    # float32 on both sides; summation order may move a probability by ~1e-7 across 0.5
    assert np.mean(new != old) < 1e-4


def test_postprocess_inside_the_tumour_box_equals_the_whole_volume():
    rng = np.random.default_rng(7)
    for trial in range(6):
        labels = np.zeros((24, 40, 40), np.uint8)
        for _ in range(rng.integers(1, 8)):  # random boxes of ED with ET and NCR inside
            lo = rng.integers(0, [20, 34, 34])
            hi = lo + rng.integers(1, [8, 12, 12])
            labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]] = rng.choice([1, 2, 4])
        labels[rng.random(labels.shape) < 0.002] = 4  # specks
        spacing = (1.0, 1.0, 1.0) if trial % 2 else (0.9, 1.1, 2.5)
        whole = postprocess_labels(labels, spacing, crop=False)
        np.testing.assert_array_equal(postprocess_labels(labels, spacing), whole)
        assert trial < 3 or not np.array_equal(whole, labels)  # the rules did something
    empty = np.zeros((4, 5, 6), np.uint8)
    np.testing.assert_array_equal(postprocess_labels(empty), empty)


def test_batch_size_does_not_change_the_result(trained_model, tiny_cases):
    model = load_model(trained_model, device="cpu")
    a = segment_case(model, tiny_cases[2], batch_size=1)
    b = segment_case(model, tiny_cases[2], batch_size=64)
    assert np.mean(a != b) < 1e-4


def test_2d_models_run_channels_last_on_the_cpu_with_the_contiguous_result(
    trained_model, tiny_cases
):
    model = load_model(trained_model, device="cpu")
    (network,) = model.members
    convs = [m.weight for m in network.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    # the previous path: the same weights, contiguous, on contiguous slices
    contiguous = copy.deepcopy(network).to(memory_format=torch.contiguous_format)
    image = torch.from_numpy(normalise(case_input(tiny_cases[1], model.config)))
    slices = image.permute(1, 0, 2, 3).contiguous()  # (z, C, y, x): every axial slice
    with torch.inference_mode():
        expected = contiguous(slices)
        got = network(slices.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.ReLU())


@pytest.mark.slow
def test_compiled_network_gives_the_eager_result():
    net = _net()
    x = torch.randn(3, 2, 16, 16)
    guarded = GuardedCompiled(net, backend="eager")
    np.testing.assert_allclose(guarded(x).detach(), net(x).detach(), atol=1e-6)
    assert not guarded.failed
    assert list(guarded.state_dict()) == ["eager.0.weight", "eager.0.bias"]


def test_a_failing_compiler_falls_back_to_eager(caplog):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("no compiler here")

    net = _net()
    x = torch.randn(2, 2, 8, 8)
    guarded = GuardedCompiled(net, backend=broken_backend)
    with caplog.at_level(logging.WARNING, logger="radsurv.segmentation.inference"):
        out = guarded(x)
    assert guarded.failed and "uncompiled" in caplog.text
    np.testing.assert_array_equal(out.detach(), net(x).detach())


def test_load_model_can_compile_every_member(trained_model):
    model = load_model(trained_model, device="cpu", compile=True)
    assert all(isinstance(m, GuardedCompiled) for m in model.members)
    assert model.network is model.members[0]
