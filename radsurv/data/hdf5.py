"""The Kaggle BraTS2020 HDF5 pack: one axial slice per file.

Layout: ``BraTS2020_training_data/content/data/volume_{V}_slice_{S}.h5`` with datasets ``image``
(H, W, 4) float, standardised per volume, channels FLAIR, T1, T1Gd, T2 by default, and ``mask``
(H, W, 3) one-hot of NCR (label 1), ED (label 2), ET (label 4). Volume V is case
``BraTS20_Training_{V:03d}``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from radsurv.data.case import Case, exact_float_dtype
from radsurv.data.labels import LABEL_ED, LABEL_ET, LABEL_NCR, MODALITIES
from radsurv.data.listing import FolderListing
from radsurv.errors import ConfigError, DataError

if TYPE_CHECKING:
    import h5py
    import pandas as pd

logger = logging.getLogger(__name__)

DEFAULT_CHANNEL_ORDER: tuple[str, ...] = ("flair", "t1", "t1gd", "t2")
MASK_CHANNEL_LABELS: tuple[int, ...] = (LABEL_NCR, LABEL_ED, LABEL_ET)


def case_id_for_volume(volume: int) -> str:
    """Canonical case id of Kaggle volume number ``volume`` (``BraTS20_Training_{V:03d}``)."""
    return f"BraTS20_Training_{volume:03d}"


def slice_filename(volume: int, slice_index: int) -> str:
    """File name of one slice in the pack."""
    return f"volume_{volume}_slice_{slice_index}.h5"


def standardise_per_volume(array: np.ndarray) -> np.ndarray:
    """Standardise a volume the way the Kaggle pack does: zero mean, unit sd over the volume."""
    arr = array.astype(np.float64)
    sd = arr.std()
    return (arr - arr.mean()) / (sd if sd > 0 else 1.0)


def meta_data_rows(case: Case, volume: int) -> list[dict[str, int | str]]:
    """Rows of the pack's ``meta_data.csv`` for one written volume.

    Paths point to ``/content/data/`` as in the Kaggle pack; ``target`` is 1 on slices that
    hold tumour.
    """
    n_slices = case.shape[0]
    if case.labels is None:
        tumour = np.zeros(n_slices, dtype=bool)
    else:
        tumour = (case.labels > 0).any(axis=(1, 2))
    return [
        {
            "slice_path": f"/content/data/{slice_filename(volume, z)}",
            "target": int(tumour[z]),
            "volume": volume,
            "slice": z,
        }
        for z in range(n_slices)
    ]


def write_kaggle_volume(
    case: Case,
    out_dir: Path,
    volume: int,
    channel_order: Sequence[str] = DEFAULT_CHANNEL_ORDER,
    standardise: bool = True,
) -> list[Path]:
    """Write one case as Kaggle-pack slice files ``volume_{V}_slice_{S}.h5`` under ``out_dir``.

    Images are standardised per volume like the pack (``standardise=True``); a modality the case
    lacks is written as zeros. The mask is one-hot (NCR, ED, ET) uint8. Returns the paths written,
    in slice order.
    """
    import h5py

    out_dir.mkdir(parents=True, exist_ok=True)
    shape = case.shape
    channels = []
    for modality in channel_order:
        arr = case.images.get(modality)
        if arr is None:
            channels.append(np.zeros(shape, dtype=np.float64))
        else:
            channels.append(standardise_per_volume(arr) if standardise else arr.astype(np.float64))
    image = np.stack(channels, axis=-1)  # (z, y, x, c)
    labels = case.labels if case.labels is not None else np.zeros(shape, dtype=np.uint8)
    mask = np.stack([labels == lab for lab in MASK_CHANNEL_LABELS], axis=-1).astype(np.uint8)
    paths = []
    for z in range(shape[0]):
        path = out_dir / slice_filename(volume, z)
        with h5py.File(path, "w") as f:
            f.create_dataset("image", data=image[z])
            f.create_dataset("mask", data=mask[z])
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# Reading the pack
# ---------------------------------------------------------------------------------------------

SLICE_PATTERN = re.compile(r"^volume_(\d+)_slice_(\d+)\.h5$", re.IGNORECASE)
PACK_SUBDIR = Path("BraTS2020_training_data") / "content" / "data"
META_DATA_NAME = "meta_data.csv"
META_DATA_COLUMNS: tuple[str, ...] = ("slice_path", "target", "volume", "slice")
_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SEARCH_DEPTH = 4  # how deep find_slice_dir looks below the folder it is given
_WHERE = "give the pack root (.../BraTS2020_training_data/content/data) or a folder of slices"


class PackError(DataError):
    """A Kaggle-pack file or volume is missing, unreadable or inconsistent.

    Attributes
    ----------
    file
        The file (or folder) the problem is about.
    problem
        What is wrong, without the file name (used by ``radsurv check`` tables).
    """

    def __init__(self, file: str | Path, problem: str, hint: str = "") -> None:
        self.file = str(file)
        self.problem = problem
        self.hint = hint
        super().__init__(f"{file}: {problem}" + (f"; {hint}" if hint else ""))

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        # keep it picklable across processes (Dask workers) despite the custom __init__
        return (type(self), (self.file, self.problem, self.hint))


class PackVolume:
    """The slice files of one pack volume, as listed by :func:`scan_pack`.

    Attributes
    ----------
    volume
        Volume number V of ``volume_{V}_slice_{S}.h5``.
    files
        Slice number -> file, in slice order.
    duplicates
        Slice number -> every file claiming it, for slices more than one file claims
        (e.g. ``volume_1_slice_5.h5`` and ``volume_1_slice_05.h5``).
    expected_slices
        Slice count meta_data.csv lists for this volume, when it was readable; lets a reader
        report trailing slices that are missing.
    listed_from
        ``"meta_data.csv"`` or ``"files"``: how the volume was listed.
    """

    def __init__(
        self,
        volume: int,
        files: dict[int, Path] | None = None,
        duplicates: dict[int, list[Path]] | None = None,
        expected_slices: int | None = None,
        listed_from: str = "files",
        *,
        folder: Path | None = None,
        names: dict[int, str] | None = None,
    ) -> None:
        self.volume = volume
        self.duplicates = duplicates if duplicates is not None else {}
        self.expected_slices = expected_slices
        self.listed_from = listed_from
        # scan_pack passes folder + names: Path objects are built on first use, because
        # building 57,195 of them up front costs more than listing the folder
        self._files = dict(sorted(files.items())) if files is not None else None
        self._folder = folder
        self._names = names or {}

    @property
    def files(self) -> dict[int, Path]:
        """Slice number -> file, in slice order."""
        if self._files is None:
            folder = self._folder or Path()
            self._files = {s: folder / self._names[s] for s in sorted(self._names)}
        return self._files

    @property
    def case_id(self) -> str:
        """Canonical case id ``BraTS20_Training_{V:03d}``."""
        return case_id_for_volume(self.volume)

    @property
    def folder(self) -> Path | None:
        """The folder holding the slices (``None`` for a volume without files)."""
        if self._folder is not None:
            return self._folder
        first = next(iter(self.files.values()), None)
        return first.parent if first is not None else None

    @property
    def sources(self) -> list[Path]:
        """Every file of the volume in slice order (duplicates included)."""
        paths = list(self.files.values())
        extra = [p for s in sorted(self.duplicates) for p in self.duplicates[s]]
        return paths + [p for p in extra if p not in paths]

    def __repr__(self) -> str:
        return (
            f"PackVolume(volume={self.volume}, slices={len(self.files)}, "
            f"duplicates={sorted(self.duplicates)}, folder={str(self.folder)!r}, "
            f"listed_from={self.listed_from!r})"
        )


def _has_slices(folder: Path, listing: FolderListing) -> bool:
    try:
        return any(SLICE_PATTERN.match(name) for name in listing.names(folder))
    except OSError:
        return False


def find_slice_dirs(path: Path, listing: FolderListing | None = None) -> list[Path]:
    """Every folder holding ``volume_*_slice_*.h5`` files at ``path`` or up to 4 levels below.

    The usual places (``path``, ``path/BraTS2020_training_data/content/data``,
    ``path/content/data``, ``path/data``) are tried first: the first of them that holds slices
    is the only one returned. ``listing`` shares folder listings with the rest of a run.
    """
    path = Path(path)
    listing = listing if listing is not None else FolderListing()
    for candidate in (path, path / PACK_SUBDIR, path / "content" / "data", path / "data"):
        if candidate.is_dir() and _has_slices(candidate, listing):
            return [candidate]
    found: list[Path] = []
    base_depth = len(path.parts)
    for here, dirs, _files in listing.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if len(here.parts) - base_depth >= _SEARCH_DEPTH:
            dirs[:] = []
        if here != path and _has_slices(here, listing):
            found.append(here)
            dirs[:] = []  # a slice folder's subfolders are not another pack
    return found


def find_slice_dir(path: Path, listing: FolderListing | None = None) -> Path:
    """Find the folder holding ``volume_*_slice_*.h5`` files.

    Parameters
    ----------
    path
        The pack's root (the folder holding ``BraTS2020_training_data``), any folder on the way
        down to ``BraTS2020_training_data/content/data``, that folder itself, a synth output
        (``OUT/data``) or any folder with exactly one slice folder up to 4 levels below it.
    listing
        Folder listings shared with the rest of a run (see :mod:`radsurv.data.listing`).

    Raises
    ------
    PackError
        When ``path`` is missing or not a folder, holds no slice files, or holds several
        slice folders (ambiguous).
    """
    path = Path(path)
    if not path.exists():
        raise PackError(path, "does not exist", _WHERE)
    if not path.is_dir():
        raise PackError(path, "is not a folder", _WHERE)
    found = find_slice_dirs(path, listing)
    if len(found) == 1:
        return found[0]
    if found:
        listed = ", ".join(str(f) for f in found[:5])
        raise PackError(path, f"holds several slice folders ({listed})", "give one of them")
    raise PackError(path, "holds no volume_{V}_slice_{S}.h5 files", _WHERE)


def read_meta_data(path: Path) -> pd.DataFrame:
    """Read the pack's ``meta_data.csv`` (``slice_path,target,volume,slice``).

    Returns the table with integer ``volume`` and ``slice`` and a ``file`` column holding the
    base name of ``slice_path`` (its folder, ``/content/data/``, is where Kaggle's notebook kept
    it and is ignored).

    Raises
    ------
    PackError
        When the file cannot be parsed, lacks a column, or holds non-integer volume/slice values.
    """
    import pandas as pd

    path = Path(path)
    try:
        table = pd.read_csv(path, dtype={"slice_path": str})
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise PackError(path, f"cannot be read as CSV ({exc})", "fix or delete it") from None
    missing = [c for c in ("slice_path", "volume", "slice") if c not in table.columns]
    if missing:
        raise PackError(
            path, f"lacks column(s) {missing} (has {list(table.columns)})", "fix or delete it"
        )
    for column in ("volume", "slice"):
        values = pd.to_numeric(table[column], errors="coerce")
        bad = values.isna() | (values != values.round()) | (values < 0)
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise PackError(
                path,
                f"row {row + 2}, column {column}: {table[column].iloc[row]!r} is not a "
                "non-negative integer",
                "fix or delete it",
            )
        table[column] = values.astype(np.int64)
    table["file"] = [p.replace("\\", "/").rsplit("/", 1)[-1] for p in table["slice_path"]]
    return table


def _listing_from_meta(table: pd.DataFrame, names: set[str]) -> tuple[list | None, str]:
    """(volume, slice, name) rows from meta_data.csv, or ``None`` and why it is inconsistent."""
    expected = [slice_filename(v, s) for v, s in zip(table["volume"], table["slice"], strict=True)]
    files = table["file"].tolist()
    for row, (want, got) in enumerate(zip(expected, files, strict=True)):
        if want != got:
            return None, f"row {row + 2}: slice_path names {got} but volume/slice say {want}"
    listed = set(files)
    if len(listed) != len(files):
        return None, f"{len(files) - len(listed)} duplicate row(s)"
    absent, unlisted = listed - names, names - listed
    if absent or unlisted:
        parts = []
        if absent:
            parts.append(f"{len(absent)} listed file(s) absent (e.g. {min(absent)})")
        if unlisted:
            parts.append(f"{len(unlisted)} file(s) not listed (e.g. {min(unlisted)})")
        return None, "; ".join(parts)
    rows = list(zip(table["volume"].tolist(), table["slice"].tolist(), files, strict=True))
    return rows, "consistent with the files"


def scan_pack(path: Path, listing: FolderListing | None = None) -> dict[str, PackVolume]:
    """List the volumes of a Kaggle pack (or any folder of ``volume_*_slice_*.h5`` files).

    Uses ``meta_data.csv`` beside the slices when it is present and consistent with the files
    (same file names, volume/slice columns matching them); otherwise lists the files and logs
    why the table was not used.

    Parameters
    ----------
    path
        Anything :func:`find_slice_dir` accepts.
    listing
        Folder listings shared with the rest of a run: the slice folder is listed once.

    Returns
    -------
    dict
        Case id -> :class:`PackVolume`, in volume order.

    Examples
    --------
    >>> volumes = scan_pack(Path("BraTS2020_training_data/content/data"))  # doctest: +SKIP
    >>> volumes["BraTS20_Training_001"].files[0].name  # doctest: +SKIP
    'volume_1_slice_0.h5'
    """
    listing = listing if listing is not None else FolderListing()
    folder = find_slice_dir(path, listing)
    names = [n for n in listing.names(folder) if n.lower().endswith((".h5", ".hdf5"))]
    rows: list | None = None
    expected: dict[int, int] = {}
    listed_from = "files"
    meta_path = folder / META_DATA_NAME
    if meta_path.is_file():
        try:
            table = read_meta_data(meta_path)
            expected = table.groupby("volume")["slice"].nunique().to_dict()
            rows, reason = _listing_from_meta(table, set(names))
        except PackError as exc:
            rows, reason = None, exc.problem
        if rows is None:
            logger.warning(
                "%s not used for listing: %s; listing the files instead", meta_path, reason
            )
        else:
            listed_from = META_DATA_NAME
            logger.debug("listing %s from %s (%s)", folder, meta_path, reason)
    if rows is None:
        rows = []
        for name in names:
            match = SLICE_PATTERN.match(name)
            if match:
                rows.append((int(match[1]), int(match[2]), name))
        if len(rows) < len(names):
            logger.warning(
                "%s: ignoring %d HDF5 file(s) not named volume_V_slice_S.h5",
                folder,
                len(names) - len(rows),
            )
    by_volume: dict[int, dict[int, str]] = {}
    duplicates: dict[int, dict[int, list[Path]]] = {}
    for volume, slice_index, name in rows:
        slices = by_volume.setdefault(volume, {})
        if slice_index in slices:
            paths = duplicates.setdefault(volume, {}).setdefault(
                slice_index, [folder / slices[slice_index]]
            )
            paths.append(folder / name)
        else:
            slices[slice_index] = name
    volumes: dict[int, PackVolume] = {}
    for volume in sorted(by_volume):
        dups = {s: sorted(paths) for s, paths in duplicates.get(volume, {}).items()}
        volumes[volume] = PackVolume(
            volume,
            duplicates=dups,
            expected_slices=expected.get(volume),
            listed_from=listed_from,
            folder=folder,
            names=by_volume[volume],
        )
    logger.info("%s: %d volume(s), %d slice file(s)", folder, len(volumes), len(rows))
    return {pv.case_id: pv for pv in volumes.values()}


def parse_channel_order(channel_order: Sequence[str] | str) -> tuple[str, ...]:
    """Validate an image channel order (``"flair,t1,t1gd,t2"`` or a sequence of modality names).

    Raises
    ------
    ConfigError
        When a name is not a modality (``flair``, ``t1``, ``t1gd``, ``t2``) or repeats.
    """
    if isinstance(channel_order, str):
        names = [n.strip().lower() for n in channel_order.split(",") if n.strip()]
    else:
        names = [str(n).strip().lower() for n in channel_order]
    aliases = {"t1ce": "t1gd", "t1c": "t1gd"}
    names = [aliases.get(n, n) for n in names]
    unknown = [n for n in names if n not in MODALITIES]
    if unknown or not names:
        raise ConfigError(
            f"channel order {channel_order!r}: unknown modality(ies) {unknown}; "
            f"use names from {', '.join(MODALITIES)}, e.g. flair,t1,t1gd,t2"
        )
    if len(set(names)) != len(names):
        raise ConfigError(f"channel order {channel_order!r} names a modality twice")
    return tuple(names)


def _open_error(path: Path, exc: BaseException) -> PackError:
    """Say why an HDF5 file cannot be opened: missing, zero bytes, not HDF5, truncated."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return PackError(path, "file is missing (deleted or a broken link)", "restore the slice")
    except OSError as err:
        return PackError(path, f"file is unreadable ({err.strerror})", "check permissions")
    if not path.is_file():
        return PackError(path, "is not a regular file", "replace it with the slice file")
    if st.st_size == 0:
        return PackError(path, "zero-byte file", "re-download or re-extract the slice")
    try:
        with open(path, "rb") as fh:
            head = fh.read(2048 + 8)
    except OSError as err:
        return PackError(path, f"file is unreadable ({err.strerror})", "check permissions")
    if not any(head[o : o + 8] == _HDF5_SIGNATURE for o in (0, 512, 1024, 2048)):
        return PackError(
            path, f"not an HDF5 file (starts with {head[:8]!r})", "replace it with the slice file"
        )
    detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    what = "truncated HDF5 file" if "truncat" in detail.lower() else "corrupt HDF5 file"
    return PackError(
        path, f"{what} ({st.st_size} bytes; h5py: {detail})", "re-download or re-extract it"
    )


