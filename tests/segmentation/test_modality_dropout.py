"""Modality dropout: channel zeroing on training samples, its config field and training with it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from radsurv.errors import ConfigError
from radsurv.segmentation import CheckpointError, load_model, train_segmentation
from radsurv.segmentation.checkpoint import read_checkpoint
from radsurv.segmentation.datasets import RandomPatchDataset, drop_modalities, prepare_volume

from .conftest import tiny_config

FAST = {"batch_size": 4, "steps_per_epoch": 2, "progress": False, "device": "cpu"}


@pytest.fixture(scope="module")
def volumes(tiny_cases):
    config = tiny_config()
    return [prepare_volume(c, config) for c in tiny_cases[:2]], config


def _samples(volumes, p: float, n: int = 300, epoch: int = 0) -> list[np.ndarray]:
    vols, config = volumes
    ds = RandomPatchDataset(vols, replace(config, modality_dropout=p), n, seed=5)
    ds.set_epoch(epoch)
    return [ds[i] for i in range(n)]


def test_dropout_zeroes_whole_channels_at_the_expected_rate(volumes):
    p, n_channels = 0.5, 4
    samples = _samples(volumes, p)
    dropped = np.array([[not x[c].any() for c in range(n_channels)] for x, _ in samples])
    assert not dropped.all(axis=1).any()  # never every channel of a sample
    expected = p - p**n_channels / n_channels  # one channel is kept when all are drawn
    assert abs(dropped.mean() - expected) < 0.05
    per_channel = dropped.mean(axis=0)
    assert per_channel.min() > 0.3 and per_channel.max() < 0.65


def test_dropout_changes_nothing_but_the_dropped_channels(volumes):
    plain = _samples(volumes, 0.0, n=40)
    dropped = _samples(volumes, 0.6, n=40)
    again = _samples(volumes, 0.6, n=40)
    for (x0, y0), (x1, y1), (x2, _) in zip(plain, dropped, again, strict=True):
        assert torch.equal(y0, y1)  # same patch, same labels
        assert torch.equal(x1, x2)  # deterministic under the seed
        for c in range(x0.shape[0]):
            assert torch.equal(x1[c], x0[c]) or not x1[c].any()
    other_epoch = _samples(volumes, 0.6, n=40, epoch=1)
    zeros = [[not x[c].any() for c in range(4)] for x, _ in dropped]
    assert zeros != [[not x[c].any() for c in range(4)] for x, _ in other_epoch]
    # P = 0 draws nothing: the samples are exactly those of a config without the field set
    vols, config = volumes
    base = RandomPatchDataset(vols, config, 40, seed=5)
    assert all(torch.equal(base[i][0], plain[i][0]) for i in range(40))


def test_drop_modalities_keeps_one_channel_when_all_are_drawn():
    x = np.ones((3, 4, 4), dtype=np.float32)
    out, dropped = drop_modalities(x, 0.999999, np.random.default_rng(0))
    assert dropped.sum() == 2 and out[~dropped].all() and not out[dropped].any()
    assert x.all()  # the input is not modified


def test_config_field_validation_and_checkpoint_round_trip(tiny_cases, tmp_path):
    with pytest.raises(ConfigError, match=r"must lie in \[0, 1\)"):
        replace(tiny_config(), modality_dropout=1.0).validate()
    with pytest.raises(ConfigError, match="at least 2 input modalities"):
        replace(tiny_config(["flair"]), modality_dropout=0.2).validate()
    out = tmp_path / "m.pt"
    train_segmentation(
        tiny_cases[:2],
        out,
        config=tiny_config(["flair", "t1gd"]),
        modality_dropout=0.3,
        epochs=1,
        val_fraction=0,
        **FAST,
    )
    assert read_checkpoint(out)[1].modality_dropout == 0.3
    assert load_model(out, device="cpu").config.modality_dropout == 0.3
    # a checkpoint written before the field existed reads as 0
    payload = torch.load(out, weights_only=True)
    del payload["config"]["modality_dropout"]
    torch.save(payload, tmp_path / "old.pt")
    assert read_checkpoint(tmp_path / "old.pt")[1].modality_dropout == 0.0
    with pytest.raises(CheckpointError, match="modality dropout 0.3"):
        train_segmentation(tiny_cases[:2], out, modality_dropout=0.5, epochs=2, resume=True, **FAST)


def test_training_with_dropout_still_learns(tiny_cases, tmp_path):
    result = train_segmentation(
        tiny_cases[:2],
        tmp_path / "m.pt",
        config=tiny_config(["flair", "t1gd", "t2"]),
        modality_dropout=0.4,
        epochs=6,
        val_fraction=0,
        seed=2,
        lr=1e-2,
        **{**FAST, "steps_per_epoch": 4},
    )
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-2:]) < 0.93 * np.mean(losses[:2]), losses
