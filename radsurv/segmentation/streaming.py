"""Training samples streamed from the Kaggle pack's slice files inside DataLoader workers.

``--loader memory`` (the default) holds every training case normalised in memory (~25 MB per
BraTS case as float16): 9 GB for the 369-case pack, all read before the first step.
``--loader stream`` keeps only a small index per volume in memory (~0.5 MB) and reads each 2D
sample's patch from its slice file (``volume_{V}_slice_{S}.h5``) when the sample is drawn,
inside the DataLoader worker that draws it: only the rows and columns of the patch that lie in
the head box are read.

``--loader mmap`` prepares every case as the memory loader does, writes its arrays to a
temporary folder (~25 MB per case, removed after training) and memory-maps them: samples are
exactly the memory loader's, for 2D and 3D and for any format, while memory holds only what
the page cache keeps.

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
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from radsurv.data.case import Case
from radsurv.errors import ConfigError, SegmentationError
from radsurv.segmentation.config import SegmentationConfig
from radsurv.segmentation.datasets import (
    TUMOUR_FRACTION,
    RandomPatchDataset,
    index_volume,
    prepare_volume,
    training_input,
)
from radsurv.segmentation.preprocess import background_value, foreground_mask


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
        (_, _), (y0, y1), (x0, x1) = self.box
        return self.read_patch(z, [0, 0], [y1 - y0, x1 - x0])

    def read_patch(
        self, z: int, starts: list[int], size: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The (h, w) = ``size`` patch at ``starts`` (box coordinates) of box slice ``z``.

        Only the part of the patch inside the head box is read from the slice file (the rest
        is zero, as the memory loader pads); returns the normalised image (C, h, w) float32
        and the regions (3, h, w) uint8.
        """
        import h5py

        (z0, _), (by0, by1), (bx0, bx1) = self.box
        (sy, sx), (h, w) = starts, size
        lo_y, hi_y = max(sy, 0), min(sy + h, by1 - by0)
        lo_x, hi_x = max(sx, 0), min(sx + w, bx1 - bx0)
        x = np.zeros((len(self.channels), h, w), dtype=np.float32)
        regions = np.zeros((3, h, w), dtype=np.uint8)
        if lo_y >= hi_y or lo_x >= hi_x:
            return x, regions
        rows, cols = slice(by0 + lo_y, by0 + hi_y), slice(bx0 + lo_x, bx0 + hi_x)
        path = self.files[z0 + z]
        try:
            with h5py.File(path, "r") as f:
                image = f["image"][rows, cols]
                mask = f["mask"][rows, cols]
        except (OSError, KeyError, ValueError) as exc:
            raise SegmentationError(
                f"case {self.case_id}: cannot read slice file {path} while training ({exc}); "
                "was the pack changed since training started?"
            ) from exc
        # (C, y, x) float64 in model order; normalised in float64 like normalise(), then float32
        raw = np.ascontiguousarray(image[..., self.channels].transpose(2, 0, 1), np.float64)
        head = np.zeros(raw.shape[1:], dtype=bool)
        for c, bg in enumerate(self.background):
            if math.isnan(bg):
                head[...] = True
                break
            head |= raw[c] != bg
        raw -= self.mean[:, None, None]
        raw /= self.sd[:, None, None]
        raw[:, ~head] = 0
        dst = (slice(None), slice(lo_y - sy, hi_y - sy), slice(lo_x - sx, hi_x - sx))
        x[dst] = raw
        # the one-hot NCR, ED, ET mask -> nested regions WT, TC, ET
        on = mask != 0
        regions[dst] = np.stack([on.any(axis=-1), on[..., 0] | on[..., 2], on[..., 2]])
        return x, regions


