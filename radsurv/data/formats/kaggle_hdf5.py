"""The Kaggle BraTS2020 HDF5 pack (``volume_{V}_slice_{S}.h5``) behind the format interface.

The reading, listing and writing code is :mod:`radsurv.data.hdf5` (and the volume cache,
:mod:`radsurv.data.cache`); this module is what the rest of radsurv calls. Canonical name
``kaggle``; ``kaggle_hdf5`` is accepted as an alias.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from radsurv.data.case import Case
from radsurv.data.formats.base import CaseEntry, DataFormat, DatasetWriter, Problem, ReadOptions
from radsurv.data.hdf5 import (
    DEFAULT_CHANNEL_ORDER,
    PackError,
    PackVolume,
    find_slice_dir,
    find_slice_dirs,
    meta_data_rows,
    missing_slices,
    parse_channel_order,
    read_volume,
    scan_pack,
    slice_filename,
    validate_volume,
    write_kaggle_volume,
)
from radsurv.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from radsurv.data.listing import FolderListing

logger = logging.getLogger(__name__)


def hash_h5_slice(h: Any, path: Path) -> dict[str, np.ndarray]:
    """Feed the decoded datasets of one slice file to ``h`` (independent of the HDF5 file
    layout, compression and library version) and return them."""
    import h5py

    arrays = {}
    try:
        with h5py.File(path, "r") as f:
            for name in sorted(f.keys()):
                obj = f[name]
                if not isinstance(obj, h5py.Dataset):
                    continue
                arr = np.ascontiguousarray(obj[()])
                arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
                h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
                h.update(arr.tobytes())
                arrays[name] = arr
    except OSError as exc:
        raise DataError(f"cannot read slice file {path} for its checksum: {exc}") from exc
    return arrays


def _content(files: Sequence[Path], channel_order: Sequence[str]) -> tuple[str, list[str]]:
    """Checksum of a volume's slices and the channels that hold any non-zero voxel."""
    h = hashlib.sha256()
    nonzero = np.zeros(len(channel_order), dtype=bool)
    for path in files:
        h.update(f"{path.name}\n".encode())
        image = hash_h5_slice(h, path).get("image")
        if image is not None and image.ndim == 3 and image.shape[-1] == len(channel_order):
            nonzero |= np.any(image != 0, axis=(0, 1))
    present = [m for m, keep in zip(channel_order, nonzero, strict=True) if keep]
    return "sha256:" + h.hexdigest(), present


def _problems(errors: Sequence[PackError]) -> list[Problem]:
    return [Problem(e.file, f"{e.problem}; {e.hint}" if e.hint else e.problem) for e in errors]


def _recorded_volume(row: pd.Series, source: Path) -> PackVolume | None:
    """The PackVolume a manifest row describes when all its files are there (no folder scan)."""
    try:
        volume, n_slices = int(row["volume"]), int(row["n_slices"])
    except (KeyError, TypeError, ValueError):
        return None
    files = {z: source / slice_filename(volume, z) for z in range(n_slices)}
    if not all(f.is_file() for f in files.values()):
        return None
    return PackVolume(volume, files)


_VOLUME_ID = re.compile(r"^BraTS20_Training_(\d+)$")


def assign_volumes(case_ids: Sequence[str]) -> dict[str, int]:
    """Kaggle volume number per case: N for ``BraTS20_Training_N``, else the next free number."""
    numbers: dict[str, int] = {}
    for case_id in case_ids:
        match = _VOLUME_ID.match(case_id)
        if match and int(match.group(1)) not in numbers.values():
            numbers[case_id] = int(match.group(1))
    free = (n for n in range(1, 10**7) if n not in set(numbers.values()))
    for case_id in case_ids:
        if case_id not in numbers:
            numbers[case_id] = next(free)
    return numbers


class KagglePackWriter(DatasetWriter):
    """Writes ``DST/data/volume_{V}_slice_{S}.h5`` and, on close, ``DST/data/meta_data.csv``
    and ``DST/case_ids.csv`` (volume -> original case id)."""

    def __init__(
        self,
        fmt: KaggleHDF5Format,
        dst: Path,
        case_ids: Sequence[str],
        channel_order: Sequence[str] = DEFAULT_CHANNEL_ORDER,
    ) -> None:
        super().__init__(fmt, dst, channel_order)
        self.volumes = assign_volumes(case_ids)
        self.meta: list[dict] = []

    def write(self, case: Case) -> Path:
        volume = self.volumes[case.case_id]
        out = self.fmt.write(
            case, self.dst / "data", volume=volume, channel_order=self.channel_order
        )
        self.meta += meta_data_rows(case, volume)
        return out

    def close(self, written: Sequence[str]) -> None:
        import pandas as pd

        if not self.meta:
            return
        pd.DataFrame(self.meta).to_csv(self.dst / "data" / "meta_data.csv", index=False)
        pd.DataFrame(
            {"volume": [self.volumes[c] for c in written], "case_id": list(written)}
        ).to_csv(self.dst / "case_ids.csv", index=False)