def _dataset(f: h5py.File, name: str, path: Path) -> h5py.Dataset:
    import h5py

    obj = f.get(name)
    if not isinstance(obj, h5py.Dataset):
        has = sorted(f.keys())
        what = "is not a dataset" if obj is not None else "is missing"
        raise PackError(
            path, f"dataset {name!r} {what} (file holds {has})", "the pack needs image and mask"
        )
    if obj.dtype.kind not in "biuf":
        raise PackError(path, f"dataset {name!r} has non-numeric dtype {obj.dtype}")
    return obj


@dataclass
class _Assembly:
    """Buffers and bookkeeping of one volume being assembled."""

    pack_volume: PackVolume
    order: tuple[str, ...]
    on_problem: Callable[[PackError], None]
    n_slices: int = 0
    height: int = -1
    width: int = -1
    ref_file: Path | None = None
    images: np.ndarray | None = None  # (c, z, y, x) float32, float64 for float64 storage
    labels: np.ndarray | None = None  # (z, y, x) uint8
    image_dtypes: set[str] = field(default_factory=set)
    mask_dtypes: set[str] = field(default_factory=set)
    mask_on_values: set[float] = field(default_factory=set)
    nonzero_channels: np.ndarray | None = None
    failed: bool = False

    def problem(self, exc: PackError) -> None:
        self.failed = True
        self.on_problem(exc)


