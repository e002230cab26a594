"""The configuration a segmentation checkpoint carries: what the model expects and how it was built.

Everything that decides whether a model can be applied to a case lives here, so a checkpoint can
refuse mismatching data (other modalities, other dimensionality) with a clear message.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from radsurv.data.labels import MODALITIES
from radsurv.errors import ConfigError

# Output channels of the region-based model, in order (sigmoid each; nested WT > TC > ET).
REGION_OUTPUTS: tuple[str, ...] = ("WT", "TC", "ET")
NORMALISATIONS: tuple[str, ...] = ("zscore_foreground",)
DIMS: tuple[str, ...] = ("2d", "3d")
# 2.5D stays opt-in (default 0): over 3 seeds x 4 leave-one-out BraTS 2015 cases (8 CPU-minutes
# each, bench/bench_segment_real.py) K = 1 moved mean WT Dice from 0.827 to 0.838 (0.831 to
# 0.843 with TTA) but TC from 0.523 to 0.470, and the third seed lost on WT as well.
MAX_CONTEXT_SLICES = 8


@dataclass
class SegmentationConfig:
    """What a segmentation model expects and how it was built.

    Attributes
    ----------
    dim
        ``"2d"`` (axial slices, MONAI UNet) or ``"3d"`` (patches, MONAI SegResNet).
    modalities
        Input channels, in order (canonical modality names).
    label_scheme
        ``"regions"``: sigmoid outputs WT, TC, ET converted to canonical labels 1, 2, 4.
    normalisation
        ``"zscore_foreground"``: each channel z-scored over the head (voxels differing from the
        background value), background set to 0.
    patch_size
        Training crop in voxels: (y, x) for 2D, (z, y, x) for 3D.
    channels, strides, num_res_units
        Network hyper-parameters (UNet feature widths and down-sampling; SegResNet uses
        ``channels[0]`` as ``init_filters``).
    threshold
        Probability threshold of each sigmoid output.
    modality_dropout
        Training only: probability of zeroing each normalised input channel of a sample (never
        all channels of one sample), so the model learns to segment with modalities missing.
        Checkpoints written before this field existed read as 0.
    context_slices
        2D only: K neighbouring axial slices on each side enter with each slice (2.5D), so
        the network sees ``2K + 1`` slices of every modality: ``len(modalities) * (2K + 1)``
        input channels, modality-major (channel ``m * (2K + 1) + K + d`` is modality ``m`` at
        slice offset ``d`` in ``-K .. K``). Slices beyond the volume are zero (background).
        The labels are the centre slice's. Checkpoints written before this field existed
        read as 0 (plain 2D).
    ncr_intensity_aug
        Training only: share of training samples whose necrotic / non-enhancing core (label 1)
        gets a random mean intensity and contrast on each modality (a fluid-dark cavity on
        FLAIR as well as bright solid necrosis); see
        :func:`~radsurv.segmentation.datasets.randomise_ncr_intensity`. Checkpoints written
        before this field existed read as 0.
    spatial_aug
        Training only: share of training samples rotated in the axial plane (up to
        :data:`~radsurv.segmentation.datasets.ROTATION_RANGE_DEG`) and zoomed
        (:data:`~radsurv.segmentation.datasets.SCALE_RANGE`) about their centre; see
        :func:`~radsurv.segmentation.datasets.rotate_scale`. Checkpoints written before this
        field existed read as 0.
    """

    dim: str = "2d"
    modalities: list[str] = field(default_factory=lambda: ["flair", "t1", "t1gd", "t2"])
    label_scheme: str = "regions"
    normalisation: str = "zscore_foreground"
    patch_size: list[int] = field(default_factory=lambda: [128, 128])
    channels: list[int] = field(default_factory=lambda: [16, 32, 64, 128])
    strides: list[int] = field(default_factory=lambda: [2, 2, 2])
    num_res_units: int = 1
    dropout: float = 0.0
    threshold: float = 0.5
    outputs: list[str] = field(default_factory=lambda: list(REGION_OUTPUTS))
    modality_dropout: float = 0.0
    context_slices: int = 0
    # Off by default: leave-one-out on the 4 real BraTS 2015 cases (seed 0), P = 0.25 found
    # most of pat0005's dark necrotic core but cost pat0003 0.08 WT Dice (mean WT 0.833 against
    # 0.838 with TTA, mean TC +0.06); with context_slices = 1 it over-segmented pat0005 (0.39).
    ncr_intensity_aug: float = 0.0
    # Off by default: leave-one-out on the 4 real BraTS 2015 cases, P = 0.5 gave mean WT Dice
    # 0.836 / 0.818 (seeds 0 / 3) against 0.836 / 0.827 without it; pat0005 stayed at 0.57-0.66.
    spatial_aug: float = 0.0

    @property
    def depth(self) -> int:
        """Axial slices per modality in one 2D input (``2 * context_slices + 1``); 1 for 3D."""
        return 2 * self.context_slices + 1

    @property
    def in_channels(self) -> int:
        """Number of network input channels (modalities x :attr:`depth`)."""
        return len(self.modalities) * self.depth

    @property
    def out_channels(self) -> int:
        """Number of output channels (WT, TC, ET)."""
        return len(self.outputs)

    @property
    def divisor(self) -> int:
        """Spatial sizes the network accepts are multiples of this."""
        d = 1
        for s in self.strides:
            d *= s
        return d

    def validate(self) -> SegmentationConfig:
        """Raise :class:`ConfigError` on an inconsistent configuration; return self."""
        if self.dim not in DIMS:
            raise ConfigError(f"segmentation dim {self.dim!r} unknown; choose 2d or 3d")
        if not self.modalities:
            raise ConfigError("segmentation needs at least one input modality")
        unknown = [m for m in self.modalities if m not in MODALITIES]
        if unknown:
            raise ConfigError(
                f"unknown modality(ies) {unknown}; choose from {', '.join(MODALITIES)}"
            )
        if len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(f"modalities {self.modalities} repeat a name")
        if self.label_scheme != "regions":
            raise ConfigError(f"label scheme {self.label_scheme!r} unknown; only 'regions'")
        if self.normalisation not in NORMALISATIONS:
            raise ConfigError(
                f"normalisation {self.normalisation!r} unknown; choose {', '.join(NORMALISATIONS)}"
            )
        n_spatial = 2 if self.dim == "2d" else 3
        if len(self.patch_size) != n_spatial:
            raise ConfigError(
                f"patch_size {self.patch_size} must have {n_spatial} entries for {self.dim}"
            )
        if self.dim == "2d" and len(self.strides) != len(self.channels) - 1:
            raise ConfigError("2d UNet needs len(strides) == len(channels) - 1")
        bad = [p for p in self.patch_size if p % self.divisor]
        if bad:
            raise ConfigError(
                f"patch_size {self.patch_size} must be multiples of {self.divisor} "
                "(the network's total down-sampling)"
            )
        if not 0.0 < self.threshold < 1.0:
            raise ConfigError(f"threshold {self.threshold} must lie in (0, 1)")
        if not 0.0 <= self.modality_dropout < 1.0:
            raise ConfigError(f"--modality-dropout {self.modality_dropout} must lie in [0, 1)")
        if (
            isinstance(self.context_slices, bool)
            or not isinstance(self.context_slices, int)
            or not 0 <= self.context_slices <= MAX_CONTEXT_SLICES
        ):
            raise ConfigError(
                f"--context-slices {self.context_slices!r} must be a whole number in "
                f"0..{MAX_CONTEXT_SLICES} (neighbouring axial slices on each side)"
            )
        if self.context_slices and self.dim != "2d":
            raise ConfigError(
                f"--context-slices {self.context_slices} applies to 2d models only; a 3d "
                "model sees whole patches already (use --context-slices 0 with --dim 3d)"
            )
        if not 0.0 <= self.ncr_intensity_aug <= 1.0:
            raise ConfigError(
                f"--ncr-intensity-aug {self.ncr_intensity_aug} must lie in [0, 1] (the share of "
                "training samples whose necrotic core gets a random intensity)"
            )
        if not 0.0 <= self.spatial_aug <= 1.0:
            raise ConfigError(
                f"--spatial-aug {self.spatial_aug} must lie in [0, 1] (the share of training "
                "samples rotated and zoomed)"
            )
        if self.modality_dropout > 0 and len(self.modalities) < 2:
            raise ConfigError(
                f"--modality-dropout {self.modality_dropout} needs at least 2 input modalities "
                f"(never all channels of a sample are dropped); the model has {self.modalities}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON- and ``torch.load(weights_only=True)``-safe)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SegmentationConfig:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"segmentation config has unknown keys {unknown}")
        return cls(
            **{k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}
        ).validate()

    @classmethod
    def default(
        cls, dim: str = "2d", modalities: list[str] | None = None, device_type: str = "cuda"
    ) -> SegmentationConfig:
        """Sensible defaults for ``dim`` and the device that trains.

        2D: MONAI UNet (16-128 channels) on 128x128 crops on a GPU; on a CPU a narrower UNet
        (8-64 channels, ~1/4 of the compute) on 96x96 crops, which learns more in a few minutes
        of CPU time than the wider one. 3D: SegResNet (16 initial filters) on 96^3 patches on a
        GPU; on a CPU 8 initial filters on 64^3 patches, batches of 2 (about 12x the samples per
        CPU second: the wide one managed under 100 steps in 8 CPU minutes and learnt nothing).
        """
        mods = list(modalities) if modalities else ["flair", "t1", "t1gd", "t2"]
        if dim == "3d":
            side, filters = (64, 8) if device_type == "cpu" else (96, 16)
            return cls(
                dim="3d",
                modalities=mods,
                patch_size=[side] * 3,
                channels=[filters],
                strides=[2, 2, 2],
            ).validate()
        if dim == "2d" and device_type == "cpu":
            return cls(
                dim=dim, modalities=mods, patch_size=[96, 96], channels=[8, 16, 32, 64]
            ).validate()
        return cls(dim=dim, modalities=mods).validate()
