"""Prepared training volumes and the random slice/patch datasets that stream from them.

Cases are loaded once, normalised, cropped to the head and held in memory as float16 (about
half a float32 volume: ~25 MB per 4-modality BraTS case). Samples are drawn with a generator
seeded by (seed, epoch, index), so an epoch is the same whatever the DataLoader worker count,
and training is reproducible and resumable.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from radsurv.data.case import Case
from radsurv.segmentation.config import SegmentationConfig
from radsurv.segmentation.preprocess import (
    bounding_box,
    case_input,
    foreground_mask,
    labels_to_regions,
)

logger = logging.getLogger(__name__)

MAX_CENTRES = 20000  # candidate patch centres kept per volume and kind
# Share of training samples centred on tumour. 0.8 rather than 0.6: with the same 1,000 steps,
# held-out real BraTS 2015 cases pat0003 / pat0005 went from ET Dice 0.64 / 0.28 to 0.75 / 0.44
# and WT 0.81 / 0.64 to 0.83 / 0.63 (bench/bench_segment_real.py).
TUMOUR_FRACTION = 0.8
# Under ``ncr_intensity_aug``: the range (z units) of the mean the necrotic / non-enhancing core
# is moved to, per modality. On FLAIR and T2 necrosis runs from fluid-dark (a cystic cavity) to
# bright (solid necrosis, oedema-like); it does not enhance, so on T1 and T1Gd it stays at most
# a little above the head's mean (the enhancing rim, label 4, is left alone).
NCR_MEAN_RANGE: dict[str, tuple[float, float]] = {
    "flair": (-2.5, 3.0),
    "t2": (-2.5, 3.0),
    "t1": (-2.5, 0.5),
    "t1gd": (-2.5, 0.5),
}
NCR_CONTRAST_RANGE = (0.5, 1.5)  # factor on the core's deviations from its own mean
# Under ``spatial_aug``: the in-plane rotation (degrees either way) and zoom of a sample. Narrower
# than nnU-Net's (+-180 degrees in 2D, x0.7-1.4): BraTS volumes are registered upright to an
# atlas, so a head is never upside down in an axial slice.
ROTATION_RANGE_DEG = 30.0
SCALE_RANGE = (0.85, 1.25)


@dataclass
class PreparedVolume:
    """One training case in memory: normalised image (C, z, y, x), regions (3, z, y, x)."""

    case_id: str
    image: np.ndarray  # float16
    regions: np.ndarray  # uint8 WT, TC, ET
    spacing: tuple[float, float, float]
    tumour_voxels: np.ndarray  # (n, 3) z, y, x indices of WT voxels (subsampled)
    head_voxels: np.ndarray  # (n, 3) indices of head voxels (subsampled)


@dataclass
class VolumeIndex:
    """Where a training volume's samples come from: its head box and candidate centres."""

    box: tuple[slice, ...]  # (z, y, x) head box (+4 voxels) in the case's array
    regions: np.ndarray  # uint8 (3, z, y, x) WT, TC, ET inside the box
    tumour_voxels: np.ndarray  # (n, 3) z, y, x of WT voxels, box coordinates (subsampled)
    head_voxels: np.ndarray  # (n, 3) head voxels, box coordinates (subsampled)


def index_volume(image: np.ndarray, labels: np.ndarray, seed: int = 0) -> VolumeIndex:
    """Head box (+4 voxels) of a normalised (C, z, y, x) ``image`` and its candidate centres.

    At most :data:`MAX_CENTRES` tumour and head voxels are kept, drawn with a generator seeded
    by ``seed``.
    """
    head = foreground_mask(image) | (labels > 0)
    box = bounding_box(head, margin=4)
    regions = labels_to_regions(labels[box])
    head = head[box]
    rng = np.random.default_rng([seed, 7919])

    def _subsample(mask: np.ndarray) -> np.ndarray:
        idx = np.argwhere(mask)
        if len(idx) > MAX_CENTRES:
            idx = idx[rng.choice(len(idx), MAX_CENTRES, replace=False)]
        return idx.astype(np.int32)

    return VolumeIndex(
        box=box,
        regions=regions,
        tumour_voxels=_subsample(regions[0] > 0),
        head_voxels=_subsample(head),
    )


