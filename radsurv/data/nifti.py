"""BraTS NIfTI case folders -> :class:`~radsurv.data.case.Case`, and back.

Two naming schemes are recognised by themselves:

- BraTS 2020: ``BraTS20_Training_001/BraTS20_Training_001_{flair,t1,t1ce,t2,seg}.nii.gz``
  (``t1ce`` is the canonical ``t1gd``);
- BraTS 2021-2023: ``<case>/<case>-{t2f,t1n,t1c,t2w,seg}.nii.gz`` (FLAIR, T1, T1Gd, T2).

Any other naming is given as a mapping modality -> glob pattern relative to the case folder
(e.g. ``{"flair": "Flair_subtrMeanDivStd.nii.gz"}``) plus a seg pattern. Missing modalities are
fine. All images of a case must share one geometry. Label masks are mapped onto the canonical
labels 0/1/2/4 from an explicit convention, or one detected from the values (and said so).
"""

from __future__ import annotations

import fnmatch
import gzip
import logging
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from radsurv.data.case import Case, exact_float_dtype
from radsurv.data.labels import LABEL_CONVENTIONS, MODALITIES, detect_convention, to_canonical
from radsurv.data.listing import FolderListing
from radsurv.errors import DataError

if TYPE_CHECKING:
    import SimpleITK as sitk

logger = logging.getLogger(__name__)

NIFTI_SUFFIXES: tuple[str, ...] = (".nii.gz", ".nii")

# Naming scheme -> modality -> glob pattern (relative to the case folder). "*.nii*" takes both
# compressed and uncompressed files; "_t1.nii*" cannot match "_t1ce.nii.gz".
NAMING_SCHEMES: dict[str, dict[str, str]] = {
    "brats2020": {
        "flair": "*_flair.nii*",
        "t1": "*_t1.nii*",
        "t1gd": "*_t1ce.nii*",
        "t2": "*_t2.nii*",
    },
    "brats2023": {
        "flair": "*-t2f.nii*",
        "t1": "*-t1n.nii*",
        "t1gd": "*-t1c.nii*",
        "t2": "*-t2w.nii*",
    },
}
SEG_PATTERNS: dict[str, str] = {"brats2020": "*_seg.nii*", "brats2023": "*-seg.nii*"}
# BraTS 2020 ships one case (355) whose mask is named "W39_1998.09.19_Segm.nii": a last resort.
FALLBACK_SEG_PATTERN = "*[Ss]eg*.nii*"

# Canonical modality -> BraTS 2020 file suffix, for writing.
BRATS2020_SUFFIX: dict[str, str] = {"flair": "flair", "t1": "t1", "t1gd": "t1ce", "t2": "t2"}

# Geometry tolerance: NIfTI headers store float32, so spacings/origins read back with rounding.
_GEOMETRY_ATOL = 1e-4


class NiftiError(DataError):
    """A NIfTI case folder is missing files, holds ambiguous matches or inconsistent geometry."""


class GeometryError(NiftiError):
    """Images (or an image and a mask) of one case do not share size, spacing, origin, direction."""


def _is_nifti(name: str) -> bool:
    return name.endswith(NIFTI_SUFFIXES)


def _match(folder: Path, pattern: str, names: list[str]) -> list[Path]:
    """Files in ``folder`` (given as ``names``) matching a glob pattern, sorted."""
    if "/" in pattern:  # a pattern with a sub-folder: let pathlib resolve it
        return sorted(p for p in folder.glob(pattern) if p.is_file())
    return [folder / n for n in sorted(names) if fnmatch.fnmatchcase(n, pattern)]


def _list_files(folder: Path, listing: FolderListing | None = None) -> list[str]:
    try:
        return (listing if listing is not None else FolderListing()).files(folder)
    except OSError as exc:
        raise NiftiError(f"cannot list NIfTI case folder {folder}: {exc}") from exc


