"""BraTS NIfTI case folders behind the format interface.

The reading and writing code is :mod:`radsurv.data.nifti`; this module is what the rest of
radsurv calls. Canonical name ``nifti``.
"""

from __future__ import annotations

import glob
import gzip
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from radsurv.data.case import Case
from radsurv.data.formats.base import CaseEntry, DataFormat, ReadOptions
from radsurv.data.labels import MODALITIES
from radsurv.data.listing import Entry, FolderListing
from radsurv.data.nifti import (
    NIFTI_SUFFIXES,
    find_nifti_cases,
    read_nifti_case,
    resolve_case_files,
    write_nifti_case,
)
from radsurv.errors import DataError, ManifestError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class NiftiRef:
    """One NIfTI case folder and its listing (so a worker process need not list it again)."""

    folder: Path
    entries: tuple[Entry, ...] | None = None

    def listing(self) -> FolderListing:
        """A :class:`FolderListing` that already knows this folder (when it was listed)."""
        listing = FolderListing()
        if self.entries is not None:
            listing.seed(self.folder, self.entries)
        return listing

    def __str__(self) -> str:
        return str(self.folder)


def hash_file_stream(h: Any, path: Path) -> None:
    """Feed a file's bytes (decompressed for .gz: independent of the zlib build) to ``h``."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path} for its checksum: {exc}") from exc


def dataset_convention(values: dict[str, set[int]]) -> tuple[str, str]:
    """One label convention for a whole dataset from the mask values of its cases.

    Per case, a mask with 3 but no 4 would read as BraTS 2023; across a dataset, any case
    holding both 3 and 4 makes 3 the non-enhancing core of BraTS 2015 for every case.
    Returns ``(convention, reason)``.
    """
    from radsurv.data.labels import detect_convention

    union = set().union(*values.values()) if values else set()
    convention, reason = detect_convention(np.array(sorted(union or {0})))
    both = sorted(c for c, v in values.items() if {3, 4} <= v)
    if convention == "brats2015" and both:
        reason = f"{len(both)} case(s) hold both 3 and 4 (e.g. {both[0]}): BraTS 2015 (3 = NET)"
    return convention, f"over {len(values)} mask(s), {reason}"


class NiftiFormat(DataFormat):
    """BraTS NIfTI case folders (BraTS 2020 and 2021-2023 namings, or given patterns)."""

    name = "nifti"
    aliases = ()
    describe = (
        "BraTS NIfTI case folders (BraTS 2020 *_flair.nii.gz ..., 2021-2023 "
        "*-t2f.nii.gz ...; other namings: build a manifest with --modality and check that)"
    )

    def detect(self, path: Path, listing: FolderListing) -> bool:
        """True when a ``.nii`` / ``.nii.gz`` file lies anywhere under ``path``."""
        if not Path(path).is_dir():
            return False
        for _folder, _dirs, files in listing.walk(path):
            if any(name.endswith(NIFTI_SUFFIXES) for name in files):
                return True
        return False

    def list_cases(
        self, path: Path, options: ReadOptions, listing: FolderListing
    ) -> list[CaseEntry]:
        """The case folders, sorted by id (:func:`~radsurv.data.nifti.find_nifti_cases`)."""
        cases = find_nifti_cases(path, _patterns(options), options.seg_pattern, listing=listing)
        return [
            CaseEntry(cid, NiftiRef(folder, listing.entries(folder)), folder)
            for cid, folder in cases.items()
        ]

    def read(self, ref: NiftiRef, options: ReadOptions) -> Case:
        return read_nifti_case(
            ref.folder,
            ref.folder.name,
            _patterns(options),
            options.seg_pattern,
            options.label_convention,
            listing=ref.listing(),
        )

    def manifest_row(
        self, entry: CaseEntry, source: str, checksum: bool, options: ReadOptions
    ) -> dict[str, Any]:
        """The row of one case folder; the mask values go under ``_mask_values`` when the
        label convention is to be detected over the dataset (:meth:`finish_rows`)."""
        import SimpleITK as sitk

        folder = entry.ref.folder
        images, seg, _ = resolve_case_files(
            folder, _patterns(options), options.seg_pattern, entry.ref.listing()
        )
        first = images[next(m for m in MODALITIES if m in images)]
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(first))
        try:
            reader.ReadImageInformation()
        except RuntimeError as exc:
            raise DataError(f"cannot read the NIfTI header of {first}") from exc
        size = reader.GetSize()  # (x, y, z)
        values = None
        if seg is not None and options.label_convention is None:
            try:
                mask = sitk.GetArrayFromImage(sitk.ReadImage(str(seg)))
            except RuntimeError as exc:
                raise DataError(f"cannot read the mask {seg}") from exc
            values = {int(v) for v in np.unique(mask)}
        entries = [f"{m}={images[m].relative_to(folder).as_posix()}" for m in images]
        if seg is not None:
            entries.append(f"seg={seg.relative_to(folder).as_posix()}")
        ordered = [images[m] for m in images] + ([seg] if seg is not None else [])
        import pandas as pd

        return {
            "case_id": entry.case_id,
            "format": self.name,
            "source": source,
            "files": ";".join(entries),
            "volume": pd.NA,
            "n_slices": int(size[2]),
            "shape": "x".join(str(int(s)) for s in reversed(size)),
            "spacing": "x".join(f"{s:g}" for s in reader.GetSpacing()),
            "modalities": ",".join(images),
            "has_mask": seg is not None,
            "label_convention": options.label_convention if seg is not None else "",
            "channel_order": "",
            "checksum": self.checksum(ordered) if checksum else "",
            "_mask_values": values,
        }

    def finish_rows(self, rows: list[dict[str, Any]], options: ReadOptions) -> list[dict[str, Any]]:
        """One label convention for every case with a mask, detected over the whole dataset."""
        seg_values = {
            row["case_id"]: row["_mask_values"]
            for row in rows
            if row.get("_mask_values") is not None
        }
        for row in rows:
            row.pop("_mask_values", None)
        if seg_values:
            convention, reason = dataset_convention(seg_values)
            logger.info(
                "label convention %s detected (%s); pass --label-convention to fix it",
                convention,
                reason,
            )
            for row in rows:
                if row.get("has_mask") is True:
                    row["label_convention"] = convention
        return rows

    def read_row(
        self,
        row: pd.Series,
        source: Path,
        *,
        where: str,
        state: dict,
        cache_dir: Path | None = None,
    ) -> Case:
        """Read the files the row lists by name (patterns escaped), with its convention."""
        case_id = str(row["case_id"])
        patterns: dict[str, str] = {}
        seg = None
        for item in str(row.get("files", "") or "").split(";"):
            if "=" not in item:
                continue
            key, name = item.split("=", 1)
            if key == "seg":
                seg = glob.escape(name)
            else:
                patterns[key] = glob.escape(name)
        if not patterns:
            raise ManifestError(
                f"case {case_id}: NIfTI row of {where} lists no files; "
                "rebuild the manifest with `radsurv manifest`"
            )
        convention = str(row.get("label_convention", "") or "") or None
        case = read_nifti_case(source, case_id, patterns, seg, convention)
        if seg is not None and case.labels is None:
            raise DataError(f"case {case_id}: mask {seg} listed in the manifest is missing")
        return case

    def write(self, case: Case, dst: Path, **options: Any) -> Path:
        """Write ``dst/<case_id>/<case_id>_{flair,t1,t1ce,t2,seg}.nii.gz`` (stored values)."""
        return write_nifti_case(case, Path(dst), **options)

    def hash_file(self, h: Any, path: Path) -> None:
        """The file's (decompressed) bytes."""
        hash_file_stream(h, path)


def _patterns(options: ReadOptions) -> dict[str, str] | None:
    return dict(options.modality_patterns) if options.modality_patterns else None
