"""Training samples streamed from the Kaggle pack's slice files inside DataLoader workers.

``--loader memory`` (the default) holds every training case normalised in memory (~25 MB per
BraTS case as float16): 9 GB for the 369-case pack, copied into every DataLoader worker that
touches it. ``--loader stream`` keeps only a small index per volume in memory and reads each
2D sample's slice file (``volume_{V}_slice_{S}.h5``) when the sample is drawn, inside the
DataLoader worker that draws it.

Per-volume statistics are computed once per volume, in one pass before training (the same
pass that checks every case, as the memory loader does), and reused by every sample of every
epoch: per input channel the background value (the value most of the volume's 8 corners share),
the mean and standard deviation over the head, plus the head box and the candidate patch
centres. A streamed slice is normalised with them exactly as
:func:`~radsurv.segmentation.preprocess.normalise` normalises the whole volume, so a streamed
sample equals the in-memory one up to the memory loader's float16 storage, and the samples
drawn for (seed, epoch, index) are the same whatever the worker count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radsurv.data.case import Case
from radsurv.data.labels import LABEL_ED, LABEL_ET, LABEL_NCR
from radsurv.errors import ConfigError, SegmentationError
from radsurv.segmentation.config import SegmentationConfig
from radsurv.segmentation.datasets import RandomPatchDataset, index_volume, training_input
from radsurv.segmentation.preprocess import _background_value, foreground_mask, labels_to_regions

_MASK_LABELS = (LABEL_NCR, LABEL_ED, LABEL_ET)  # one-hot channels of the pack's mask


@dataclass
class StreamVolume:
    """A pack volume's slice files and the statistics its streamed slices are normalised with.

    Attributes
    ----------
    case_id
        The case.
    files
        Slice file of each axial slice z = 0 .. n-1 of the volume.
    channels
        Image channel (of the file's ``image`` dataset) of each model input, in model order.
    background, mean, sd
        Per model input: background value (NaN when the corners agree on none: then every
        voxel counts as head), mean and standard deviation over the head (float64).
    box
        (z, y, x) head box (+4 voxels) as (start, stop) pairs; samples live in its coordinates.
    tumour_voxels, head_voxels
        Candidate patch centres in box coordinates, as in
        :class:`~radsurv.segmentation.datasets.PreparedVolume`.
    """

    case_id: str
    files: list[str]
    channels: list[int]
    background: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    box: tuple[tuple[int, int], ...]
    tumour_voxels: np.ndarray
    head_voxels: np.ndarray

    def read_slice(self, z: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised image (C, y, x) float32 and regions (3, y, x) uint8 of box slice ``z``."""
        import h5py

        (z0, _), (y0, y1), (x0, x1) = self.box
        path = self.files[z0 + z]
        try:
            with h5py.File(path, "r") as f:
                image = f["image"][y0:y1, x0:x1]
                mask = f["mask"][y0:y1, x0:x1]
        except (OSError, KeyError, ValueError) as exc:
            raise SegmentationError(
                f"case {self.case_id}: cannot read slice file {path} while training ({exc}); "
                "was the pack changed since training started?"
            ) from exc
        raw = np.moveaxis(image[..., self.channels], -1, 0).astype(np.float64)
        head = np.zeros(raw.shape[1:], dtype=bool)
        for c, bg in enumerate(self.background):
            head |= True if math.isnan(bg) else raw[c] != bg
        norm = (raw - self.mean[:, None, None]) / self.sd[:, None, None]
        x = np.where(head, norm, 0.0).astype(np.float32)
        labels = np.zeros(mask.shape[:2], dtype=np.uint8)
        for k, label in enumerate(_MASK_LABELS):
            labels[mask[..., k] != 0] = label
        return x, labels_to_regions(labels)


def pack_slice_files(case: Case) -> tuple[list[str], tuple[str, ...]]:
    """The slice files a case read from the Kaggle pack came from, and the pack's channel order.

    Raises :class:`ConfigError` for a case that did not come from the pack (e.g. NIfTI).
    """
    from radsurv.data.hdf5 import slice_filename

    prov = case.provenance or {}
    if prov.get("format") not in ("kaggle_hdf5", "kaggle") or not prov.get("source"):
        raise ConfigError(
            f"case {case.case_id}: --loader stream reads Kaggle-pack slice files, but this case "
            f"is {prov.get('format') or 'not from the pack'}; use --loader memory"
        )
    try:
        volume, n_slices = int(prov["volume"]), int(prov["n_slices"])
        order = tuple(prov["channel_order"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"case {case.case_id}: its provenance lacks the pack volume details ({exc}); "
            "use --loader memory"
        ) from exc
    folder = Path(prov["source"])
    return [str(folder / slice_filename(volume, z)) for z in range(n_slices)], order


def stream_volume(case: Case, config: SegmentationConfig, seed: int = 0) -> StreamVolume:
    """Check a pack case like :func:`~radsurv.segmentation.datasets.prepare_volume` and keep
    only what streaming its slices needs (the image itself is dropped)."""
    files, order = pack_slice_files(case)
    if len(files) != case.shape[0]:
        raise SegmentationError(
            f"case {case.case_id}: {len(files)} slice files but {case.shape[0]} slices read"
        )
    image = training_input(case, config)  # every check of the memory loader, and its normalised
    index = index_volume(image, case.labels, seed)
    del image
    raw = np.stack([np.asarray(case.images[m]) for m in config.modalities])
    head = foreground_mask(raw)
    background, mean, sd = [], [], []
    for channel in raw:
        bg = _background_value(channel)
        values = channel[head].astype(np.float64)
        background.append(np.nan if bg is None else bg)
        mean.append(values.mean())
        sd.append(values.std())
    return StreamVolume(
        case_id=case.case_id,
        files=files,
        channels=[order.index(m) for m in config.modalities],
        background=np.array(background, dtype=np.float64),
        mean=np.array(mean, dtype=np.float64),
        sd=np.array(sd, dtype=np.float64),
        box=tuple((int(s.start), int(s.stop)) for s in index.box),
        tumour_voxels=index.tumour_voxels,
        head_voxels=index.head_voxels,
    )


class StreamingSliceDataset(RandomPatchDataset):
    """:class:`~radsurv.segmentation.datasets.RandomPatchDataset` over streamed pack slices.

    The same draws (volume, centre, jitter, flips, intensity scale and shift, modality dropout)
    for the same (seed, epoch, index); each sample reads one slice file. 2D only.

    Parameters
    ----------
    volumes
        :class:`StreamVolume` entries (from :func:`stream_volume`).
    config, samples_per_epoch, seed, tumour_fraction, augment
        As for :class:`~radsurv.segmentation.datasets.RandomPatchDataset`.
    """

    def __init__(
        self,
        volumes: list[StreamVolume],
        config: SegmentationConfig,
        samples_per_epoch: int,
        seed: int = 0,
        tumour_fraction: float = 0.6,
        augment: bool = True,
    ) -> None:
        if config.dim != "2d":
            raise ConfigError(
                f"--loader stream draws 2D slices; a {config.dim} model needs --loader memory"
            )
        super().__init__(volumes, config, samples_per_epoch, seed, tumour_fraction, augment)  # type: ignore[arg-type]

    def _slice(self, vol: StreamVolume, z: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[override]
        return vol.read_slice(z)
