"""Mirror test-time augmentation and K-fold ensembles at prediction time (CPU, tiny data)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from radsurv.cli import app
from radsurv.data.manifest import build_manifest, write_manifest
from radsurv.data.synthetic import synthesize_cohort
from radsurv.segmentation import CheckpointError, SegmentationModel, load_model, segment_case
from radsurv.segmentation.checkpoint import read_checkpoint, save_checkpoint
from radsurv.segmentation.inference import infer_probabilities, tta_flips
from radsurv.segmentation.preprocess import case_input

from .conftest import TINY_SHAPE, tiny_config


def _payload(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _ensemble(folder: Path, members: dict[str, dict], config: dict) -> Path:
    """An ensemble index written by hand the way train_segmentation(folds=K) writes one."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, payload in members.items():
        save_checkpoint(folder / name, payload)
    return save_checkpoint(
        folder / "model.pt",
        {
            "kind": "ensemble",
            "members": list(members),
            "config": config,
            "folds": len(members),
            "train_cases": ["BraTS20_Training_001", "BraTS20_Training_002"],
            "seed": 0,
        },
    )


def _perturbed(payload: dict, seed: int) -> dict:
    gen = torch.Generator().manual_seed(seed)
    state = {
        k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
        for k, v in payload["state_dict"].items()
    }
    return {**payload, "state_dict": state}


@pytest.mark.parametrize("dim", ["2d", "3d"])
def test_tta_of_a_flip_equivariant_network_equals_plain(tiny_cases, dim):
    # a 1x1(x1) convolution treats every voxel alike, so mirroring cannot change its output
    config = tiny_config(["flair", "t1gd"], dim=dim)
    conv = torch.nn.Conv2d if dim == "2d" else torch.nn.Conv3d
    torch.manual_seed(0)
    net = conv(config.in_channels, 3, kernel_size=1)
    image = case_input(tiny_cases[0], config)
    plain = infer_probabilities(net, image, config, torch.device("cpu"))
    tta = infer_probabilities(net, image, config, torch.device("cpu"), tta=True)
    assert len(tta_flips(dim)) == (4 if dim == "2d" else 8)
    assert plain.std() > 0.01  # not a constant output
    np.testing.assert_allclose(tta, plain, atol=1e-5)


def test_tta_is_the_mean_of_flipped_predictions(trained_model, tiny_cases):
    model = load_model(trained_model, device="cpu")
    image = case_input(tiny_cases[1], model.config)
    dev = torch.device("cpu")
    hand = []
    for axes in [(), (2,), (3,), (2, 3)]:  # y, x and both, on (C, z, y, x)
        flipped = np.flip(image, axes) if axes else image
        probs = infer_probabilities(model.network, np.ascontiguousarray(flipped), model.config, dev)
        hand.append(np.flip(probs, axes) if axes else probs)
    tta = infer_probabilities(model.network, image, model.config, dev, tta=True)
    np.testing.assert_allclose(tta, np.mean(hand, axis=0), atol=1e-5)
    # the trained UNet is not mirror-symmetric: TTA really changes the probabilities
    assert np.abs(tta - hand[0]).max() > 1e-3
    labels = segment_case(model, tiny_cases[1], tta=True)
    assert labels.shape == tiny_cases[1].shape and set(np.unique(labels)) <= {0, 1, 2, 4}


def test_ensemble_of_identical_members_equals_the_single_model(trained_model, tiny_cases, tmp_path):
    payload = _payload(trained_model)
    index = _ensemble(tmp_path, {"m.fold1.pt": payload, "m.fold2.pt": payload}, payload["config"])
    index_payload, config = read_checkpoint(index)
    assert index_payload["kind"] == "ensemble" and config.modalities == ["flair", "t1gd"]
    single = load_model(trained_model, device="cpu")
    ensemble = load_model(index, device="cpu")
    assert len(ensemble.members) == 2 and ensemble.info["folds"] == 2
    assert ensemble.info["members"] == [str(tmp_path / "m.fold1.pt"), str(tmp_path / "m.fold2.pt")]
    assert "members=2" in repr(ensemble)
    case = tiny_cases[3]
    for tta in (False, True):
        np.testing.assert_array_equal(
            segment_case(ensemble, case, tta=tta), segment_case(single, case, tta=tta)
        )


def test_ensemble_averages_member_probabilities(trained_model, tiny_cases, tmp_path):
    payload = _payload(trained_model)
    members = {"a.pt": payload, "b.pt": _perturbed(payload, 1)}
    index = _ensemble(tmp_path, members, payload["config"])
    ensemble = load_model(index, device="cpu")
    image = case_input(tiny_cases[2], ensemble.config)
    dev = torch.device("cpu")
    each = [
        infer_probabilities(
            load_model(tmp_path / n, device="cpu").network, image, ensemble.config, dev
        )
        for n in members
    ]
    assert np.abs(each[0] - each[1]).max() > 1e-3  # the members really differ
    mean = infer_probabilities(ensemble.members, image, ensemble.config, dev)
    np.testing.assert_allclose(mean, (each[0] + each[1]) / 2, atol=1e-5)


def test_ensemble_member_with_another_config_is_refused_naming_it(trained_model, tmp_path):
    payload = _payload(trained_model)
    other = {**payload, "config": {**payload["config"], "threshold": 0.4}}
    index = _ensemble(tmp_path, {"a.pt": payload, "odd.pt": other}, payload["config"])
    with pytest.raises(CheckpointError, match=r"odd\.pt.*different config.*threshold"):
        load_model(index, device="cpu")
    (tmp_path / "a.pt").unlink()
    with pytest.raises(CheckpointError, match=r"a\.pt does not exist"):
        load_model(index, device="cpu")


def test_ensemble_index_without_members_is_refused(trained_model, tmp_path):
    payload = _payload(trained_model)
    save_checkpoint(
        tmp_path / "e.pt", {"kind": "ensemble", "members": [], "config": payload["config"]}
    )
    with pytest.raises(CheckpointError, match=r"e\.pt lists no member"):
        load_model(tmp_path / "e.pt", device="cpu")


def test_segmentation_model_members_start_with_its_network():
    a, b = torch.nn.Conv2d(1, 3, 1), torch.nn.Conv2d(1, 3, 1)
    config = tiny_config(["flair"])
    assert SegmentationModel(a, config, torch.device("cpu")).members == [a]
    with pytest.raises(ValueError, match="start with network"):
        SegmentationModel(a, config, torch.device("cpu"), members=[b, a])


def test_cli_predict_with_tta_and_an_ensemble_index(trained_model, tmp_path):
    cohort = synthesize_cohort(tmp_path / "cohort", n_cases=2, seed=4, shape=TINY_SHAPE)
    manifest = tmp_path / "data_manifest.csv"
    write_manifest(build_manifest(cohort.root, relative_to=tmp_path, checksum=False), manifest)
    payload = _payload(trained_model)
    index = _ensemble(
        tmp_path / "ens", {"a.pt": payload, "b.pt": _perturbed(payload, 2)}, payload["config"]
    )
    masks = tmp_path / "masks"
    res = CliRunner().invoke(
        app,
        [
            "segment",
            "predict",
            "--model",
            str(index),
            "--manifest",
            str(manifest),
            "--out",
            str(masks),
            "--device",
            "cpu",
            "--tta",
        ],
    )
    assert res.exit_code == 0, res.output
    with open(masks / "segment_status.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert all((masks / f"{r['case_id']}.nii.gz").is_file() for r in rows)