class KaggleHDF5Format(DataFormat):
    """The Kaggle pack: one axial slice per HDF5 file; a case is a :class:`PackVolume`."""

    name = "kaggle"
    aliases = ("kaggle_hdf5",)
    describe = (
        "Kaggle HDF5 pack: volume_{V}_slice_{S}.h5 files (e.g. under "
        "BraTS2020_training_data/content/data)"
    )

    def detect(self, path: Path, listing: FolderListing) -> bool:
        """True when ``path`` is, or holds within 4 levels, a folder of slice files."""
        return Path(path).is_dir() and bool(find_slice_dirs(path, listing))

    def list_cases(
        self, path: Path, options: ReadOptions, listing: FolderListing
    ) -> list[CaseEntry]:
        """The volumes of the pack in volume order (:func:`~radsurv.data.hdf5.scan_pack`)."""
        if options.modality_patterns or options.seg_pattern:
            logger.warning("--modality/--seg apply to NIfTI data only; ignored for a Kaggle pack")
        folder = find_slice_dir(path, listing)
        return [CaseEntry(cid, pv, folder) for cid, pv in scan_pack(folder, listing).items()]

    def read(self, ref: PackVolume, options: ReadOptions) -> Case:
        """Assemble the volume (through the volume cache when ``options.cache_dir`` is set)."""
        if options.cache_dir is not None:
            from radsurv.data.cache import read_volume_cached

            return read_volume_cached(ref, Path(options.cache_dir), options.channel_order)
        return read_volume(ref, options.channel_order)

    def problem_file(self, ref: PackVolume) -> str:
        return str(ref.folder or f"volume {ref.volume}")

    def validate(self, ref: PackVolume, options: ReadOptions) -> tuple[Case | None, list[Problem]]:
        """Read every slice and report every problem (each naming its slice file)."""
        case, errors = validate_volume(ref, options.channel_order)
        return case, _problems(errors)

    def manifest_row(
        self, entry: CaseEntry, source: str, checksum: bool, options: ReadOptions
    ) -> dict[str, Any]:
        import h5py

        pack_volume: PackVolume = entry.ref
        order = list(parse_channel_order(options.channel_order))
        files = list(pack_volume.files.values())
        gaps, _ = missing_slices(pack_volume)  # the listing checks of the reader
        if pack_volume.duplicates:
            dup = sorted(pack_volume.duplicates)
            raise DataError(f"volume {pack_volume.volume}: several files for slice(s) {dup[:5]}")
        if not files:
            raise DataError(f"volume {pack_volume.volume}: no slice files")
        if gaps:
            raise DataError(f"volume {pack_volume.volume}: slice file(s) {gaps[:5]} missing")
        try:
            with h5py.File(files[0], "r") as f:
                height, width = f["image"].shape[:2]
        except (OSError, KeyError, ValueError) as exc:
            raise DataError(f"cannot read slice file {files[0]}: {exc}") from exc
        # a modality the case lacks is stored as an all-zero channel (write_kaggle_volume)
        digest, present = _content(files, order) if checksum else ("", order)
        return {
            "case_id": entry.case_id,
            "format": self.name,
            "source": source,
            "files": "",
            "volume": int(pack_volume.volume),
            "n_slices": len(files),
            "shape": f"{len(files)}x{height}x{width}",
            "spacing": "1x1x1",
            "modalities": ",".join(present),
            "has_mask": True,
            "label_convention": "brats2020",
            "channel_order": ",".join(order),
            "checksum": digest,
        }

    def read_row(
        self,
        row: pd.Series,
        source: Path,
        *,
        where: str,
        state: dict,
        cache_dir: Path | None = None,
    ) -> Case:
        """Read the volume a row records; when its files moved, list the folder (once)."""
        case_id = str(row["case_id"])
        order_text = str(row.get("channel_order", "") or "")
        order = tuple(order_text.split(",")) if order_text else DEFAULT_CHANNEL_ORDER
        pack_volume = _recorded_volume(row, source)
        if pack_volume is None:  # files renamed or moved since: list the folder
            packs = state.setdefault("kaggle_packs", {})
            if source not in packs:
                packs[source] = scan_pack(source)
            pack_volume = packs[source].get(case_id)
        if pack_volume is None:
            raise DataError(f"case {case_id}: no slice files for it under {source}")
        return self.read(pack_volume, ReadOptions(channel_order=order, cache_dir=cache_dir))

    def write(
        self,
        case: Case,
        dst: Path,
        *,
        volume: int,
        channel_order: Sequence[str] = DEFAULT_CHANNEL_ORDER,
        standardise: bool = True,
    ) -> Path:
        """Write the case as slice files ``volume_{V}_slice_{S}.h5`` under ``dst``.

        A modality the case lacks is written as zeros and its spacing is not kept (the layout
        stores none): both are logged. See :func:`~radsurv.data.hdf5.write_kaggle_volume`.
        """
        missing = [m for m in channel_order if m not in case.images]
        if missing:
            logger.warning(
                "case %s has no %s: written as zero channel(s) in the Kaggle layout",
                case.case_id,
                ", ".join(missing),
            )
        spacing = tuple(float(s) for s in case.spacing)
        if not np.allclose(spacing, 1.0):
            logger.warning(
                "case %s: spacing %s (x, y, z) mm is not kept by the Kaggle layout (1 mm assumed)",
                case.case_id,
                spacing,
            )
        write_kaggle_volume(
            case, Path(dst), volume, channel_order=channel_order, standardise=standardise
        )
        return Path(dst)

    def open_writer(
        self,
        dst: Path,
        case_ids: Sequence[str],
        channel_order: Sequence[str] = DEFAULT_CHANNEL_ORDER,
    ) -> DatasetWriter:
        """A :class:`KagglePackWriter`: volume N for ``BraTS20_Training_N``, else the next free."""
        return KagglePackWriter(self, dst, case_ids, channel_order)

    def hash_file(self, h: Any, path: Path) -> None:
        """The decoded datasets of one slice file (any HDF5 layout, compression, version)."""
        hash_h5_slice(h, path)