def pack_slice_files(case: Case) -> tuple[list[str], tuple[str, ...]]:
    """The slice files a case read from the Kaggle pack came from, and the pack's channel order.

    Raises :class:`ConfigError` for a case that did not come from the pack (e.g. NIfTI).
    """
    from radsurv.data.hdf5 import slice_filename

    prov = case.provenance or {}
    if prov.get("format") not in ("kaggle_hdf5", "kaggle") or not prov.get("source"):
        raise ConfigError(
            f"case {case.case_id}: --loader stream reads Kaggle-pack slice files, but this case "
            f"is {prov.get('format') or 'not from the pack'}; use --loader memory or mmap"
        )
    try:
        volume, n_slices = int(prov["volume"]), int(prov["n_slices"])
        order = tuple(prov["channel_order"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(
            f"case {case.case_id}: its provenance lacks the pack volume details ({exc}); "
            "use --loader memory or mmap"
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
        bg = background_value(channel)
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
    for the same (seed, epoch, index); each sample reads one slice file per axial slice it
    holds (``2 * context_slices + 1``). 2D only.

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
        tumour_fraction: float = TUMOUR_FRACTION,
        augment: bool = True,
    ) -> None:
        if config.dim != "2d":
            raise ConfigError(
                f"--loader stream draws 2D slices; a {config.dim} model needs --loader memory "
                "or mmap"
            )
        super().__init__(volumes, config, samples_per_epoch, seed, tumour_fraction, augment)  # type: ignore[arg-type]

    def _patch(  # type: ignore[override]
        self, vol: StreamVolume, z: int, starts: list[int], size: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The memory loader's sample: slices z-K .. z+K of the box (zero beyond it), each read
        from its slice file, modality-major, and their regions (3, depth, h, w)."""
        k = self.config.context_slices
        if k == 0:
            image, regions = vol.read_patch(z, starts, size)
            return image, regions[:, None]
        (z0, z1), _, _ = vol.box
        image = np.zeros((len(vol.channels), self.config.depth, *size), dtype=np.float32)
        regions = np.zeros((3, self.config.depth, *size), dtype=np.uint8)
        for d, zz in enumerate(range(z - k, z + k + 1)):
            if 0 <= zz < z1 - z0:
                image[:, d], regions[:, d] = vol.read_patch(zz, starts, size)
        return image.reshape(-1, *size), regions


class MappedVolume:
    """A prepared training volume kept on disk as ``.npy`` files and memory-mapped on use.

    Holds what :class:`~radsurv.segmentation.datasets.PreparedVolume` holds, with ``image``
    (float16, the memory loader's values exactly) and ``regions`` opened read-only with
    ``numpy.load(mmap_mode="r")`` on first access in each process: a sample reads only the
    pages of its patch, and the operating system's page cache is shared by every worker.
    """

    def __init__(
        self,
        case_id: str,
        image_path: Path,
        regions_path: Path,
        spacing: tuple[float, float, float],
        tumour_voxels: np.ndarray,
        head_voxels: np.ndarray,
    ) -> None:
        self.case_id = case_id
        self.image_path = Path(image_path)
        self.regions_path = Path(regions_path)
        self.spacing = spacing
        self.tumour_voxels = tumour_voxels
        self.head_voxels = head_voxels
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def _open(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            try:
                self._arrays = (
                    np.load(self.image_path, mmap_mode="r"),
                    np.load(self.regions_path, mmap_mode="r"),
                )
            except (OSError, ValueError) as exc:
                raise SegmentationError(
                    f"case {self.case_id}: cannot map its training copy {self.image_path} "
                    f"({exc}); was the folder removed while training?"
                ) from exc
        return self._arrays

    @property
    def image(self) -> np.ndarray:
        """Normalised, head-cropped image (C, z, y, x) float16, memory-mapped."""
        return self._open()[0]

    @property
    def regions(self) -> np.ndarray:
        """Regions WT, TC, ET (3, z, y, x) uint8, memory-mapped."""
        return self._open()[1]

    def __getstate__(self) -> dict:
        # a worker started by spawn/forkserver maps the files itself instead of copying them
        return {**self.__dict__, "_arrays": None}

    def __repr__(self) -> str:
        return f"MappedVolume({self.case_id!r}, {str(self.image_path)!r})"


def map_volume(
    case: Case, config: SegmentationConfig, seed: int = 0, *, folder: Path
) -> MappedVolume:
    """Prepare ``case`` like :func:`~radsurv.segmentation.datasets.prepare_volume` and write its
    arrays to ``folder`` (~25 MB per BraTS case); return the memory-mapped volume."""
    vol = prepare_volume(case, config, seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9._-]", "_", case.case_id)
    image_path, regions_path = folder / f"{stem}.image.npy", folder / f"{stem}.regions.npy"
    np.save(image_path, vol.image)
    np.save(regions_path, vol.regions)
    return MappedVolume(
        case.case_id, image_path, regions_path, vol.spacing, vol.tumour_voxels, vol.head_voxels
    )
