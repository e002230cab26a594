"""N4 bias-field correction (``--bias-correction n4``): it removes a known field, training and
prediction apply the same correction, and the option travels in the checkpoint."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from radsurv.cli import app
from radsurv.data.hdf5 import read_volume, scan_pack, write_kaggle_volume
from radsurv.data.manifest import build_manifest, write_manifest
from radsurv.errors import ConfigError
from radsurv.segmentation import CheckpointError, load_model, segment_case, train_segmentation
from radsurv.segmentation.bias import n4_correct, n4_correct_channel
from radsurv.segmentation.checkpoint import read_checkpoint
from radsurv.segmentation.config import N4_ZSCORE, ZSCORE
from radsurv.segmentation.inference import segment_box
from radsurv.segmentation.networks import build_network
from radsurv.segmentation.preprocess import case_input, foreground_mask, normalise
from radsurv.segmentation.streaming import stream_volume

from .conftest import phantom, tiny_config

FAST = {"batch_size": 4, "steps_per_epoch": 2, "progress": False, "device": "cpu"}
SHAPE = (24, 48, 48)


def biased_phantom(seed: int = 0, offset: float = 0.0):
    """Two tissues (100 and 160) in an ellipsoid head, times a field rising 0.7 -> 1.3 along x,
    with 2 % noise; background 0 (or ``offset`` added everywhere)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(SHAPE)
    centre = [(n - 1) / 2 for n in SHAPE]
    r = sum(((a - c) / (n / 2.2)) ** 2 for a, c, n in zip((z, y, x), centre, SHAPE, strict=True))
    head = r < 1
    tissue_a = head & (y < SHAPE[1] / 2)
    truth = np.where(tissue_a, 100.0, 160.0)
    field = 0.7 + 0.6 * x / (SHAPE[2] - 1)
    image = truth * field * (1 + 0.02 * rng.standard_normal(SHAPE))
    return (np.where(head, image, 0) + offset).astype(np.float32), head, tissue_a


def separation(image: np.ndarray, head: np.ndarray, tissue_a: np.ndarray) -> float:
    """Contrast between the two tissues over their pooled within-tissue sd (scale-free)."""
    a, b = image[tissue_a], image[head & ~tissue_a]
    return abs(b.mean() - a.mean()) / np.sqrt((a.var() + b.var()) / 2)


def test_n4_removes_a_known_field_inside_the_head_only():
    image, head, tissue_a = biased_phantom()
    out = n4_correct_channel(image, head)
    assert out.dtype == np.float32 and out.shape == image.shape
    assert np.array_equal(out[~head], image[~head])  # the background, hence the head mask, stays
    cv = lambda im: im[tissue_a].std() / im[tissue_a].mean()  # noqa: E731
    assert cv(image) > 0.1 and cv(out) < 0.04  # the field made 12 % spread; 2 % is noise
    assert separation(out, head, tissue_a) > 2 * separation(image, head, tissue_a)
    assert np.array_equal(out, n4_correct_channel(image, head))  # deterministic


def test_n4_handles_zscored_images_with_negative_values():
    image, head, tissue_a = biased_phantom()
    z = (image - image[head].mean()) / image[head].std()
    z[~head] = -3.0  # a z-scored file's constant background
    out = n4_correct_channel(z.astype(np.float32), head)
    assert np.isfinite(out).all()
    assert separation(out, head, tissue_a) > 2 * separation(z, head, tissue_a)