def missing_slices(pack_volume: PackVolume) -> tuple[list[int], int]:
    """The slice numbers a volume lacks and the slice count it should have.

    The count is one past the highest slice file, or the count ``meta_data.csv`` lists when
    larger (trailing slices missing).
    """
    files = pack_volume.files
    top = max(max(files) + 1 if files else 0, pack_volume.expected_slices or 0)
    return [s for s in range(top) if s not in files], top


def _check_listing(asm: _Assembly) -> list[int]:
    """Report duplicate and missing slice numbers; return the slice numbers to read."""
    pv = asm.pack_volume
    where = pv.folder or Path(f"volume {pv.volume}")
    for s, paths in pv.duplicates.items():
        names = ", ".join(p.name for p in paths)
        asm.problem(
            PackError(paths[0], f"duplicate slice {s} of volume {pv.volume}: {names}", "keep one")
        )
    if not pv.files:
        asm.problem(PackError(where, f"empty volume: volume {pv.volume} has no slice files"))
        return []
    missing, top = missing_slices(pv)
    if missing:
        shown = ", ".join(str(s) for s in missing[:10]) + (" ..." if len(missing) > 10 else "")
        first = where / slice_filename(pv.volume, missing[0])
        asm.problem(
            PackError(
                first,
                f"volume {pv.volume} lacks {len(missing)} of {top} slices (slice {shown})",
                "restore the missing slice files",
            )
        )
    return sorted(pv.files)


