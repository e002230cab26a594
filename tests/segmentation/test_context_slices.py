"""2.5D input (``context_slices``): neighbouring axial slices enter with each 2D slice.

The channel layout is checked against a hand-built stack (channel ``m * (2K + 1) + K + d`` is
modality ``m`` at slice offset ``d``, zero beyond the volume) for the three places that build
it: training samples in memory, streamed from a pack, and whole-volume inference.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from radsurv.data.hdf5 import read_volume, scan_pack, write_kaggle_volume
from radsurv.errors import ConfigError
from radsurv.segmentation import (
    CheckpointError,
    SegmentationConfig,
    load_model,
    train_segmentation,
)
from radsurv.segmentation.checkpoint import read_checkpoint, save_checkpoint
from radsurv.segmentation.datasets import RandomPatchDataset, prepare_volume
from radsurv.segmentation.inference import (
    normalise_arrays,
    probabilities_tensor,
    segment_box,
)
from radsurv.segmentation.networks import build_network
from radsurv.segmentation.preprocess import regions_to_labels_tensor
from radsurv.segmentation.streaming import StreamingSliceDataset, stream_volume

from .conftest import phantom, tiny_config, train_cli_option

FAST = {"batch_size": 4, "steps_per_epoch": 2, "progress": False, "device": "cpu"}


def hand_stack(image: np.ndarray, z: int, k: int) -> np.ndarray:
    """(C * (2k + 1), y, x) input of slice ``z`` of a (C, z, y, x) image, built slice by slice."""
    n_mod, n_z = image.shape[:2]
    out = np.zeros((n_mod * (2 * k + 1), *image.shape[2:]), dtype=np.float32)
    for m in range(n_mod):
        for d in range(-k, k + 1):
            if 0 <= z + d < n_z:
                out[m * (2 * k + 1) + k + d] = image[m, z + d]
    return out


def with_context(config: SegmentationConfig, k: int) -> SegmentationConfig:
    return replace(config, context_slices=k).validate()


def test_config_defaults_channels_and_validation():
    plain_cpu = SegmentationConfig.default("2d", ["flair", "t1gd"], "cpu")
    plain_gpu = SegmentationConfig.default("2d", ["flair", "t1", "t1gd", "t2"], "cuda")
    assert plain_cpu.context_slices == plain_gpu.context_slices == 0  # 2.5D is opt-in
    assert plain_cpu.in_channels == 2
    cpu, gpu = with_context(plain_cpu, 1), with_context(plain_gpu, 1)
    assert (cpu.depth, cpu.in_channels) == (3, 6) and gpu.in_channels == 12
    three_d = SegmentationConfig.default("3d", ["flair", "t1gd"], "cpu")
    assert three_d.context_slices == 0 and three_d.in_channels == 2
    assert build_network(cpu)(torch.zeros(1, 6, 32, 32)).shape == (1, 3, 32, 32)
    for bad in (-1, 9, 1.5, True):
        with pytest.raises(ConfigError, match="--context-slices"):
            replace(cpu, context_slices=bad).validate()
    with pytest.raises(ConfigError, match="2d models only"):
        replace(three_d, context_slices=1).validate()
    # a checkpoint config written before the field existed is plain 2D
    old = cpu.to_dict()
    del old["context_slices"]
    assert SegmentationConfig.from_dict(old).context_slices == 0


@pytest.fixture(scope="module")
def volumes(tiny_cases):
    config = tiny_config()
    return [prepare_volume(c, config) for c in tiny_cases[:2]], config


@pytest.mark.parametrize("k", [1, 2])
def test_training_slab_is_the_hand_built_stack(volumes, k):
    vols, config = volumes
    ds = RandomPatchDataset(vols, with_context(config, k), 4, augment=False)
    vol = vols[0]
    n_z, h, w = vol.image.shape[1:]
    for z in (0, 1, n_z // 2, n_z - 1):  # the first and last slices have zero neighbours
        x, regions = ds._patch(vol, z, [0, 0], [h, w])
        np.testing.assert_array_equal(x, hand_stack(vol.image.astype(np.float32), z, k))
        np.testing.assert_array_equal(regions[:, k], vol.regions[:, z])
        for d in range(-k, k + 1):  # the context slices' regions, zero beyond the box
            inside = 0 <= z + d < n_z
            want = vol.regions[:, z + d] if inside else np.zeros_like(vol.regions[:, 0])
            np.testing.assert_array_equal(regions[:, k + d], want)
    # a patch reaching beyond the box is zero there, as in plain 2D
    x, _ = ds._patch(vol, 2, [-5, w - 10], [16, 16])
    full = hand_stack(vol.image.astype(np.float32), 2, k)
    np.testing.assert_array_equal(x[:, 5:, :10], full[:, :11, w - 10 :])
    assert not x[:, :5].any() and not x[:, :, 10:].any()


def test_context_only_adds_channels_to_the_plain_samples(volumes):
    """Same seed: K=1 draws the same volume, centre, jitter, flips, intensity change and dropped
    modalities as K=0; the centre slices are the K=0 sample, a dropped modality loses all its
    slices."""
    vols, config = volumes
    for dropout in (0.0, 0.5):
        plain = RandomPatchDataset(
            vols, replace(with_context(config, 0), modality_dropout=dropout), 60, seed=2
        )
        context = RandomPatchDataset(
            vols, replace(with_context(config, 1), modality_dropout=dropout), 60, seed=2
        )
        plain.set_epoch(3), context.set_epoch(3)
        n_dropped = 0
        for i in range(60):
            (x0, y0), (x1, y1) = plain[i], context[i]
            assert x1.shape == (12, *x0.shape[1:])
            assert torch.equal(y0, y1)
            assert torch.equal(x1[1::3], x0)  # the centre slice of every modality
            for m in range(4):
                if not x0[m].any():
                    n_dropped += 1
                    assert not x1[3 * m : 3 * m + 3].any()
        assert (n_dropped > 20) == (dropout > 0)


@pytest.fixture(scope="module")
def pack_cases(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pack") / "data"
    for v in (1, 2):
        write_kaggle_volume(phantom(v), folder, v)
    return [read_volume(pv) for _, pv in sorted(scan_pack(folder).items())]


def test_streamed_samples_equal_in_memory_samples(pack_cases):
    config = replace(with_context(tiny_config(["flair", "t1gd", "t2"]), 2), modality_dropout=0.3)
    mem = RandomPatchDataset([prepare_volume(c, config) for c in pack_cases], config, 40, seed=4)
    st = StreamingSliceDataset([stream_volume(c, config) for c in pack_cases], config, 40, seed=4)
    for i in range(40):
        (xm, ym), (xs, ys) = mem[i], st[i]
        assert xs.shape == (15, 32, 32)
        torch.testing.assert_close(xs, xm, atol=2e-3 * float(xm.abs().max()), rtol=0)
        assert torch.equal(ys, ym)


@pytest.mark.parametrize("batch", [1, 5, 64])
def test_inference_feeds_the_hand_built_stack(batch):
    config = with_context(tiny_config(["flair", "t1gd"]), 1)
    torch.manual_seed(0)
    net = build_network(config).eval()
    rng = np.random.default_rng(1)
    image = rng.normal(size=(2, 7, 32, 32)).astype(np.float32)
    probs = probabilities_tensor(
        net, torch.from_numpy(image), config, torch.device("cpu"), batch_size=batch
    )
    with torch.no_grad():
        expected = torch.sigmoid(
            net(torch.from_numpy(np.stack([hand_stack(image, z, 1) for z in range(7)])))
        )
    torch.testing.assert_close(probs, expected.transpose(0, 1), atol=1e-5, rtol=1e-4)


def test_missing_modality_is_a_zero_modality_with_all_its_slices(tiny_cases):
    """A missing modality fills its modality slot (all 2K + 1 of its channels) with zeros."""
    config = with_context(tiny_config(["flair", "t1gd"]), 1)
    torch.manual_seed(0)
    net = build_network(config).eval()
    case = tiny_cases[0]
    dev = torch.device("cpu")
    labels, box = segment_box(net, [case.images["t1gd"]], config, dev, names=["t1gd"])
    present, box_t1gd = normalise_arrays([case.images["t1gd"]], ["t1gd"], case.case_id, dev)
    assert box == box_t1gd
    image = torch.zeros((2, *present[(slice(None), *box)].shape[1:]))
    image[1] = present[(slice(None), *box)][0]  # t1gd is the model's second modality
    probs = probabilities_tensor(net, image, config, dev)
    expected = regions_to_labels_tensor(probs > config.threshold).numpy()
    np.testing.assert_array_equal(labels, expected)
    # swapping the slot changes the input the network sees
    swapped = probabilities_tensor(net, image.flip(0), config, dev)
    assert not torch.allclose(swapped, probs)


def test_training_predicting_and_resuming_with_context(tiny_cases, tmp_path):
    out = tmp_path / "m.pt"
    train_segmentation(
        tiny_cases[:3],
        out,
        config=tiny_config(["flair", "t1gd"]),
        context_slices=1,
        epochs=1,
        **FAST,
    )
    model = load_model(out, device="cpu")
    assert model.config.context_slices == 1 and model.config.in_channels == 6
    _, saved = read_checkpoint(out)
    assert saved.context_slices == 1
    with pytest.raises(CheckpointError, match="context slices 1; the options ask for 0"):
        train_segmentation(
            tiny_cases[:3], out, epochs=2, resume=True, context_slices=0, seed=1, **FAST
        )
    # resuming with the same K (or without the option) continues
    result = train_segmentation(
        tiny_cases[:3], out, epochs=2, resume=True, context_slices=1, seed=1, **FAST
    )
    assert len(result.history) == 2
    # plain 2D on request, and a checkpoint from before the field existed reads as plain 2D
    plain = tmp_path / "plain.pt"
    train_segmentation(
        tiny_cases[:3], plain, modalities=["flair", "t1gd"], context_slices=0, epochs=1, **FAST
    )
    payload, config = read_checkpoint(plain)
    assert config.context_slices == 0 and config.in_channels == 2
    payload["config"] = {k: v for k, v in payload["config"].items() if k != "context_slices"}
    old = save_checkpoint(tmp_path / "old.pt", payload)
    old_model = load_model(old, device="cpu")
    assert old_model.config.context_slices == 0
    with pytest.raises(ConfigError, match="2d models only"):
        train_segmentation(tiny_cases[:3], tmp_path / "x.pt", dim="3d", context_slices=1, **FAST)


def test_cli_trains_the_asked_context(small_manifest, tmp_path):
    config = train_cli_option(small_manifest, tmp_path / "model.pt", "--context-slices", "2", "9")
    assert config.context_slices == 2