def training_input(case: Case, config: SegmentationConfig) -> np.ndarray:
    """:func:`case_input` of a case that must have a label mask (else a clear error)."""
    from radsurv.errors import SegmentationError

    if case.labels is None:
        raise SegmentationError(
            f"case {case.case_id}: has no label mask, so it cannot be used for training"
        )
    return case_input(case, config)


def prepare_volume(case: Case, config: SegmentationConfig, seed: int = 0) -> PreparedVolume:
    """Normalise ``case`` for training, crop it to the head (+4 voxels) and index its voxels."""
    image = training_input(case, config)
    index = index_volume(image, case.labels, seed)
    return PreparedVolume(
        case_id=case.case_id,
        image=image[(slice(None), *index.box)].astype(np.float16),
        regions=index.regions,
        spacing=case.spacing,
        tumour_voxels=index.tumour_voxels,
        head_voxels=index.head_voxels,
    )


def _crop(array: np.ndarray, starts: list[int], size: list[int]) -> np.ndarray:
    """Crop the trailing spatial axes of ``array`` at ``starts`` (may be negative), zero padding."""
    spatial = array.shape[-len(size) :]
    out = np.zeros(array.shape[: -len(size)] + tuple(size), dtype=array.dtype)
    src, dst = [], []
    for s, n, dim in zip(starts, size, spatial, strict=True):
        lo, hi = max(s, 0), min(s + n, dim)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    lead = (slice(None),) * (array.ndim - len(size))
    out[(*lead, *dst)] = array[(*lead, *src)]
    return out


def rotated_crop_margin(size: int) -> int:
    """Voxels added on each side of a ``size`` crop so that, rotated by up to 45 degrees and
    zoomed out to ``SCALE_RANGE[0]``, the sample is drawn from real voxels, not the crop's edge."""
    return math.ceil(size * (math.sqrt(2) / SCALE_RANGE[0] - 1) / 2) + 1


