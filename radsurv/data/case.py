"""The in-memory case every reader returns and every later step consumes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from radsurv.data.labels import CANONICAL_LABELS, MODALITIES
from radsurv.errors import DataError

if TYPE_CHECKING:
    import SimpleITK as sitk

IDENTITY_DIRECTION: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def exact_float_dtype(stored: np.dtype | type) -> np.dtype:
    """The smallest float type that holds every value of a stored dtype exactly.

    float32 for float16/float32 and for integers of up to 16 bits (a float32 mantissa has 24
    bits); float64 for float64 and wider integers. Readers keep images in this type so that the
    stored values reach the feature extraction unchanged.

    Examples
    --------
    >>> exact_float_dtype(np.int16), exact_float_dtype(np.float64)
    (dtype('float32'), dtype('float64'))
    """
    dtype = np.dtype(stored)
    if dtype.kind == "f" and dtype.itemsize <= 4:
        return np.dtype(np.float32)
    if dtype.kind in "biu" and dtype.itemsize <= 2:
        return np.dtype(np.float32)
    return np.dtype(np.float64)


@dataclass
class Case:
    """One patient: co-registered modalities, the canonical label mask and their geometry.

    Attributes
    ----------
    case_id
        Canonical id, e.g. ``BraTS20_Training_001``.
    images
        Modality name (``flair``, ``t1``, ``t1gd``, ``t2``) -> float array of shape (z, y, x)
        holding the stored values exactly: float32, or float64 where the file stores float64
        (:func:`exact_float_dtype`).
    labels
        Canonical label mask (uint8, values 0/1/2/4, shape (z, y, x)) or ``None`` when the case
        has no ground truth.
    spacing, origin, direction
        Geometry in SimpleITK order: spacing is (x, y, z) in mm, unlike the (z, y, x) arrays.
    provenance
        Where the data came from (files, format, channel order, label convention, ...).
    """

    case_id: str
    images: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY_DIRECTION
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def modalities(self) -> list[str]:
        """Modalities present, in canonical order."""
        return [m for m in MODALITIES if m in self.images] + [
            m for m in self.images if m not in MODALITIES
        ]

    @property
    def shape(self) -> tuple[int, int, int]:
        """Array shape (z, y, x) shared by all images and the mask."""
        first = next(iter(self.images.values()), self.labels)
        if first is None:
            raise DataError(f"case {self.case_id}: has neither images nor a label mask")
        return tuple(first.shape)  # type: ignore[return-value]

    def validate(self) -> None:
        """Raise :class:`DataError` naming the case if shapes, values or labels are inconsistent."""
        if not self.images:
            raise DataError(f"case {self.case_id}: no image modality present")
        shape = self.shape
        if len(shape) != 3:
            raise DataError(f"case {self.case_id}: images must be 3-D (z, y, x), got {shape}")
        for name, arr in self.images.items():
            if arr.shape != shape:
                raise DataError(
                    f"case {self.case_id}: modality {name} has shape {arr.shape}, expected {shape}"
                )
            if not np.all(np.isfinite(arr)):
                n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
                raise DataError(
                    f"case {self.case_id}: modality {name} holds {n_bad} NaN/inf voxels; "
                    "repair or exclude the case"
                )
        if self.labels is not None:
            if self.labels.shape != shape:
                raise DataError(
                    f"case {self.case_id}: label mask has shape {self.labels.shape}, "
                    f"images have {shape}"
                )
            bad = np.setdiff1d(np.unique(self.labels), CANONICAL_LABELS)
            if bad.size:
                raise DataError(
                    f"case {self.case_id}: label mask holds non-canonical values {bad.tolist()}"
                )

    def to_sitk(self, array: np.ndarray) -> sitk.Image:
        """Wrap a (z, y, x) array of this case as a SimpleITK image with the case's geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(array)
        image.SetSpacing(tuple(float(s) for s in self.spacing))
        image.SetOrigin(tuple(float(o) for o in self.origin))
        image.SetDirection(tuple(float(d) for d in self.direction))
        return image

    def image_sitk(self, modality: str) -> sitk.Image:
        """One modality as a SimpleITK image."""
        if modality not in self.images:
            raise DataError(
                f"case {self.case_id}: modality {modality!r} missing (has {self.modalities})"
            )
        return self.to_sitk(self.images[modality])

    def labels_sitk(self) -> sitk.Image:
        """The canonical label mask as a SimpleITK image."""
        if self.labels is None:
            raise DataError(f"case {self.case_id}: has no label mask")
        return self.to_sitk(self.labels)