def resolve_case_files(
    folder: Path,
    modality_patterns: Mapping[str, str] | None = None,
    seg_pattern: str | None = None,
    listing: FolderListing | None = None,
) -> tuple[dict[str, Path], Path | None, str]:
    """Find the image and mask files of one case folder.

    Parameters
    ----------
    folder
        The case folder.
    modality_patterns
        Modality -> glob pattern relative to ``folder``. ``None`` detects the BraTS 2020 or
        BraTS 2021-2023 naming scheme from the files present.
    seg_pattern
        Glob pattern of the label mask. ``None``: the scheme's mask name (``*_seg.nii*`` or
        ``*-seg.nii*``); a folder without one has no ground truth.
    listing
        Folder listings shared with the rest of a run (see :mod:`radsurv.data.listing`).

    Returns
    -------
    images, seg, scheme
        Modality -> file, the mask file or ``None``, and the naming scheme used
        (``brats2020``, ``brats2023`` or ``custom``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise NiftiError(f"NIfTI case folder {folder} does not exist or is not a folder")
    names = _list_files(folder, listing)
    if modality_patterns:
        unknown = [m for m in modality_patterns if m not in MODALITIES]
        if unknown:
            raise NiftiError(
                f"unknown modality name(s) {unknown} in the pattern mapping; "
                f"use {', '.join(MODALITIES)} (t1ce is t1gd)"
            )
        schemes = {"custom": dict(modality_patterns)}
    else:
        schemes = NAMING_SCHEMES
    found: dict[str, dict[str, list[Path]]] = {
        scheme: {m: _match(folder, pat, names) for m, pat in patterns.items()}
        for scheme, patterns in schemes.items()
    }
    hits = {scheme: sum(bool(v) for v in files.values()) for scheme, files in found.items()}
    scheme = max(hits, key=lambda s: hits[s])
    if hits[scheme] == 0:
        nifti_names = [n for n in sorted(names) if _is_nifti(n)]
        wanted = "; ".join(f"{m}={p}" for s in schemes.values() for m, p in s.items())
        raise NiftiError(
            f"case folder {folder}: no image file matches the naming patterns ({wanted}); "
            f"NIfTI files there: {nifti_names[:8] or 'none'}. "
            "Map your names with --modality NAME=PATTERN"
        )
    images: dict[str, Path] = {}
    for modality, files in found[scheme].items():
        if len(files) > 1:
            raise NiftiError(
                f"case folder {folder}: {len(files)} files match the {modality} pattern "
                f"{schemes[scheme][modality]!r}: {[f.name for f in files]}; make the pattern unique"
            )
        if files:
            images[modality] = files[0]
    seg = _find_seg(folder, names, scheme, seg_pattern, set(images.values()))
    return images, seg, scheme


def _find_seg(
    folder: Path, names: list[str], scheme: str, seg_pattern: str | None, images: set[Path]
) -> Path | None:
    if seg_pattern:
        candidates = _match(folder, seg_pattern, names)
        patterns = [seg_pattern]
    else:
        patterns = [SEG_PATTERNS[scheme]] if scheme in SEG_PATTERNS else list(SEG_PATTERNS.values())
        candidates = sorted({p for pat in patterns for p in _match(folder, pat, names)})
        if not candidates:
            fallback = [
                p
                for p in _match(folder, FALLBACK_SEG_PATTERN, names)
                if p not in images and _is_nifti(p.name)
            ]
            if len(fallback) == 1:
                logger.warning(
                    "case folder %s: no %s file; using %s as the label mask",
                    folder,
                    " or ".join(patterns),
                    fallback[0].name,
                )
                candidates = fallback
    candidates = [c for c in candidates if c not in images]
    if len(candidates) > 1:
        raise NiftiError(
            f"case folder {folder}: {len(candidates)} files match the mask pattern "
            f"{' or '.join(patterns)}: {[c.name for c in candidates]}; give a unique --seg pattern"
        )
    return candidates[0] if candidates else None


def _expected_nifti1_bytes(header: bytes) -> int | None:
    """Bytes a NIfTI-1 file must hold (vox_offset + data), from its header; None if unknown."""
    for endian in ("<", ">"):
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            vox_offset = struct.unpack(endian + "f", header[108:112])[0]
            n_dims = dims[0]
            if not 1 <= n_dims <= 7 or bitpix <= 0:
                return None
            n_voxels = int(np.prod([max(d, 1) for d in dims[1 : n_dims + 1]], dtype=np.int64))
            return int(vox_offset) + n_voxels * bitpix // 8
    return None  # NIfTI-2 or another format: ITK's own checks only


def _check_complete(path: Path) -> None:
    """Refuse truncated NIfTI files, which ITK may read without an error as garbage voxels.

    For ``.gz`` files the gzip trailer's uncompressed size (read without decompressing) must
    match the header; for plain files the file must be long enough.
    """
    try:
        if path.name.lower().endswith(".gz"):
            with gzip.open(path, "rb") as f:
                header = f.read(348)
            with path.open("rb") as f:
                f.seek(-4, os.SEEK_END)
                stored = struct.unpack("<I", f.read(4))[0]  # uncompressed size mod 2**32
            expected = _expected_nifti1_bytes(header)
            complete = expected is None or stored == expected % 2**32
        else:
            with path.open("rb") as f:
                header = f.read(348)
            expected = _expected_nifti1_bytes(header)
            complete = expected is None or path.stat().st_size >= expected
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise NiftiError(f"cannot read NIfTI file {path}: {exc}") from exc
    if not complete:
        raise NiftiError(
            f"NIfTI file {path} is truncated or corrupt (its size does not match its header); "
            "copy or download it again"
        )


def _read_image(path: Path) -> sitk.Image:
    import SimpleITK as sitk

    if path.name.lower().endswith((".nii", ".nii.gz")):
        _check_complete(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unreadable"
        raise NiftiError(f"cannot read NIfTI file {path}: {first}") from exc
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise NiftiError(
            f"NIfTI file {path}: expected a 3-D scalar image, got {image.GetDimension()}-D with "
            f"{image.GetNumberOfComponentsPerPixel()} component(s) per voxel"
        )
    return image


def _geometry(image: sitk.Image) -> tuple[tuple[int, ...], tuple[float, ...], ...]:
    return (
        tuple(image.GetSize()),
        tuple(image.GetSpacing()),
        tuple(image.GetOrigin()),
        tuple(image.GetDirection()),
    )


def _geometry_mismatch(a: tuple, b: tuple) -> str | None:
    """Describe how two geometries (size, spacing, origin, direction) differ, or ``None``."""
    names = ("size (x, y, z)", "spacing (x, y, z)", "origin", "direction")
    for name, va, vb in zip(names, a, b, strict=True):
        if name.startswith("size"):
            if tuple(va) != tuple(vb):
                return f"{name} {tuple(va)} vs {tuple(vb)}"
        elif not np.allclose(va, vb, atol=_GEOMETRY_ATOL, rtol=0):
            fmt = lambda v: tuple(round(float(x), 4) for x in v)  # noqa: E731
            return f"{name} {fmt(va)} vs {fmt(vb)}"
    return None


def read_nifti_case(
    folder: Path,
    case_id: str | None = None,
    modality_patterns: dict[str, str] | None = None,
    seg_pattern: str | None = None,
    label_convention: str | None = None,
    listing: FolderListing | None = None,
) -> Case:
    """Read one NIfTI case folder into a :class:`Case`.

    Parameters
    ----------
    folder
        The case folder, e.g. ``MICCAI_BraTS2020_TrainingData/BraTS20_Training_001``.
    case_id
        Id of the case; default the folder name.
    modality_patterns
        Modality (``flair``, ``t1``, ``t1gd``, ``t2``) -> glob pattern relative to the folder.
        ``None`` detects the BraTS 2020 or BraTS 2021-2023 naming. Modalities without a match
        are simply absent.
    seg_pattern
        Glob pattern of the label mask; ``None`` looks for the scheme's ``seg`` file.
    label_convention
        ``brats2015``, ``brats2020`` or ``brats2023``. ``None`` detects it from the mask values
        (logged at INFO with the reason and recorded in ``provenance``).
    listing
        Folder listings shared with the rest of a run (the case folder is listed once).

    Returns
    -------
    Case
        Images as (z, y, x) arrays holding the stored values exactly (float32; float64 for
        float64 files), canonical labels (uint8 0/1/2/4) or ``None`` without a mask, geometry
        from the files (spacing is (x, y, z)).

    Raises
    ------
    NiftiError
        No matching files, ambiguous matches, unreadable or non-3-D files.
    GeometryError
        Images or mask of the case differ in size, spacing, origin or direction.
    radsurv.errors.LabelError
        The mask holds values its convention does not define.

    Examples
    --------
    >>> case = read_nifti_case(Path("brats_2013_pat0003_1"),  # doctest: +SKIP
    ...     modality_patterns={"flair": "Flair_subtrMeanDivStd.nii.gz"},
    ...     seg_pattern="OTMultiClass.nii.gz", label_convention="brats2015")
    """
    import SimpleITK as sitk

    folder = Path(folder)
    case_id = case_id or folder.name
    if label_convention is not None and label_convention not in LABEL_CONVENTIONS:
        raise NiftiError(
            f"case {case_id}: unknown label convention {label_convention!r}; "
            f"choose from {', '.join(LABEL_CONVENTIONS)}"
        )
    files, seg_path, scheme = resolve_case_files(folder, modality_patterns, seg_pattern, listing)
    images: dict[str, np.ndarray] = {}
    reference: tuple | None = None
    reference_path: Path | None = None
    for modality in [m for m in MODALITIES if m in files]:
        path = files[modality]
        image = _read_image(path)
        geometry = _geometry(image)
        if reference is None:
            reference, reference_path = geometry, path
        else:
            diff = _geometry_mismatch(reference, geometry)
            if diff:
                raise GeometryError(
                    f"case {case_id}: {path.name} and {reference_path.name} in {folder} differ "
                    f"in {diff}; all images of a case must be co-registered on one grid"
                )
        array = sitk.GetArrayFromImage(image)
        images[modality] = array.astype(exact_float_dtype(array.dtype), copy=False)
    assert reference is not None  # resolve_case_files guarantees one image
    provenance: dict = {
        "format": "nifti",
        "folder": str(folder),
        "naming": scheme,
        "files": {m: str(p) for m, p in files.items()},
    }
    labels = None
    if seg_path is not None:
        seg_image = _read_image(seg_path)
        diff = _geometry_mismatch(reference, _geometry(seg_image))
        if diff:
            raise GeometryError(
                f"case {case_id}: mask {seg_path.name} and image {reference_path.name} in "
                f"{folder} differ in {diff}"
            )
        raw = sitk.GetArrayFromImage(seg_image)
        convention, reason = _choose_convention(raw, label_convention, case_id)
        labels = to_canonical(raw, convention, source=f"case {case_id}: mask {seg_path}")
        provenance.update(
            seg=str(seg_path), label_convention=convention, label_convention_reason=reason
        )
    size, spacing, origin, direction = reference
    return Case(
        case_id=case_id,
        images=images,
        labels=labels,
        spacing=tuple(float(s) for s in spacing),
        origin=tuple(float(o) for o in origin),
        direction=tuple(float(d) for d in direction),
        provenance=provenance,
    )


def _choose_convention(raw: np.ndarray, explicit: str | None, case_id: str) -> tuple[str, str]:
    if explicit is not None:
        return explicit, "given explicitly"
    convention, reason = detect_convention(raw)
    logger.info(
        "case %s: label convention %s detected (%s); pass --label-convention to fix it",
        case_id,
        convention,
        reason,
    )
    return convention, f"detected: {reason}"


def read_mask_nifti(path: Path, reference: Case, label_convention: str | None = None) -> np.ndarray:
    """Read a label mask NIfTI for ``reference``'s grid and return canonical labels (z, y, x).

    Used for user-supplied or predicted masks (``--masks DIR``).

    Parameters
    ----------
    path
        The mask file.
    reference
        The case the mask belongs to; size, spacing, origin and direction must agree with it.
    label_convention
        As in :func:`read_nifti_case`; ``None`` detects it (and logs the choice).

    Raises
    ------
    GeometryError
        The mask's grid differs from the case's; the message gives both shapes.
    """
    import SimpleITK as sitk

    path = Path(path)
    image = _read_image(path)
    raw = sitk.GetArrayFromImage(image)
    if raw.shape != tuple(reference.shape):
        raise GeometryError(
            f"mask {path} has shape (z, y, x) {raw.shape} but case {reference.case_id} has "
            f"{tuple(reference.shape)}; the mask must be on the case's image grid"
        )
    case_geometry = (
        tuple(reversed(reference.shape)),
        reference.spacing,
        reference.origin,
        reference.direction,
    )
    diff = _geometry_mismatch(case_geometry, _geometry(image))
    if diff:
        raise GeometryError(
            f"mask {path} and case {reference.case_id} differ in {diff} (case vs mask); "
            "resample the mask onto the case's grid"
        )
    convention, _ = _choose_convention(raw, label_convention, reference.case_id)
    return to_canonical(raw, convention, source=f"mask {path}")


def find_nifti_cases(
    root: Path,
    modality_patterns: dict[str, str] | None = None,
    seg_pattern: str | None = None,
    listing: FolderListing | None = None,
) -> dict[str, Path]:
    """Find the case folders of a NIfTI dataset: case id (folder name) -> folder, sorted by id.

    A folder is a case folder when a file directly inside it matches one of the modality
    patterns (the BraTS 2020 and 2021-2023 names when ``modality_patterns`` is ``None``). The
    tree under ``root`` is searched at any depth; ``root`` itself may be a case folder.
    ``listing`` shares the folder listings with the rest of a run.

    Raises
    ------
    NiftiError
        ``root`` does not exist, holds no case folder, or two case folders share a name.
    """
    root = Path(root)
    if not root.is_dir():
        raise NiftiError(f"NIfTI dataset folder {root} does not exist or is not a folder")
    if modality_patterns:
        patterns = list(modality_patterns.values())
    else:
        patterns = [p for scheme in NAMING_SCHEMES.values() for p in scheme.values()]
    simple = [p for p in patterns if "/" not in p]
    nested = [p for p in patterns if "/" in p]
    cases: dict[str, Path] = {}
    listing = listing if listing is not None else FolderListing()
    for folder, dirnames, filenames in listing.walk(root):
        dirnames.sort()
        hit = any(fnmatch.fnmatchcase(n, p) for n in filenames for p in simple) or any(
            any(f.is_file() for f in folder.glob(p)) for p in nested
        )
        if not hit:
            continue
        if folder.name in cases:
            raise NiftiError(
                f"two case folders are named {folder.name}: {cases[folder.name]} and {folder}; "
                "case ids must be unique"
            )
        cases[folder.name] = folder
    if not cases:
        wanted = ", ".join(patterns)
        raise NiftiError(
            f"no NIfTI case folder under {root}: no file matches {wanted}. "
            "Map your file names with --modality NAME=PATTERN (and --seg PATTERN)"
        )
    return dict(sorted(cases.items()))


def write_nifti_case(case: Case, dst_root: Path, compress: bool = True) -> Path:
    """Write a case as a BraTS 2020 NIfTI folder and return the folder.

    Writes ``dst_root/<case_id>/<case_id>_{flair,t1,t1ce,t2}.nii.gz`` (only the modalities the
    case has) with the stored values as float32, or float64 for float64 arrays (no
    re-normalisation, no rounding), and ``<case_id>_seg.nii.gz``
    with labels 1, 2, 4 (uint8) when the case has a mask. Geometry comes from the case.
    """
    import SimpleITK as sitk

    folder = Path(dst_root) / case.case_id
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".nii.gz" if compress else ".nii"
    for modality, array in case.images.items():
        suffix = BRATS2020_SUFFIX.get(modality)
        if suffix is None:
            raise NiftiError(
                f"case {case.case_id}: modality {modality!r} has no BraTS 2020 file name; "
                f"use {', '.join(MODALITIES)}"
            )
        image = case.to_sitk(np.asarray(array, dtype=exact_float_dtype(np.asarray(array).dtype)))
        sitk.WriteImage(image, str(folder / f"{case.case_id}_{suffix}{ext}"), compress)
    if case.labels is not None:
        labels = np.asarray(case.labels, dtype=np.uint8)
        sitk.WriteImage(case.to_sitk(labels), str(folder / f"{case.case_id}_seg{ext}"), compress)
    logger.debug("wrote %s", folder)
    return folder
