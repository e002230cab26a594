"""Necrotic-core intensity augmentation (``ncr_intensity_aug``): what it changes in a training
sample, what it leaves alone, its config field, checkpoints, --resume and the CLI option."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from radsurv.errors import ConfigError
from radsurv.segmentation import CheckpointError, load_model, train_segmentation
from radsurv.segmentation.checkpoint import read_checkpoint
from radsurv.segmentation.datasets import (
    NCR_CONTRAST_RANGE,
    NCR_MEAN_RANGE,
    PreparedVolume,
    RandomPatchDataset,
    prepare_volume,
    randomise_ncr_intensity,
)

from .conftest import tiny_config, train_cli_option

FAST = {"batch_size": 4, "steps_per_epoch": 2, "progress": False, "device": "cpu"}
MODS = ["flair", "t1", "t1gd", "t2"]


def test_core_gets_a_drawn_mean_and_contrast_and_nothing_else_changes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3, 20, 20)).astype(np.float32)
    ncr = np.zeros((3, 20, 20), dtype=bool)
    ncr[:, 5:12, 6:15] = True
    means, contrasts = {m: [] for m in MODS}, {m: [] for m in MODS}
    for seed in range(300):
        out = randomise_ncr_intensity(x, ncr, MODS, np.random.default_rng(seed))
        np.testing.assert_array_equal(out[:, ~ncr], x[:, ~ncr])  # outside the core: unchanged
        for m, name in enumerate(MODS):
            before, after = x[m][ncr], out[m][ncr]
            # an affine map of the core's own values: deviations scaled by one positive factor
            dev_before, dev_after = before - before.mean(), after - after.mean()
            factor = (dev_after @ dev_before) / (dev_before @ dev_before)
            np.testing.assert_allclose(dev_after, factor * dev_before, atol=1e-5)
            means[name].append(after.mean())
            contrasts[name].append(factor)
    for name in MODS:
        lo, hi = NCR_MEAN_RANGE[name]
        got = np.array(means[name])
        assert lo - 1e-4 <= got.min() < lo + 0.3 and hi - 0.3 < got.max() <= hi + 1e-4
        c = np.array(contrasts[name])
        assert NCR_CONTRAST_RANGE[0] - 1e-3 <= c.min() < 0.6 and 1.4 < c.max() <= 1.5 + 1e-3
    # necrosis does not enhance: never above the head's mean by more than 0.5 sd on T1 / T1Gd
    assert max(means["t1gd"]) <= 0.5 + 1e-4 and max(means["flair"]) > 2.5
    assert randomise_ncr_intensity(x, np.zeros_like(ncr), MODS, rng) is x  # no core: as is


def _column_volume() -> PreparedVolume:
    """A volume whose necrotic core (TC without ET) is the same square column on every slice,
    with an enhancing rim (ET) and oedema around it: so every context slice has the core."""
    rng = np.random.default_rng(3)
    n_z, h, w = 9, 40, 40
    image = rng.normal(size=(2, n_z, h, w)).astype(np.float16)
    regions = np.zeros((3, n_z, h, w), dtype=np.uint8)
    regions[0, :, 8:32, 8:32] = 1  # WT
    regions[1, :, 12:28, 12:28] = 1  # TC
    regions[2, :, 12:28, 12:28] = 1  # ET rim ...
    regions[2, :, 16:24, 16:24] = 0  # ... around the core
    tumour = np.argwhere(regions[1, 2:-2] > 0).astype(np.int32) + [2, 0, 0]
    head = np.argwhere(np.ones((n_z, h, w), bool)).astype(np.int32)
    return PreparedVolume("column", image, regions, (1.0, 1.0, 1.0), tumour, head)


@pytest.mark.parametrize("k", [0, 1, 2])
def test_samples_change_in_the_core_of_every_slice_only(k):
    """Same seed with and without the augmentation: the same patch, labels, flips and
    intensity change; with it, exactly the core's voxels of each context slice differ."""
    vol = _column_volume()
    config = replace(tiny_config(["flair", "t1gd"]), context_slices=k)
    plain = RandomPatchDataset([vol], config, 30, seed=4, tumour_fraction=1.0)
    augmented = RandomPatchDataset(
        [vol], replace(config, ncr_intensity_aug=1.0), 30, seed=4, tumour_fraction=1.0
    )
    for i in range(30):
        (x0, y0), (x1, y1) = plain[i], augmented[i]
        assert torch.equal(y0, y1)
        ncr = ((y0[1] > 0) & (y0[2] == 0)).numpy()  # the column: the same on every slice
        assert ncr.any()
        changed = (x0 != x1).numpy().reshape(2, 2 * k + 1, *ncr.shape)
        for m in range(2):
            for d in range(2 * k + 1):
                np.testing.assert_array_equal(changed[m, d], ncr)
    # the share of augmented samples follows the setting; 0 draws nothing at all
    half = RandomPatchDataset(
        [vol], replace(config, ncr_intensity_aug=0.5), 200, seed=4, tumour_fraction=1.0
    )
    many = RandomPatchDataset([vol], config, 200, seed=4, tumour_fraction=1.0)
    share = np.mean([not torch.equal(half[i][0], many[i][0]) for i in range(200)])
    assert 0.4 < share < 0.6
    off = RandomPatchDataset(
        [vol], replace(config, ncr_intensity_aug=0.0), 30, seed=4, tumour_fraction=1.0
    )
    assert all(torch.equal(off[i][0], plain[i][0]) for i in range(30))


