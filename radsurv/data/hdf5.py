"""The Kaggle BraTS2020 HDF5 pack: one axial slice per file.

Layout: ``BraTS2020_training_data/content/data/volume_{V}_slice_{S}.h5`` with datasets ``image``
(H, W, 4) float, standardised per volume, channels FLAIR, T1, T1Gd, T2 by default, and ``mask``
(H, W, 3) one-hot of NCR (label 1), ED (label 2), ET (label 4). Volume V is case
``BraTS20_Training_{V:03d}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from radsurv.data.case import Case
from radsurv.data.labels import LABEL_ED, LABEL_ET, LABEL_NCR

DEFAULT_CHANNEL_ORDER: tuple[str, ...] = ("flair", "t1", "t1gd", "t2")
MASK_CHANNEL_LABELS: tuple[int, ...] = (LABEL_NCR, LABEL_ED, LABEL_ET)


def case_id_for_volume(volume: int) -> str:
    """Canonical case id of Kaggle volume number ``volume`` (``BraTS20_Training_{V:03d}``)."""
    return f"BraTS20_Training_{volume:03d}"


def slice_filename(volume: int, slice_index: int) -> str:
    """File name of one slice in the pack."""
    return f"volume_{volume}_slice_{slice_index}.h5"


def standardise_per_volume(array: np.ndarray) -> np.ndarray:
    """Standardise a volume the way the Kaggle pack does: zero mean, unit sd over the volume."""
    arr = array.astype(np.float64)
    sd = arr.std()
    return (arr - arr.mean()) / (sd if sd > 0 else 1.0)


def write_kaggle_volume(
    case: Case,
    out_dir: Path,
    volume: int,
    channel_order: Sequence[str] = DEFAULT_CHANNEL_ORDER,
    standardise: bool = True,
) -> list[Path]:
    """Write one case as Kaggle-pack slice files ``volume_{V}_slice_{S}.h5`` under ``out_dir``.

    Images are standardised per volume like the pack (``standardise=True``); a modality the case
    lacks is written as zeros. The mask is one-hot (NCR, ED, ET) uint8. Returns the paths written,
    in slice order.
    """
    import h5py

    out_dir.mkdir(parents=True, exist_ok=True)
    shape = case.shape
    channels = []
    for modality in channel_order:
        arr = case.images.get(modality)
        if arr is None:
            channels.append(np.zeros(shape, dtype=np.float64))
        else:
            channels.append(standardise_per_volume(arr) if standardise else arr.astype(np.float64))
    image = np.stack(channels, axis=-1)  # (z, y, x, c)
    labels = case.labels if case.labels is not None else np.zeros(shape, dtype=np.uint8)
    mask = np.stack([labels == lab for lab in MASK_CHANNEL_LABELS], axis=-1).astype(np.uint8)
    paths = []
    for z in range(shape[0]):
        path = out_dir / slice_filename(volume, z)
        with h5py.File(path, "w") as f:
            f.create_dataset("image", data=image[z])
            f.create_dataset("mask", data=mask[z])
        paths.append(path)
    return paths