def _read_slice(asm: _Assembly, z: int, path: Path, bufs: dict) -> None:
    """Read one slice file into the volume buffers, reporting (not raising) what is wrong."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except (OSError, ValueError) as exc:
        asm.problem(_open_error(path, exc))
        return
    with f:
        try:
            dimg = _dataset(f, "image", path)
            dmask = _dataset(f, "mask", path)
        except PackError as exc:
            asm.problem(exc)
            return
        n_chan = len(asm.order)
        if dimg.ndim != 3 or dimg.shape[2] != n_chan:
            asm.problem(
                PackError(
                    path,
                    f"image has shape {dimg.shape}; expected (H, W, {n_chan}) for channel order "
                    f"{','.join(asm.order)}",
                    "give --channel-order with one name per image channel",
                )
            )
            return
        if dmask.ndim != 3 or dmask.shape[2] != len(MASK_CHANNEL_LABELS):
            asm.problem(
                PackError(path, f"mask has shape {dmask.shape}; expected (H, W, 3) (NCR, ED, ET)")
            )
            return
        h, w = dimg.shape[:2]
        if dmask.shape[:2] != (h, w):
            asm.problem(
                PackError(path, f"mask shape {dmask.shape} does not match image {dimg.shape}")
            )
            return
        if h == 0 or w == 0:
            asm.problem(PackError(path, f"image has shape {dimg.shape}: no voxels"))
            return
        if asm.images is None:
            asm.height, asm.width, asm.ref_file = h, w, path
            asm.images = np.empty((n_chan, asm.n_slices, h, w), exact_float_dtype(dimg.dtype))
            asm.labels = np.zeros((asm.n_slices, h, w), dtype=np.uint8)
            asm.nonzero_channels = np.zeros(n_chan, dtype=bool)
        elif (h, w) != (asm.height, asm.width):
            asm.problem(
                PackError(
                    path,
                    f"in-plane shape {(h, w)} differs from {(asm.height, asm.width)} of "
                    f"{asm.ref_file.name if asm.ref_file else 'the first slice'}",
                    "all slices of a volume must have one shape",
                )
            )
            return
        # read into a buffer of the stored dtype (no HDF5-side conversion), reused across slices
        img_buf = bufs.get(("image", dimg.dtype, dimg.shape))
        if img_buf is None:
            img_buf = bufs[("image", dimg.dtype, dimg.shape)] = np.empty(dimg.shape, dimg.dtype)
        mask_buf = bufs.get(("mask", dmask.dtype, dmask.shape))
        if mask_buf is None:
            mask_buf = bufs[("mask", dmask.dtype, dmask.shape)] = np.empty(dmask.shape, dmask.dtype)
        try:
            if dimg.size:
                dimg.read_direct(img_buf)
            if dmask.size:
                dmask.read_direct(mask_buf)
        except (OSError, ValueError, TypeError) as exc:
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            asm.problem(
                PackError(path, f"cannot read its data (truncated or corrupt? h5py: {detail})")
            )
            return
    asm.image_dtypes.add(str(dimg.dtype))
    asm.mask_dtypes.add(str(dmask.dtype))
    if exact_float_dtype(dimg.dtype).itemsize > asm.images.dtype.itemsize:
        asm.images = asm.images.astype(np.float64)  # a wider slice after narrower ones: exact
    _store_image(asm, z, path, img_buf)
    _store_mask(asm, z, path, mask_buf)


def _store_image(asm: _Assembly, z: int, path: Path, buf: np.ndarray) -> None:
    """Copy one slice's channels into the volume (exact: float32, or float64 for float64
    storage); report NaN/inf voxels and values beyond float32 (what segmentation computes in)."""
    assert asm.images is not None and asm.nonzero_channels is not None
    slab = asm.images[:, z]  # (c, y, x): one slice of every channel
    with np.errstate(over="ignore", invalid="ignore"):
        slab[...] = buf.transpose(2, 0, 1)  # float conversion and channel split in one copy
    # reduce along contiguous rows (fast); NaN propagates into max/min
    flat = slab.reshape(slab.shape[0], -1)
    hi = flat.max(axis=1)
    lo = flat.min(axis=1)
    if buf.dtype.kind == "f":
        big = np.finfo(np.float32).max
        bad = ~(np.isfinite(hi) & np.isfinite(lo)) | (hi > big) | (lo < -big)
        if bad.any():
            for c in np.flatnonzero(bad):
                chan = buf[..., c]
                n_nan = int(np.count_nonzero(np.isnan(chan)))
                n_inf = int(np.count_nonzero(np.isinf(chan)))
                with np.errstate(invalid="ignore"):
                    n_big = int(np.count_nonzero(np.abs(chan) > big)) - n_inf
                what = ", ".join(
                    f"{n} {k}"
                    for n, k in ((n_nan, "NaN"), (n_inf, "inf"), (n_big, "beyond float32"))
                    if n
                )
                asm.problem(
                    PackError(
                        path,
                        f"image channel {c} ({asm.order[c]}) holds {what} voxel(s)",
                        "repair or exclude the case",
                    )
                )
            return
    asm.nonzero_channels |= (hi != 0) | (lo != 0)


_MASK_LUT = np.array(MASK_CHANNEL_LABELS, dtype=np.uint8)


def _store_mask(asm: _Assembly, z: int, path: Path, buf: np.ndarray) -> None:
    """Check one slice's one-hot mask (0/1, 0/255 or bool) and store it as canonical labels."""
    assert asm.labels is not None
    flat = buf.reshape(-1)
    if flat.dtype == np.bool_:
        flat = flat.view(np.uint8)
    hi = flat.max()
    if hi == 0 and (flat.dtype.kind in "ub" or flat.min() == 0):
        return  # no tumour in this slice; labels are pre-zeroed
    # tumour is sparse: work on the indices of the "on" entries, not on the whole slice
    on = np.flatnonzero(flat)
    if buf.dtype != np.bool_:
        lo = flat.min()
        whole = hi == 1 and flat.dtype.kind in "ui"  # ints in [0, 1] are 0/1 already
        if not (lo >= 0 and hi in (1, 255) and (whole or bool(np.all(flat[on] == hi)))):
            values = np.unique(flat[on] if on.size else flat)[:8].tolist()
            asm.problem(
                PackError(
                    path,
                    f"mask holds values {values}; expected one-hot 0/1, 0/255 or bool",
                    "repair the mask",
                )
            )
            return
        asm.mask_on_values.add(float(hi))
    voxel, channel = np.divmod(on, len(MASK_CHANNEL_LABELS))
    # np.flatnonzero is sorted, so a voxel with several channels on shows up as a repeat
    repeats = voxel[1:] == voxel[:-1]
    if repeats.any():
        n = int(np.unique(voxel[1:][repeats]).size)
        asm.problem(
            PackError(
                path,
                f"mask channels overlap in {n} voxel(s) (not one-hot: a voxel has more than one "
                "of NCR, ED, ET)",
                "repair the mask",
            )
        )
        return
    asm.labels[z].reshape(-1)[voxel] = _MASK_LUT[channel]


