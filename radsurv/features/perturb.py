"""Image and mask perturbations for feature robustness (after Zwanenburg et al. 2019).

Every perturbation works on the prepared, cropped arrays of one case (numpy (z, y, x)), never on
files, so a case is read, preprocessed and cropped once whatever the number of perturbations.
A perturbation is written ``name`` or ``name:value``:

========================  ==========================================================  =======
spec                      what it does                                                default
========================  ==========================================================  =======
``erode[:n]``             each region mask eroded by n voxels (6-connected)           1
``dilate[:n]``            each region mask dilated by n voxels (6-connected)          1
``contour[:a]``           contour randomisation: the boundary moves by a smooth       1
                          random field of SD ``a`` voxels (correlation 2 voxels)
``translate[:t]``         image and masks shifted by t voxel along z, y and x         0.5
                          (linear interpolation; masks thresholded at 0.5)
``rotate[:deg]``          image and masks rotated by deg degrees in the axial plane   5
                          about the crop centre (linear interpolation, physical mm)
``noise[:f]``             Gaussian noise of f times the image's own noise SD added    1
                          to the non-zero voxels (SD estimated per modality as
                          median(|HHH|) / 0.6745 of a one-level Haar wavelet)
========================  ==========================================================  =======

Random perturbations (``contour``, ``noise``) are seeded by (seed, case id, position of the
perturbation in the list): the same ``--seed`` gives the same values.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from radsurv.errors import ConfigError

DEFAULTS: dict[str, float] = {
    "erode": 1,
    "dilate": 1,
    "contour": 1.0,
    "translate": 0.5,
    "rotate": 5.0,
    "noise": 1.0,
}
#: The default list of ``radsurv robustness --perturbations``.
DEFAULT_PERTURBATIONS: tuple[str, ...] = (
    "erode",
    "dilate",
    "contour",
    "translate",
    "rotate:-5",
    "rotate:5",
    "noise",
)
MASK_ONLY = ("erode", "dilate", "contour")
CONTOUR_CORRELATION = 2.0  # voxels: smoothing of the random boundary field


@dataclass(frozen=True)
class Perturbation:
    """One parsed perturbation: ``kind`` (see the module table), ``value`` and its label."""

    kind: str
    value: float
    label: str

    @property
    def moves_image(self) -> bool:
        """True when the images change (translate, rotate, noise), not only the masks."""
        return self.kind not in MASK_ONLY

    def margin(self, half_extent_mm: Sequence[float], spacing_zyx: Sequence[float]) -> int:
        """Voxels the crop must add around the tumour so the perturbed masks stay inside it."""
        if self.kind in ("erode", "dilate"):
            return int(self.value) + 1
        if self.kind == "contour":
            return int(math.ceil(4 * self.value)) + 1
        if self.kind == "translate":
            return int(math.ceil(abs(self.value))) + 1
        if self.kind == "rotate":
            radius = math.hypot(half_extent_mm[1], half_extent_mm[2])
            shift_mm = 2 * radius * math.sin(math.radians(abs(self.value)) / 2)
            return int(math.ceil(shift_mm / min(spacing_zyx[1], spacing_zyx[2]))) + 2
        return 0


def parse_perturbations(specs: Sequence[str] | str | None) -> list[Perturbation]:
    """Parse ``["erode", "rotate:5", ...]`` (or a comma-separated string; ``none``: no list).

    Repeated specs get ``#2``, ``#3`` labels (e.g. two noise realisations).
    """
    if specs is None:
        specs = DEFAULT_PERTURBATIONS
    if isinstance(specs, str):
        specs = [specs]
    items = [p.strip() for s in specs for p in str(s).split(",") if p.strip()]
    if items in (["none"], ["original"]):
        return []
    out: list[Perturbation] = []
    seen: dict[str, int] = {}
    for item in items:
        kind, _, raw = item.partition(":")
        kind = kind.strip().lower()
        if kind not in DEFAULTS:
            raise ConfigError(
                f"--perturbations: unknown {item!r}; use {', '.join(DEFAULTS)} "
                "(optionally name:value, e.g. rotate:10), or none"
            )
        try:
            value = float(raw) if raw.strip() else float(DEFAULTS[kind])
        except ValueError as exc:
            raise ConfigError(f"--perturbations: {item!r}: {raw!r} is not a number") from exc
        if kind in ("erode", "dilate") and (value < 1 or value != int(value)):
            raise ConfigError(f"--perturbations: {item!r}: give a whole number of voxels >= 1")
        if kind in ("contour", "noise") and value <= 0:
            raise ConfigError(f"--perturbations: {item!r}: the amplitude must be positive")
        label = kind if not raw.strip() else f"{kind}:{raw.strip()}"
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            label = f"{label}#{seen[label]}"
        out.append(Perturbation(kind, value, label))
    return out


def perturbation_rng(seed: int, case_id: str, index: int) -> np.random.Generator:
    """The generator of perturbation ``index`` of a case (independent of process and order)."""
    return np.random.default_rng([int(seed), zlib.crc32(case_id.encode()), int(index)])


def noise_sd(image: np.ndarray) -> float:
    """Noise SD of an image: median(|HHH|) / 0.6745 of a one-level 3-D Haar transform.

    Only 2x2x2 blocks whose voxels are all non-zero count (zero background is not noise).
    """
    z, y, x = (s - s % 2 for s in image.shape)
    if min(z, y, x) < 2:
        return 0.0
    a = np.asarray(image[:z, :y, :x], dtype=float)
    blocks = a.reshape(z // 2, 2, y // 2, 2, x // 2, 2)
    signs = np.array([1.0, -1.0])
    hhh = np.einsum("aibjck,i,j,k->abc", blocks, signs, signs, signs) / math.sqrt(8.0)
    inside = np.all(blocks != 0, axis=(1, 3, 5))
    values = np.abs(hhh[inside])
    return float(np.median(values) / 0.6745) if values.size else 0.0


def _structure(n: int) -> tuple[np.ndarray, int]:
    from scipy import ndimage

    return ndimage.generate_binary_structure(3, 1), int(n)


def _signed_distance(mask: np.ndarray) -> np.ndarray:
    """Distance to the mask's boundary in voxels: negative inside, positive outside."""
    from scipy import ndimage

    inside = ndimage.distance_transform_edt(mask)
    outside = ndimage.distance_transform_edt(~mask)
    return np.where(mask, -(inside - 0.5), outside - 0.5)


