"""Canonical names: modalities, labels, subregions and label conventions.

Canonical labels follow BraTS 2017-2021: 0 background, 1 NCR (necrotic / non-enhancing core),
2 ED (peritumoural oedema), 4 ET (GD-enhancing tumour). Subregions: NCR, ED, ET,
TC = NCR + ET, WT = NCR + ED + ET.
"""

from __future__ import annotations

import numpy as np

from radsurv.errors import LabelError

MODALITIES: tuple[str, ...] = ("flair", "t1", "t1gd", "t2")

LABEL_NCR, LABEL_ED, LABEL_ET = 1, 2, 4
CANONICAL_LABELS: tuple[int, ...] = (0, LABEL_NCR, LABEL_ED, LABEL_ET)

REGIONS: tuple[str, ...] = ("NCR", "ED", "ET", "TC", "WT")
REGION_LABELS: dict[str, tuple[int, ...]] = {
    "NCR": (LABEL_NCR,),
    "ED": (LABEL_ED,),
    "ET": (LABEL_ET,),
    "TC": (LABEL_NCR, LABEL_ET),
    "WT": (LABEL_NCR, LABEL_ED, LABEL_ET),
}

# source value -> canonical value, per convention (0 is background everywhere)
LABEL_CONVENTIONS: dict[str, dict[int, int]] = {
    "brats2020": {0: 0, 1: LABEL_NCR, 2: LABEL_ED, 4: LABEL_ET},
    # BraTS 2015: 1 necrosis, 2 edema, 3 non-enhancing core, 4 enhancing; 1 and 3 -> NCR
    "brats2015": {0: 0, 1: LABEL_NCR, 2: LABEL_ED, 3: LABEL_NCR, 4: LABEL_ET},
    # BraTS 2023: 1 NCR, 2 ED, 3 ET
    "brats2023": {0: 0, 1: LABEL_NCR, 2: LABEL_ED, 3: LABEL_ET},
}


def parse_regions(text: str | None) -> list[str]:
    """Parse a comma-separated region list such as ``"ET,TC"``; ``None`` means all regions."""
    if not text:
        return list(REGIONS)
    regions = [r.strip().upper() for r in text.split(",") if r.strip()]
    unknown = [r for r in regions if r not in REGIONS]
    if unknown:
        raise LabelError(f"unknown region(s) {unknown}; choose from {', '.join(REGIONS)}")
    return regions


def parse_modalities(text: str | None) -> list[str] | None:
    """Parse a comma-separated modality list; ``None`` means whatever each case has."""
    if not text:
        return None
    mods = [m.strip().lower() for m in text.split(",") if m.strip()]
    unknown = [m for m in mods if m not in MODALITIES]
    if unknown:
        raise LabelError(f"unknown modality(ies) {unknown}; choose from {', '.join(MODALITIES)}")
    return mods


def region_mask(labels: np.ndarray, region: str) -> np.ndarray:
    """Boolean mask of one subregion of a canonical label array."""
    if region not in REGION_LABELS:
        raise LabelError(f"unknown region {region!r}; choose from {', '.join(REGIONS)}")
    return np.isin(labels, REGION_LABELS[region])


def detect_convention(labels: np.ndarray) -> tuple[str, str]:
    """Guess the label convention of a mask from the values it holds.

    Returns ``(convention, reason)``. Only a mask holding 3 is ambiguous between conventions:
    3 together with 4 can only be BraTS 2015; 3 without 4 is read as BraTS 2023 (3 = ET).
    """
    values = {int(v) for v in np.unique(labels)}
    if 3 not in values:
        return "brats2020", f"values {sorted(values)} hold no 3: labels 1, 2, 4 as in BraTS 2020"
    if 4 in values:
        return "brats2015", f"values {sorted(values)} hold both 3 and 4: BraTS 2015 (3 = NET)"
    return "brats2023", f"values {sorted(values)} hold 3 but no 4: BraTS 2023 (3 = ET)"


def to_canonical(labels: np.ndarray, convention: str, source: str = "mask") -> np.ndarray:
    """Map a label array of a given convention onto canonical labels (uint8, 0/1/2/4).

    Float masks (as some NIfTI files store them) are accepted when their values are whole.

    Examples
    --------
    >>> to_canonical(np.array([0, 1, 3, 4]), "brats2015").tolist()
    [0, 1, 1, 4]
    """
    if convention not in LABEL_CONVENTIONS:
        raise LabelError(
            f"{source}: unknown label convention {convention!r}; "
            f"choose from {', '.join(LABEL_CONVENTIONS)}"
        )
    mapping = LABEL_CONVENTIONS[convention]
    arr = np.asarray(labels)
    if arr.dtype.kind == "f" and not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
        raise LabelError(f"{source}: label mask holds non-integer or NaN values")
    values = np.unique(arr)
    unknown = [v for v in values.tolist() if int(v) not in mapping]
    if unknown:
        raise LabelError(
            f"{source}: values {unknown} are not labels of the {convention} convention "
            f"(expects {sorted(mapping)}); pick the right --label-convention"
        )
    lut = np.zeros(max(mapping) + 1, dtype=np.uint8)
    for src, dst in mapping.items():
        lut[src] = dst
    return lut[arr.astype(np.intp)]


def mask_extent(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """Inclusive lower and exclusive upper corner (array order) of a mask's voxels; None if empty.

    The one bounding-box computation that feature cropping and segmentation share.
    """
    if not mask.any():
        return None
    lows, highs = [], []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        lows.append(hit[0])
        highs.append(hit[-1] + 1)
    return np.array(lows), np.array(highs)