def _assemble(
    pack_volume: PackVolume,
    channel_order: Sequence[str] | str,
    on_problem: Callable[[PackError], None],
    keep_empty_channels: bool,
) -> Case | None:
    """Read every slice, reporting each problem to ``on_problem``; a Case when none was found."""
    order = parse_channel_order(channel_order)
    asm = _Assembly(pack_volume, order, on_problem)
    slices = _check_listing(asm)
    asm.n_slices = len(slices)
    bufs: dict = {}
    for z, s in enumerate(slices):
        _read_slice(asm, z, pack_volume.files[s], bufs)
    if asm.failed:
        return None
    if asm.images is None or asm.nonzero_channels is None or asm.labels is None:
        return None  # unreachable: no slice read without a problem reported
    folder = pack_volume.folder
    if not asm.nonzero_channels.any():
        asm.problem(
            PackError(
                folder or pack_volume.volume,
                f"empty volume: every image voxel of volume {pack_volume.volume} is 0 "
                f"in all {asm.n_slices} slices",
                "exclude the case or restore its data",
            )
        )
        return None
    images = {}
    dropped = []
    for c, name in enumerate(order):
        if asm.nonzero_channels[c] or keep_empty_channels:
            images[name] = asm.images[c]
        else:
            dropped.append(name)
    if dropped:
        # write_kaggle_volume stores a modality the case lacks as zeros: read it back as absent
        logger.info("%s: channel(s) %s are all 0: treated as missing", pack_volume.case_id, dropped)
    on_values = sorted(asm.mask_on_values)
    provenance = {
        "format": "kaggle",
        "source": str(folder),
        "volume": pack_volume.volume,
        "n_slices": asm.n_slices,
        "first_slice": slice_filename(pack_volume.volume, slices[0]),
        "channel_order": list(order),
        "missing_modalities": dropped,
        "image_dtype": ",".join(sorted(asm.image_dtypes)),
        "mask_dtype": ",".join(sorted(asm.mask_dtypes)),
        "mask_on_values": [int(v) for v in on_values],
        "listed_from": pack_volume.listed_from,
        "spacing_assumed": "1 mm isotropic (the pack stores no geometry)",
    }
    return Case(
        case_id=pack_volume.case_id,
        images=images,
        labels=asm.labels,
        spacing=(1.0, 1.0, 1.0),
        provenance=provenance,
    )


