"""Spatial augmentation (``spatial_aug``): the rotation and zoom against hand-computed geometry,
image and labels kept aligned, the other draws unchanged, its config field and the CLI."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from radsurv.errors import ConfigError
from radsurv.segmentation import CheckpointError, train_segmentation
from radsurv.segmentation.checkpoint import read_checkpoint
from radsurv.segmentation.datasets import (
    ROTATION_RANGE_DEG,
    SCALE_RANGE,
    PreparedVolume,
    RandomPatchDataset,
    prepare_volume,
    rotate_scale,
    rotated_crop_margin,
)

from .conftest import tiny_config, train_cli_option

FAST = {"batch_size": 4, "steps_per_epoch": 2, "progress": False, "device": "cpu"}


@pytest.mark.parametrize(("n_in", "n_out"), [(60, 32), (61, 33), (97, 41)])
def test_no_rotation_and_no_zoom_is_the_central_window(n_in, n_out):
    rng = np.random.default_rng(0)
    image = rng.normal(size=(2, 3, n_in, n_in)).astype(np.float32)
    regions = (rng.random((3, 3, n_in, n_in)) > 0.5).astype(np.uint8)
    x, r = rotate_scale(image, regions, 0.0, 1.0, [n_out, n_out])
    lo = (n_in - n_out) // 2  # an even difference: both centres fall on the same voxel
    window = (..., slice(lo, lo + n_out), slice(lo, lo + n_out))
    np.testing.assert_allclose(x, image[window], atol=1e-4)  # float32 grid: ~3e-5 voxel
    np.testing.assert_array_equal(r, regions[window])
    assert x.dtype == image.dtype and r.dtype == regions.dtype


def test_quarter_turn_is_rot90_of_the_window():
    """By hand: output (i, j) reads input (c - (j - c), c + (i - c)), i.e. np.rot90(w, -1)."""
    rng = np.random.default_rng(1)
    image = rng.normal(size=(1, 40, 40)).astype(np.float32)
    regions = (rng.random((3, 40, 40)) > 0.5).astype(np.uint8)
    x, r = rotate_scale(image, regions, 90.0, 1.0, [20, 20])
    window = (..., slice(10, 30), slice(10, 30))
    np.testing.assert_allclose(x[0], np.rot90(image[window][0], -1), atol=1e-4)
    np.testing.assert_array_equal(r, np.rot90(regions[window], -1, axes=(1, 2)))


@pytest.mark.parametrize(("angle", "scale"), [(17.0, 1.0), (-30.0, 0.85), (25.0, 1.25), (0, 2)])
def test_linear_ramp_lands_where_the_hand_computed_mapping_says(angle, scale):
    """Bilinear interpolation is exact on a linear image, so each output voxel must equal the
    ramp at the input point the rotation and zoom send it to (inside the input)."""
    n_in, n_out = 81, 41
    yy, xx = np.mgrid[0:n_in, 0:n_in].astype(np.float64)
    image = (0.7 * yy - 0.3 * xx + 5.0).astype(np.float32)[None]
    regions = np.zeros((3, n_in, n_in), dtype=np.uint8)
    x, _ = rotate_scale(image, regions, angle, scale, [n_out, n_out])
    c_in, c_out = (n_in - 1) / 2, (n_out - 1) / 2
    oy, ox = np.mgrid[0:n_out, 0:n_out] - c_out
    t = math.radians(angle)
    in_y = c_in + (math.cos(t) * oy - math.sin(t) * ox) / scale
    in_x = c_in + (math.sin(t) * oy + math.cos(t) * ox) / scale
    assert in_y.min() >= 0 and in_y.max() <= n_in - 1  # every voxel drawn from the input
    np.testing.assert_allclose(x[0], 0.7 * in_y - 0.3 * in_x + 5.0, atol=2e-3)


@pytest.mark.parametrize("scale", [0.85, 1.25, 2.0])
def test_zoom_scales_an_object_and_keeps_its_centre(scale):
    """A centred disc of radius 8 voxels comes out with radius 8 x scale (area x scale^2)."""
    n = 61
    yy, xx = np.mgrid[0:n, 0:n] - (n - 1) / 2
    disc = (yy**2 + xx**2 <= 8**2).astype(np.uint8)
    regions = np.stack([disc] * 3)
    _, r = rotate_scale(np.zeros((1, n, n), np.float32), regions, 0.0, scale, [41, 41])
    assert r[0].sum() == pytest.approx(math.pi * (8 * scale) ** 2, rel=0.06)
    cy, cx = np.argwhere(r[0]).mean(axis=0)
    assert cy == pytest.approx(20, abs=0.1) and cx == pytest.approx(20, abs=0.1)


def test_margin_keeps_every_output_voxel_inside_the_larger_crop():
    for n in (32, 96, 128, 97):
        big = n + 2 * rotated_crop_margin(n)
        corner = (n - 1) / 2 * math.sqrt(2) / SCALE_RANGE[0]  # 45 degrees, zoomed out most
        assert corner <= (big - 1) / 2


def _aligned_volume() -> PreparedVolume:
    """A volume whose image channels are its own WT / TC masks (x 4, minus 2 off the head)."""
    n_z, h, w = 7, 70, 70
    regions = np.zeros((3, n_z, h, w), dtype=np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    blob = (yy - 30) ** 2 / 15**2 + (xx - 38) ** 2 / 9**2 <= 1  # an ellipse, not symmetric
    regions[0, :, blob] = 1
    regions[1, :, blob & (yy < 30)] = 1
    regions[2, :, blob & (yy < 30) & (xx < 38)] = 1
    image = np.stack([regions[0] * 4.0 - 2, regions[1] * 4.0 - 2]).astype(np.float16)
    tumour = np.argwhere(regions[0, 1:-1] > 0).astype(np.int32) + [1, 0, 0]
    head = np.argwhere(np.ones((n_z, h, w), bool)).astype(np.int32)
    return PreparedVolume("aligned", image, regions, (1.0, 1.0, 1.0), tumour, head)


@pytest.mark.parametrize("k", [0, 1])
def test_rotated_samples_keep_image_and_labels_aligned_and_nested(k):
    vol = _aligned_volume()
    config = replace(tiny_config(["flair", "t1gd"]), context_slices=k, spatial_aug=1.0)
    ds = RandomPatchDataset([vol], config, 40, seed=5, tumour_fraction=1.0)
    for i in range(40):
        x, y = ds[i]
        x = x.numpy().reshape(2, 2 * k + 1, *y.shape[1:])[:, k]  # the labelled slice
        y = y.numpy()
        # the intensity augmentation scales by 0.9-1.1 and shifts by 0.1 at most, so each
        # channel above 1 is the mask it was made from (-2 outside it, 0 + shift beyond the
        # volume), except on the edge where bilinear meets nearest
        for c in range(2):
            assert np.mean((x[c] > 1) == (y[c] > 0)) > 0.97
        assert set(np.unique(y)) <= {0.0, 1.0}
        assert np.all(y[0] >= y[1]) and np.all(y[1] >= y[2])  # WT > TC > ET


def test_same_draws_otherwise_and_the_share_follows_the_setting(tiny_cases):
    config = tiny_config(["flair", "t1gd"])
    vols = [prepare_volume(c, config) for c in tiny_cases[:2]]
    plain = RandomPatchDataset(vols, config, 200, seed=2)
    half = RandomPatchDataset(vols, replace(config, spatial_aug=0.5), 200, seed=2)
    off = RandomPatchDataset(vols, replace(config, spatial_aug=0.0), 200, seed=2)
    same = [torch.equal(plain[i][0], half[i][0]) for i in range(200)]
    assert 0.4 < 1 - np.mean(same) < 0.6
    # a sample the augmentation skipped is the plain one: patch, flips and intensity alike
    assert all(torch.equal(plain[i][1], half[i][1]) for i in range(200) if same[i])
    assert all(torch.equal(plain[i][0], off[i][0]) for i in range(50))
    assert half[0][0].shape == plain[0][0].shape  # cut back to the configured patch


def test_three_d_patches_rotate_in_plane_only(tiny_cases):
    config = replace(tiny_config(["flair", "t1gd"], dim="3d"), spatial_aug=1.0)
    vols = [prepare_volume(c, config) for c in tiny_cases[:2]]
    ds = RandomPatchDataset(vols, config, 10, seed=1, tumour_fraction=1.0)
    for i in range(10):
        x, y = ds[i]
        assert x.shape[1:] == y.shape[1:] == tuple(config.patch_size)
        assert torch.all(y[0] >= y[1]) and torch.all(y[1] >= y[2])
    assert ROTATION_RANGE_DEG <= 45  # the crop margin is sized for at most 45 degrees


def test_config_field_checkpoint_resume_and_cli(tiny_cases, small_manifest, tmp_path):
    for bad in (-0.1, 1.5):
        with pytest.raises(ConfigError, match="--spatial-aug"):
            replace(tiny_config(), spatial_aug=bad).validate()
    out = tmp_path / "m.pt"
    config = tiny_config(["flair", "t1gd"])
    train_segmentation(
        tiny_cases[:2], out, config=config, spatial_aug=0.4, epochs=1, val_fraction=0, **FAST
    )
    assert read_checkpoint(out)[1].spatial_aug == 0.4
    payload = torch.load(out, weights_only=True)  # written before the field existed: 0
    del payload["config"]["spatial_aug"]
    torch.save(payload, tmp_path / "old.pt")
    assert read_checkpoint(tmp_path / "old.pt")[1].spatial_aug == 0.0
    with pytest.raises(CheckpointError, match="spatial aug 0.4"):
        train_segmentation(tiny_cases[:2], out, spatial_aug=0.2, epochs=2, resume=True, **FAST)

    config = train_cli_option(small_manifest, tmp_path / "cli.pt", "--spatial-aug", "0.3", "2")
    assert config.spatial_aug == 0.3
