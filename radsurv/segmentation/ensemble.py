"""K-fold ensembles: deterministic fold assignment, member file names and the ensemble index.

An ensemble of K models is K checkpoints ``model.fold1.pt`` ... ``model.foldK.pt`` (each with its
own resumable ``.last.pt``) beside an index file ``model.pt``: a checkpoint-format file whose
payload has ``kind == "ensemble"``, the member file names (relative to the index's folder), the
config every member shares, ``folds``, ``train_cases`` and ``seed``, and no weights. Member k
is trained on every fold but k and validated on fold k.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from radsurv.errors import ConfigError
from radsurv.segmentation.checkpoint import save_checkpoint
from radsurv.segmentation.config import SegmentationConfig

ENSEMBLE_KIND = "ensemble"


def check_folds(folds: int, n_cases: int) -> None:
    """Raise :class:`ConfigError` unless ``2 <= folds <= n_cases``."""
    if folds < 2:
        raise ConfigError(
            f"--folds {folds}: an ensemble needs at least 2 folds; "
            "train a single model without --folds"
        )
    if folds > n_cases:
        raise ConfigError(
            f"--folds {folds} exceeds the {n_cases} usable case(s): every fold needs at least "
            f"one validation case; use at most {n_cases} folds"
        )


def fold_assignment(case_ids: list[str], folds: int, seed: int) -> list[list[str]]:
    """Split ``case_ids`` into ``folds`` validation folds, deterministically from ``seed``.

    The cases are permuted by a generator seeded with ``seed`` and dealt into folds of sizes
    differing by at most one; each fold lists its cases in their input order. The result does
    not depend on anything but the ids, their order, ``folds`` and ``seed``.

    Examples
    --------
    >>> fold_assignment(["a", "b", "c", "d", "e"], 2, seed=0)
    [['b', 'd', 'e'], ['a', 'c']]
    """
    check_folds(folds, len(case_ids))
    order = np.random.default_rng([seed, 104729]).permutation(len(case_ids))
    position = {int(i): rank for rank, i in enumerate(order)}
    return [
        [cid for i, cid in enumerate(case_ids) if position[i] % folds == k] for k in range(folds)
    ]


def member_path(out: Path, fold: int) -> Path:
    """Checkpoint of fold ``fold`` (1-based) of the ensemble indexed at ``out``.

    ``model.pt`` -> ``model.fold1.pt``, each with its resumable ``model.fold1.last.pt``.
    """
    out = Path(out)
    return out.with_name(f"{out.stem}.fold{fold}{out.suffix or '.pt'}")


def write_ensemble_index(
    out: Path,
    members: list[Path],
    config: SegmentationConfig,
    train_cases: list[str],
    seed: int,
) -> Path:
    """Write the ensemble index at ``out`` (member names relative to its folder)."""
    out = Path(out)
    payload: dict[str, Any] = {
        "kind": ENSEMBLE_KIND,
        "members": [
            str(Path(m).resolve().relative_to(out.parent.resolve())).replace("\\", "/")
            for m in members
        ],
        "config": config.to_dict(),
        "folds": len(members),
        "train_cases": list(train_cases),
        "seed": int(seed),
    }
    return save_checkpoint(out, payload)