def read_volume(
    pack_volume: PackVolume,
    channel_order: Sequence[str] | str = DEFAULT_CHANNEL_ORDER,
    *,
    keep_empty_channels: bool = False,
) -> Case:
    """Assemble one pack volume into a :class:`Case`.

    Images become (z, y, x) arrays holding the stored values exactly (float32, float64 for
    float64 storage), one per modality in ``channel_order``; the one-hot
    mask becomes canonical labels (uint8: 1 NCR, 2 ED, 4 ET); spacing is 1 mm. Any float or int
    dtype, compressed/chunked datasets, masks stored as 0/1, 0/255 or bool, any in-plane size and
    any slice count are read. A channel that is 0 everywhere (how :func:`write_kaggle_volume`
    stores a modality a case lacks) is left out unless ``keep_empty_channels``.

    Parameters
    ----------
    pack_volume
        One entry of :func:`scan_pack`.
    channel_order
        Modality of each image channel, default FLAIR, T1, T1Gd, T2 (``radsurv check
        --channels`` tells whether the data agree).

    Raises
    ------
    PackError
        On the first problem found (missing or duplicate slices, unreadable, zero-byte,
        truncated or non-HDF5 files, missing datasets, wrong channel counts, shapes that differ
        between slices, NaN/inf voxels, masks that are not one-hot, empty volumes); the message
        names the file. :func:`validate_volume` lists all problems instead.

    Examples
    --------
    >>> pv = scan_pack(Path("BraTS2020_training_data/content/data"))["BraTS20_Training_001"]
    ... # doctest: +SKIP
    >>> case = read_volume(pv)  # doctest: +SKIP
    >>> case.shape, case.modalities  # doctest: +SKIP
    ((155, 240, 240), ['flair', 't1', 't1gd', 't2'])
    """

    def raise_it(exc: PackError) -> None:
        raise exc

    case = _assemble(pack_volume, channel_order, raise_it, keep_empty_channels)
    if case is None:  # pragma: no cover - raise_it raised already
        raise PackError(pack_volume.folder or pack_volume.volume, "could not be assembled")
    return case


def validate_volume(
    pack_volume: PackVolume,
    channel_order: Sequence[str] | str = DEFAULT_CHANNEL_ORDER,
) -> tuple[Case | None, list[PackError]]:
    """Read every slice of a volume and collect all problems instead of stopping at the first.

    Returns
    -------
    (case, problems)
        The assembled :class:`Case` when there is no problem (``None`` otherwise) and the list
        of problems, each a :class:`PackError` naming its file.
    """
    problems: list[PackError] = []
    case = _assemble(pack_volume, channel_order, problems.append, keep_empty_channels=False)
    return case, problems