def test_three_d_patches_change_in_the_core_only(tiny_cases):
    config = tiny_config(["flair", "t1gd"], dim="3d")
    vols = [prepare_volume(c, config) for c in tiny_cases[:2]]
    plain = RandomPatchDataset(vols, config, 20, seed=1, tumour_fraction=1.0)
    augmented = RandomPatchDataset(
        vols, replace(config, ncr_intensity_aug=1.0), 20, seed=1, tumour_fraction=1.0
    )
    seen_core = 0
    for i in range(20):
        (x0, y0), (x1, y1) = plain[i], augmented[i]
        assert torch.equal(y0, y1)
        ncr = ((y0[1] > 0) & (y0[2] == 0)).numpy()
        changed = (x0 != x1).numpy()
        for m in range(2):
            np.testing.assert_array_equal(changed[m], ncr)
        seen_core += bool(ncr.any())
    assert seen_core > 0  # the phantoms' cores were reached


def test_config_field_checkpoint_resume_and_cli(tiny_cases, small_manifest, tmp_path):
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="--ncr-intensity-aug"):
            replace(tiny_config(), ncr_intensity_aug=bad).validate()
    out = tmp_path / "m.pt"
    train_segmentation(
        tiny_cases[:2],
        out,
        config=tiny_config(["flair", "t1gd"]),
        ncr_intensity_aug=0.4,
        epochs=1,
        val_fraction=0,
        **FAST,
    )
    assert read_checkpoint(out)[1].ncr_intensity_aug == 0.4
    assert load_model(out, device="cpu").config.ncr_intensity_aug == 0.4
    payload = torch.load(out, weights_only=True)  # written before the field existed: 0
    del payload["config"]["ncr_intensity_aug"]
    torch.save(payload, tmp_path / "old.pt")
    assert read_checkpoint(tmp_path / "old.pt")[1].ncr_intensity_aug == 0.0
    with pytest.raises(CheckpointError, match="ncr intensity aug 0.4"):
        train_segmentation(
            tiny_cases[:2], out, ncr_intensity_aug=0.2, epochs=2, resume=True, **FAST
        )

    cli_model = tmp_path / "cli.pt"
    config = train_cli_option(small_manifest, cli_model, "--ncr-intensity-aug", "0.3", "2")
    assert config.ncr_intensity_aug == 0.3