def rotate_scale(
    image: np.ndarray, regions: np.ndarray, angle: float, scale: float, size: list[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate by ``angle`` degrees and zoom by ``scale`` (> 1 enlarges) the last two axes (y, x)
    of ``image`` and ``regions`` about their centre; return the central ``size`` (h, w) window.

    The image is interpolated bilinearly, the regions by nearest neighbour (so they stay binary
    and nested); beyond the input both are 0 (background). With angle 0 and scale 1 the result
    is the input's central window.
    """
    theta = math.radians(angle)
    height, width = image.shape[-2:]
    # input (y, x) = centre_in + R(angle) / scale @ (output (y, x) - centre_out), in voxels
    oy, ox = torch.meshgrid(
        torch.arange(size[0], dtype=torch.float64) - (size[0] - 1) / 2,
        torch.arange(size[1], dtype=torch.float64) - (size[1] - 1) / 2,
        indexing="ij",
    )
    cos, sin = math.cos(theta) / scale, math.sin(theta) / scale
    in_y = (height - 1) / 2 + cos * oy - sin * ox
    in_x = (width - 1) / 2 + sin * oy + cos * ox
    # grid_sample's (x, y) order, -1 .. 1 spanning the first to the last voxel
    grid = torch.stack([2 * in_x / (width - 1) - 1, 2 * in_y / (height - 1) - 1], dim=-1)
    grid = grid.to(torch.float32)[None]

    def warp(array: np.ndarray, mode: str) -> torch.Tensor:
        planes = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
        planes = planes.reshape(1, -1, height, width)
        out = F.grid_sample(planes, grid, mode=mode, padding_mode="zeros", align_corners=True)
        return out.reshape(*array.shape[:-2], *size)

    return (
        warp(image, "bilinear").numpy().astype(image.dtype, copy=False),
        warp(regions, "nearest").numpy().astype(regions.dtype),
    )


def drop_modalities(
    x: np.ndarray, p: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Zero each channel (axis 0) of ``x`` with probability ``p``, never all of them.

    When every channel is drawn for dropping, one of them, chosen at random, is kept, so the
    rate per channel is ``p - p**C / C`` for ``C`` channels (0.484 for p = 0.5, C = 4).
    A dropped channel becomes exactly 0: what a missing modality is filled with at prediction.

    Returns
    -------
    (x, dropped)
        The sample (a new array when something was dropped) and the boolean mask of dropped
        channels.
    """
    n = x.shape[0]
    dropped = rng.random(n) < p
    if dropped.all():
        dropped[int(rng.integers(n))] = False
    if dropped.any():
        x = x.copy()
        x[dropped] = 0
    return x, dropped


def randomise_ncr_intensity(
    x: np.ndarray, ncr: np.ndarray, modalities: list[str], rng: np.random.Generator
) -> np.ndarray:
    """Give the necrotic / non-enhancing core of a sample a random intensity on each modality.

    On each modality the core's voxels are moved so that their mean becomes a value drawn from
    :data:`NCR_MEAN_RANGE` and their deviations from it are scaled by a factor drawn from
    :data:`NCR_CONTRAST_RANGE`; everything else is unchanged. Necrosis looks very different
    from case to case (a dark fluid-filled cavity on FLAIR in one, bright solid tissue in the
    next), and a few training cases show only some of its looks.

    Parameters
    ----------
    x
        The normalised sample, modality-major: shape ``(len(modalities), *ncr.shape)``.
    ncr
        Boolean mask of the core's voxels (TC without ET).
    modalities
        The modality of each entry of ``x``'s first axis.
    rng
        Draws the means and contrasts.

    Returns
    -------
    numpy.ndarray
        ``x`` itself when ``ncr`` is empty, else a changed copy.
    """
    if not ncr.any():
        return x
    x = x.copy()
    for m, name in enumerate(modalities):
        core = x[m][ncr]
        lo, hi = NCR_MEAN_RANGE[name]
        mean, contrast = rng.uniform(lo, hi), rng.uniform(*NCR_CONTRAST_RANGE)
        x[m][ncr] = mean + contrast * (core - core.mean())
    return x


class RandomPatchDataset(Dataset):
    """Random training samples: axial slices cropped to ``patch_size`` (2D) or 3D patches.

    A fraction ``tumour_fraction`` (:data:`TUMOUR_FRACTION`, 0.8) of samples is centred (with
    jitter) on a tumour voxel, the rest on a random head voxel, so small tumours are seen often
    enough. 2D samples carry ``config.context_slices`` neighbouring slices on each side of
    the labelled one (:meth:`_patch`). Augmentation: random flips on every spatial axis of the
    sample, per-modality intensity scale (x0.9-1.1) and shift (+-0.1 sd). Then, with
    ``config.modality_dropout`` > 0, whole modalities (with their context slices) are zeroed
    (:func:`drop_modalities`), drawn from a generator of their own so the patch and its
    augmentation are the same as without dropout. With ``config.ncr_intensity_aug`` > 0, that
    share of the samples gets a random intensity for its necrotic / non-enhancing core on each
    modality (:func:`randomise_ncr_intensity`), also from a generator of its own. With
    ``config.spatial_aug`` > 0, that share of the samples is first cut from a larger crop around
    the same centre, rotated in the axial plane and zoomed (:func:`rotate_scale`), again with a
    generator of its own.

    Parameters
    ----------
    volumes
        Prepared training volumes.
    config
        Model configuration (dim and patch size).
    samples_per_epoch
        Length of one epoch.
    seed
        Base seed; call :meth:`set_epoch` before each epoch.
    """

    def __init__(
        self,
        volumes: list[PreparedVolume],
        config: SegmentationConfig,
        samples_per_epoch: int,
        seed: int = 0,
        tumour_fraction: float = TUMOUR_FRACTION,
        augment: bool = True,
    ) -> None:
        self.volumes = volumes
        self.config = config
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.tumour_fraction = tumour_fraction
        self.augment = augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples ``__getitem__`` returns."""
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _patch(
        self, vol: PreparedVolume, z: int, starts: list[int], size: list[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Image (C * depth, h, w) and regions (3, depth, h, w) of the 2D patch at ``starts``
        (box coordinates, may reach beyond the box: zero padding) of axial slice ``z``.

        With ``context_slices`` K both hold slices z-K .. z+K (:attr:`SegmentationConfig.depth`),
        the image modality-major; the sample's labels are the centre slice's regions.
        """
        k = self.config.context_slices
        starts = [z - k, *starts]
        size = [self.config.depth, *size]
        image = _crop(vol.image, starts, size)
        return image.reshape(-1, *size[1:]), _crop(vol.regions, starts, size)

    def _whole(self, vol: PreparedVolume) -> tuple[np.ndarray, np.ndarray]:
        """Image (C, z, y, x) and regions (3, z, y, x) of the whole (head-cropped) volume."""
        return vol.image, vol.regions

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng([self.seed, self.epoch, index])
        vol = self.volumes[int(rng.integers(len(self.volumes)))]
        use_tumour = len(vol.tumour_voxels) > 0 and rng.random() < self.tumour_fraction
        centres = vol.tumour_voxels if use_tumour else vol.head_voxels
        centre = centres[int(rng.integers(len(centres)))]
        size = list(self.config.patch_size)
        z = int(centre[0])
        if self.config.dim == "2d":
            centre = centre[1:]
        # jitter so the tumour is not always in the middle of the patch
        starts = [
            int(c) - n // 2 + int(rng.integers(-n // 4, n // 4 + 1))
            for c, n in zip(centre, size, strict=True)
        ]
        # drawn only when the option is on: constructing a generator per sample is not free
        spatial = False
        if self.augment and self.config.spatial_aug > 0:
            spatial_rng = np.random.default_rng([self.seed, self.epoch, index, 4])
            spatial = spatial_rng.random() < self.config.spatial_aug
        crop_starts, crop_size = starts, size
        if spatial:
            # a larger crop around the same centre, rotated and zoomed back to ``size`` below
            margins = [0] * (len(size) - 2) + [rotated_crop_margin(n) for n in size[-2:]]
            crop_starts = [s - m for s, m in zip(starts, margins, strict=True)]
            crop_size = [n + 2 * m for n, m in zip(size, margins, strict=True)]
        if self.config.dim == "2d":
            x, regions = self._patch(vol, z, crop_starts, crop_size)
        else:
            image, regions = self._whole(vol)
            x, regions = (
                _crop(image, crop_starts, crop_size),
                _crop(regions, crop_starts, crop_size),
            )
        x = x.astype(np.float32)
        if spatial:
            angle = spatial_rng.uniform(-ROTATION_RANGE_DEG, ROTATION_RANGE_DEG)
            scale = math.exp(spatial_rng.uniform(*np.log(SCALE_RANGE)))
            x, regions = rotate_scale(x, regions, angle, scale, size[-2:])
        y = regions[:, self.config.context_slices] if self.config.dim == "2d" else regions
        y = y.astype(np.float32)
        if self.augment and self.config.ncr_intensity_aug > 0:
            ncr_rng = np.random.default_rng([self.seed, self.epoch, index, 3])
            if ncr_rng.random() < self.config.ncr_intensity_aug:
                ncr = (regions[1] > 0) & (regions[2] == 0)  # TC without ET, every slice
                mods = self.config.modalities
                x = randomise_ncr_intensity(
                    x.reshape(len(mods), *ncr.shape), ncr, mods, ncr_rng
                ).reshape(x.shape)
        if self.augment:
            for axis in range(1, x.ndim):
                if rng.random() < 0.5:
                    x, y = np.flip(x, axis), np.flip(y, axis)
            # one scale and shift per modality, shared by its context slices
            n_mod, depth = len(self.config.modalities), self.config.depth
            scale = rng.uniform(0.9, 1.1, size=(n_mod,) + (1,) * (x.ndim - 1))
            shift = rng.uniform(-0.1, 0.1, size=scale.shape)
            scale, shift = np.repeat(scale, depth, axis=0), np.repeat(shift, depth, axis=0)
            x = x * scale.astype(np.float32) + shift.astype(np.float32)
        if self.augment and self.config.modality_dropout > 0:
            drop_rng = np.random.default_rng([self.seed, self.epoch, index, 2])
            by_modality = x.reshape(len(self.config.modalities), -1, *x.shape[1:])
            dropped, _ = drop_modalities(by_modality, self.config.modality_dropout, drop_rng)
            x = dropped.reshape(x.shape)
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y))
