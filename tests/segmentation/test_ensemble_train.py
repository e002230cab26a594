"""K-fold ensemble training: fold assignment, member files, the index, resume and 3D."""

from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from radsurv.cli import app
from radsurv.errors import ConfigError
from radsurv.segmentation import CheckpointError, load_model, train_segmentation
from radsurv.segmentation.checkpoint import last_checkpoint_path, read_checkpoint
from radsurv.segmentation.ensemble import fold_assignment, member_path

from .conftest import tiny_config

FAST = {"batch_size": 2, "steps_per_epoch": 2, "progress": False, "device": "cpu"}


def test_fold_assignment_is_a_seeded_partition():
    ids = [f"c{i}" for i in range(7)]
    folds = fold_assignment(ids, 3, seed=4)
    assert sorted(sum(folds, [])) == sorted(ids)
    assert sorted(len(f) for f in folds) == [2, 2, 3]
    assert fold_assignment(ids, 3, seed=4) == folds
    assert any(fold_assignment(ids, 3, seed=s) != folds for s in range(5, 10))
    for f in folds:  # each fold keeps the input order
        assert f == [i for i in ids if i in f]
    with pytest.raises(ConfigError, match="at least 2 folds"):
        fold_assignment(ids, 1, seed=0)
    with pytest.raises(ConfigError, match="exceeds the 7 usable"):
        fold_assignment(ids, 8, seed=0)


def test_member_paths_sit_beside_the_index(tmp_path):
    assert member_path(tmp_path / "model.pt", 2) == tmp_path / "model.fold2.pt"
    assert last_checkpoint_path(member_path(tmp_path / "m.pt", 1)).name == "m.fold1.last.pt"


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


def test_folds_write_k_members_and_the_index(tiny_cases, tmp_path):
    out = tmp_path / "ens" / "model.pt"
    cases = tiny_cases[:3]
    result = train_segmentation(
        cases, out, config=tiny_config(["flair", "t1gd"]), epochs=1, folds=2, seed=3, **FAST
    )
    ids = [c.case_id for c in cases]
    assert result.index_path == out and result.folds == 2
    assert result.member_paths == [out.parent / "model.fold1.pt", out.parent / "model.fold2.pt"]
    index = torch.load(out, weights_only=True)
    assert index["kind"] == "ensemble" and "state_dict" not in index
    assert index["members"] == ["model.fold1.pt", "model.fold2.pt"]
    assert index["folds"] == 2 and index["seed"] == 3
    assert sorted(index["train_cases"]) == sorted(ids)
    expected = fold_assignment(ids, 2, seed=3)
    for k, (member, path) in enumerate(zip(result.members, result.member_paths, strict=True)):
        payload, config = read_checkpoint(path)
        assert payload["config"] == index["config"]
        assert payload["val_cases"] == expected[k]
        assert sorted(payload["train_cases"] + payload["val_cases"]) == sorted(ids)
        assert member.val_cases == expected[k]
        assert last_checkpoint_path(path).is_file()
        model = load_model(path, device="cpu")
        assert model.config.modalities == ["flair", "t1gd"]
    # the two members were trained on different cases, so their weights differ
    w1, w2 = (_weights(p) for p in result.member_paths)
    assert not all(torch.equal(w1[k], w2[k]) for k in w1)


def test_resume_trains_only_unfinished_folds(tiny_cases, tmp_path):
    out = tmp_path / "model.pt"
    kw = {"config": tiny_config(["flair"]), "folds": 2, "seed": 1, **FAST}
    first = train_segmentation(tiny_cases[:3], out, epochs=1, **kw)
    fold1, fold2 = first.member_paths
    w1, w2 = _weights(fold1), _weights(fold2)
    # an interrupted run: fold 2 never started
    fold2.unlink()
    last_checkpoint_path(fold2).unlink()
    again = train_segmentation(tiny_cases[:3], out, epochs=1, folds=2, resume=True, **FAST)
    assert all(torch.equal(w1[k], _weights(fold1)[k]) for k in w1)  # kept, not retrained
    assert all(torch.equal(w2[k], _weights(fold2)[k]) for k in w2)  # retrained identically
    assert [len(m.history) for m in again.members] == [1, 1]
    # a longer run continues both folds from their last epoch
    longer = train_segmentation(tiny_cases[:3], out, epochs=2, folds=2, resume=True, **FAST)
    assert [[h["epoch"] for h in m.history] for m in longer.members] == [[1, 2], [1, 2]]
    assert torch.load(out, weights_only=True)["members"] == ["model.fold1.pt", "model.fold2.pt"]


def test_time_limit_is_shared_by_the_folds(tiny_cases, tmp_path):
    result = train_segmentation(
        tiny_cases[:2],
        tmp_path / "m.pt",
        config=tiny_config(["flair"]),
        epochs=50,
        time_limit=1e-4,
        folds=2,
        **FAST,
    )
    assert result.stopped_by_time
    assert [len(m.history) for m in result.members] == [1, 1]
    assert all(p.is_file() for p in result.member_paths)


def test_folds_work_with_the_3d_segresnet(tiny_cases, tmp_path):
    out = tmp_path / "m3d.pt"
    result = train_segmentation(
        tiny_cases[:2],
        out,
        config=tiny_config(["flair", "t2"], dim="3d"),
        epochs=1,
        folds=2,
        batch_size=1,
        steps_per_epoch=1,
        progress=False,
        device="cpu",
    )
    assert torch.load(out, weights_only=True)["config"]["dim"] == "3d"
    for path in result.member_paths:
        assert load_model(path, device="cpu").config.dim == "3d"


def test_bad_fold_counts_are_refused(tiny_cases, tmp_path):
    with pytest.raises(ConfigError, match="at least 2 folds"):
        train_segmentation(tiny_cases[:3], tmp_path / "m.pt", folds=1, **FAST)
    with pytest.raises(ConfigError, match="--folds 4 exceeds the 3"):
        train_segmentation(
            tiny_cases[:3], tmp_path / "m.pt", config=tiny_config(["flair"]), folds=4, **FAST
        )
    with pytest.raises(CheckpointError, match="no fold checkpoint"):
        train_segmentation(tiny_cases[:3], tmp_path / "m.pt", folds=2, resume=True, **FAST)
    res = CliRunner().invoke(
        app, ["segment", "train", "-m", "none.csv", "-o", str(tmp_path / "m.pt"), "--folds", "1"]
    )
    assert res.exit_code != 0 and "at least 2 folds" in res.output
