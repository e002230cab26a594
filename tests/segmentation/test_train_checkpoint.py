"""Training (determinism, resume, time limit, skipped cases) and checkpoint loading/refusal."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from radsurv.errors import ConfigError
from radsurv.segmentation import (
    CheckpointError,
    ModalityMismatchError,
    load_model,
    segment_case,
    train_segmentation,
)
from radsurv.segmentation.checkpoint import last_checkpoint_path, read_checkpoint
from radsurv.segmentation.inference import infer_probabilities
from radsurv.segmentation.preprocess import case_input

from .conftest import tiny_config

FAST = {"batch_size": 4, "steps_per_epoch": 2, "progress": False}


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["state_dict"]


def test_trained_model_carries_its_config_and_history(trained_model):
    payload, config = read_checkpoint(trained_model)
    assert config.modalities == ["flair", "t1gd"] and config.dim == "2d"
    assert payload["train_cases"] and payload["val_cases"] == ["BraTS20_Training_003"]
    assert "optimizer" not in payload  # only the resumable last checkpoint has it
    assert "optimizer" in torch.load(last_checkpoint_path(trained_model), weights_only=True)
    assert len(payload["history"]) == payload["epoch"]
    for key in ("loss", "train_dice", "val_dice_WT", "val_dice_TC", "val_dice_ET"):
        assert np.isfinite(payload["history"][-1][key])


@pytest.mark.slow
def test_training_is_deterministic_given_the_seed(tiny_cases, tmp_path):
    cfg = tiny_config(["flair", "t2"])
    for name in ("a", "b"):
        train_segmentation(
            tiny_cases[:2],
            tmp_path / name / "m.pt",
            config=cfg,
            epochs=1,
            val_fraction=0,
            seed=11,
            **FAST,
        )
    wa, wb = _weights(tmp_path / "a" / "m.pt"), _weights(tmp_path / "b" / "m.pt")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    train_segmentation(
        tiny_cases[:2],
        tmp_path / "c" / "m.pt",
        config=cfg,
        epochs=1,
        val_fraction=0,
        seed=12,
        **FAST,
    )
    wc = _weights(tmp_path / "c" / "m.pt")
    assert not all(torch.equal(wa[k], wc[k]) for k in wa)


@pytest.mark.slow
def test_resume_continues_exactly(tiny_cases, tmp_path):
    cfg = tiny_config(["flair"])
    kw = {"config": cfg, "val_fraction": 0, "seed": 5, **FAST}
    train_segmentation(tiny_cases[:2], tmp_path / "full" / "m.pt", epochs=2, **kw)
    train_segmentation(tiny_cases[:2], tmp_path / "part" / "m.pt", epochs=1, **kw)
    result = train_segmentation(
        tiny_cases[:2],
        tmp_path / "part" / "m.pt",
        epochs=2,
        resume=True,
        progress=False,
        batch_size=4,
        steps_per_epoch=2,
    )
    assert [h["epoch"] for h in result.history] == [1, 2]
    wa, wb = _weights(tmp_path / "full" / "m.pt"), _weights(tmp_path / "part" / "m.pt")
    assert all(torch.allclose(wa[k], wb[k]) for k in wa)


def test_resume_refuses_other_modalities_and_missing_checkpoint(tiny_cases, tmp_path):
    with pytest.raises(CheckpointError, match="no last checkpoint"):
        train_segmentation(tiny_cases[:2], tmp_path / "m.pt", resume=True, **FAST)
    train_segmentation(
        tiny_cases[:2],
        tmp_path / "m.pt",
        config=tiny_config(["flair"]),
        epochs=1,
        val_fraction=0,
        **FAST,
    )
    with pytest.raises(CheckpointError, match="modalities"):
        train_segmentation(
            tiny_cases[:2], tmp_path / "m.pt", modalities=["t2"], epochs=2, resume=True, **FAST
        )


def test_time_limit_stops_cleanly_and_keeps_a_model(tiny_cases, tmp_path):
    result = train_segmentation(
        tiny_cases[:2],
        tmp_path / "m.pt",
        config=tiny_config(["flair"]),
        epochs=50,
        time_limit=1e-4,
        val_fraction=0.5,
        **FAST,
    )
    assert result.stopped_by_time and len(result.history) == 1
    assert result.best_path.is_file()
    load_model(result.best_path, device="cpu")


def test_unusable_cases_are_skipped_and_reported(tiny_cases, nan_case, tmp_path):
    no_mask = type(tiny_cases[0])(case_id="no_mask", images=dict(tiny_cases[0].images))
    result = train_segmentation(
        [tiny_cases[0], nan_case, no_mask],
        tmp_path / "m.pt",
        config=tiny_config(["flair"]),
        epochs=1,
        val_fraction=0,
        **FAST,
    )
    assert set(result.skipped) == {"BraTS20_Training_NaN", "no_mask"}
    assert "NaN" in result.skipped["BraTS20_Training_NaN"]
    assert "no label mask" in result.skipped["no_mask"]


def test_bad_options_are_config_errors(tiny_cases, tmp_path):
    with pytest.raises(ConfigError, match="--dim"):
        train_segmentation(tiny_cases[:1], tmp_path / "m.pt", dim="4d")
    with pytest.raises(ConfigError, match="unknown modality"):
        train_segmentation(tiny_cases[:1], tmp_path / "m.pt", modalities=["pd"], **FAST)


@pytest.mark.slow
def test_checkpoint_round_trip_reproduces_the_network(trained_model, tiny_cases):
    model = load_model(trained_model, device="cpu")
    again = load_model(trained_model, device="cpu")
    case = tiny_cases[3]
    x = case_input(case, model.config)
    p1 = infer_probabilities(model.network, x, model.config, model.device)
    p2 = infer_probabilities(again.network, x, again.config, again.device)
    np.testing.assert_array_equal(p1, p2)
    assert p1.shape == (3, *case.shape) and p1.min() >= 0 and p1.max() <= 1
    labels = segment_case(model, case)
    assert labels.shape == case.shape and set(np.unique(labels)) <= {0, 1, 2, 4}


def test_model_refuses_a_case_without_its_modalities(trained_model, tiny_cases):
    model = load_model(trained_model, device="cpu")
    case = type(tiny_cases[0])(
        case_id="flair_only", images={"flair": tiny_cases[0].images["flair"]}
    )
    with pytest.raises(ModalityMismatchError, match=r"flair_only.*\['t1gd'\]"):
        segment_case(model, case)


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_non_checkpoints_are_refused(tmp_path, trained_model):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_model(tmp_path / "junk.pt")

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.pt", "wb") as f:
        pickle.dump({"format": "radsurv-segmentation", "x": Evil()}, f)
    with pytest.raises(CheckpointError, match="cannot be loaded safely"):
        load_model(tmp_path / "evil.pt")
    torch.save({"some": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a radsurv segmentation checkpoint"):
        load_model(tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing.pt")
    # weights that do not fit the stored config (e.g. the channel count was edited)
    payload = torch.load(trained_model, weights_only=True)
    payload["config"]["modalities"] = ["flair", "t1", "t1gd"]
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(tmp_path / "edited.pt")