def _geometric(
    array: np.ndarray, p: Perturbation, spacing_zyx: Sequence[float], order: int
) -> np.ndarray:
    """Shift or rotate an array (z, y, x) by the perturbation, nearest-edge outside the crop."""
    from scipy import ndimage

    data = np.asarray(array, dtype=float)
    if p.kind == "translate":
        # output(i) = input(i - t): content moves by +t voxels on every axis
        return ndimage.shift(data, (p.value,) * 3, order=order, mode="nearest")
    # rotation in the axial (y, x) plane about the array centre, in physical mm
    theta = math.radians(p.value)
    s = np.asarray(spacing_zyx, dtype=float)
    rot = np.array(
        [[1, 0, 0], [0, math.cos(theta), -math.sin(theta)], [0, math.sin(theta), math.cos(theta)]]
    )
    # output index o -> input index: S^-1 R^T S (o - c) + c
    matrix = np.diag(1 / s) @ rot.T @ np.diag(s)
    centre = (np.asarray(data.shape, dtype=float) - 1) / 2
    offset = centre - matrix @ centre
    return ndimage.affine_transform(data, matrix, offset=offset, order=order, mode="nearest")


def perturb_mask(
    mask: np.ndarray,
    p: Perturbation,
    spacing_zyx: Sequence[float],
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The perturbed version of one binary region mask (same shape, bool)."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if not mask.any() or p.kind == "noise":
        return mask
    if p.kind == "erode":
        structure, n = _structure(int(p.value))
        return ndimage.binary_erosion(mask, structure, iterations=n)
    if p.kind == "dilate":
        structure, n = _structure(int(p.value))
        return ndimage.binary_dilation(mask, structure, iterations=n)
    if p.kind == "contour":
        gen = rng if rng is not None else np.random.default_rng(0)
        field = ndimage.gaussian_filter(gen.normal(size=mask.shape), CONTOUR_CORRELATION)
        sd = float(field.std())
        field = field * (p.value / sd) if sd > 0 else field
        return _signed_distance(mask) < field
    return _geometric(mask.astype(float), p, spacing_zyx, order=1) >= 0.5


def perturb_image(
    image: np.ndarray,
    p: Perturbation,
    spacing_zyx: Sequence[float],
    rng: np.random.Generator | None = None,
    sd: float | None = None,
) -> np.ndarray:
    """The perturbed version of one image (float64); mask-only perturbations return it as is."""
    if not p.moves_image:
        return image
    if p.kind == "noise":
        gen = rng if rng is not None else np.random.default_rng(0)
        level = noise_sd(image) if sd is None else sd
        out = np.asarray(image, dtype=float).copy()
        head = out != 0
        out[head] += gen.normal(0.0, p.value * level, size=int(head.sum()))
        return out
    return _geometric(image, p, spacing_zyx, order=1)