def test_case_input_and_inference_apply_the_same_correction(tiny_cases):
    case = tiny_cases[0]
    plain = tiny_config(["flair", "t1gd"])
    n4 = replace(plain, normalisation=N4_ZSCORE).validate()
    raw = [case.images["flair"], case.images["t1gd"]]
    corrected = n4_correct(raw, foreground_mask(np.stack(raw)), case.spacing)
    assert not np.allclose(corrected[0], raw[0])
    # training input: the corrected images, z-scored
    np.testing.assert_array_equal(case_input(case, n4), normalise(np.stack(corrected)))
    # prediction: the same network on the raw images with the N4 config, or on the corrected
    # images with the plain config, gives the same labels
    net = build_network(plain).eval()
    dev = torch.device("cpu")
    with_n4, box = segment_box(net, raw, n4, dev)
    by_hand, box2 = segment_box(net, corrected, plain, dev)
    assert box == box2
    np.testing.assert_array_equal(with_n4, by_hand)
    # ... and the correction changed what the network saw (the check above is not vacuous)
    uncorrected, _ = segment_box(net, raw, plain, dev)
    assert 0 < np.count_nonzero(with_n4) < with_n4.size
    assert not np.array_equal(with_n4, uncorrected)


def test_training_stores_n4_and_prediction_uses_it(tiny_cases, tmp_path):
    out = tmp_path / "m.pt"
    train_segmentation(
        tiny_cases[:3],
        out,
        config=tiny_config(["flair", "t1gd"]),
        bias_correction="n4",
        epochs=1,
        **FAST,
    )
    assert read_checkpoint(out)[1].normalisation == N4_ZSCORE
    model = load_model(out, device="cpu")
    labels = segment_case(model, tiny_cases[3])
    assert labels.shape == tiny_cases[3].shape
    with pytest.raises(CheckpointError, match="normalisation n4_zscore_foreground; the options"):
        train_segmentation(
            tiny_cases[:3], out, epochs=2, resume=True, bias_correction="none", **FAST
        )
    result = train_segmentation(tiny_cases[:3], out, epochs=2, resume=True, **FAST)
    assert len(result.history) == 2
    plain = tmp_path / "plain.pt"
    train_segmentation(tiny_cases[:3], plain, modalities=["flair", "t1gd"], epochs=1, **FAST)
    assert read_checkpoint(plain)[1].normalisation == ZSCORE  # the default stays plain
    with pytest.raises(ConfigError, match="--bias-correction 'n5' unknown; choose none or n4"):
        train_segmentation(tiny_cases[:3], tmp_path / "x.pt", bias_correction="n5", **FAST)


def test_stream_loader_refuses_n4(tmp_path):
    folder = tmp_path / "data"
    write_kaggle_volume(phantom(1), folder, 1)
    case = read_volume(next(iter(scan_pack(folder).values())))
    config = replace(tiny_config(["flair", "t1gd"]), normalisation=N4_ZSCORE).validate()
    with pytest.raises(ConfigError, match="needs whole volumes"):
        stream_volume(case, config)
    with pytest.raises(ConfigError, match="--loader stream reads single slices"):
        train_segmentation(
            [case], tmp_path / "m.pt", bias_correction="n4", loader="stream", epochs=1, **FAST
        )


def test_cli_passes_bias_correction(tmp_path):
    from radsurv.data.synthetic import synthesize_cohort

    cohort = synthesize_cohort(tmp_path / "cohort", n_cases=2, seed=1, shape=(12, 48, 48))
    manifest = tmp_path / "data_manifest.csv"
    write_manifest(build_manifest(cohort.root, relative_to=tmp_path, checksum=False), manifest)
    model = tmp_path / "model.pt"
    args = "--epochs 1 --steps-per-epoch 1 --batch-size 2 --modalities flair,t1gd --device cpu"
    base = ["segment", "train", "-m", str(manifest), "-o", str(model), "--no-progress"]
    res = CliRunner().invoke(
        app, [*base, "--bias-correction", "n4", "--val-fraction", "0", *args.split()]
    )
    assert res.exit_code == 0, res.output
    assert read_checkpoint(model)[1].normalisation == N4_ZSCORE
    res = CliRunner().invoke(app, [*base, "--bias-correction", "n3", *args.split()])
    assert res.exit_code != 0 and "--bias-correction 'n3' unknown" in res.output
