"""A cache of assembled volumes: one file per case, invalidated when a source file changes.

Assembling a Kaggle-pack volume opens 155 HDF5 files; the cache keeps the assembled
:class:`~radsurv.data.case.Case` as one file per case, so a second access costs one file read.
An entry is one HDF5 file of plain contiguous datasets (read straight into numpy memory, no
decompression or checksumming). Each entry stores a fingerprint of its source files (name, size
and ``mtime_ns`` of each: cheap to compute for 155 files) and of the reader's parameters; a
mismatch means the entry is stale and is rebuilt. Entries are written atomically (a temporary
file in the cache folder, then ``os.replace``), so concurrent readers never see half a file.

The cache folder is, in order: an explicit argument, the environment variable
``RADSURV_CACHE_DIR``, or ``~/.cache/radsurv/volumes``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from radsurv.atomic import temporary_path
from radsurv.data.case import Case
from radsurv.data.hdf5 import DEFAULT_CHANNEL_ORDER, PackVolume, parse_channel_order, read_volume
from radsurv.errors import DataError

logger = logging.getLogger(__name__)

CACHE_ENV = "RADSURV_CACHE_DIR"
CACHE_FORMAT = 1  # bump when the stored layout changes: old entries then count as stale
_SAFE_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class CacheError(DataError):
    """The cache folder or a cache key is unusable."""


def default_cache_dir(folder: Path | str | None = None) -> Path:
    """The cache folder: ``folder`` if given, else ``$RADSURV_CACHE_DIR``, else
    ``~/.cache/radsurv/volumes``."""
    if folder is not None:
        return Path(folder).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "radsurv" / "volumes"


def fingerprint(sources: Sequence[Path], params: str = "") -> str:
    """Hash of the sources' names, sizes and ``mtime_ns`` plus the reader's parameters.

    A source that does not exist hashes as missing, so its reappearance invalidates too.
    """
    digest = hashlib.sha256(f"radsurv-cache-v{CACHE_FORMAT}\n{params}\n".encode())
    for path in sources:
        try:
            st = os.stat(path)
            digest.update(f"{path}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}\tmissing\n".encode())
    return digest.hexdigest()


def _json_default(obj: object) -> object:
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


class VolumeCache:
    """Assembled cases stored one HDF5 file per key under ``folder``.

    Each entry holds the case's arrays as plain contiguous datasets (read straight into numpy
    memory) and, as a JSON attribute, its geometry, provenance and the fingerprint of the
    sources it was built from.

    Parameters
    ----------
    folder
        Cache folder; ``None`` means ``$RADSURV_CACHE_DIR`` or ``~/.cache/radsurv/volumes``.

    Examples
    --------
    >>> cache = VolumeCache(Path("/tmp/radsurv-cache"))  # doctest: +SKIP
    >>> case = cache.load("BraTS20_Training_001", pv.sources, lambda: read_volume(pv))
    ... # doctest: +SKIP
    """

    suffix = ".h5"

    def __init__(self, folder: Path | str | None = None) -> None:
        self.folder = default_cache_dir(folder)

    def __repr__(self) -> str:
        return f"VolumeCache({str(self.folder)!r})"

    def path_for(self, key: str) -> Path:
        """The file that holds entry ``key``."""
        if not _SAFE_KEY.match(key):
            raise CacheError(
                f"cache key {key!r} is not a safe file name (letters, digits, '.', '_', '-')"
            )
        return self.folder / f"{key}{self.suffix}"

    def load(
        self,
        key: str,
        sources: Sequence[Path],
        loader: Callable[[], Case],
        params: str = "",
    ) -> Case:
        """Return the cached case for ``key``, or build it with ``loader`` and store it.

        Parameters
        ----------
        key
            Entry name (a safe file name, e.g. the case id plus a tag of its source folder).
        sources
            The files the case is built from; a change in any of their sizes or mtimes (or
            in the list itself) invalidates the entry.
        loader
            Builds the case on a miss. Its errors propagate; nothing is cached then.
        params
            The reader's parameters (e.g. channel order); a change invalidates the entry.
        """
        path = self.path_for(key)
        # fingerprint before loading: a source changing mid-read leaves a stale-marked entry
        fp = fingerprint(sources, params)
        case = self._read(path, fp)
        if case is not None:
            logger.debug("cache hit %s", path)
            return case
        case = loader()
        try:
            self._write(path, fp, case)
        except OSError as exc:
            # the case itself is fine: hand it back and say why it could not be kept
            logger.warning("could not write cache entry %s (%s); continuing without it", path, exc)
        return case

    def _read(self, path: Path, fp: str) -> Case | None:
        import h5py

        try:
            with h5py.File(path, "r") as f:
                meta = json.loads(f.attrs["meta"])
                if meta.get("fingerprint") != fp:
                    logger.debug("cache entry %s is stale: sources or parameters changed", path)
                    return None
                images = {name: _read_array(f[f"images/{name}"]) for name in meta["modalities"]}
                labels = _read_array(f["labels"]) if "labels" in f else None
        except FileNotFoundError:
            return None
        except (OSError, KeyError, ValueError, TypeError) as exc:
            logger.warning("cache entry %s is unreadable (%s); rebuilding it", path, exc)
            return None
        return Case(
            case_id=meta["case_id"],
            images=images,
            labels=labels,
            spacing=tuple(meta["spacing"]),
            origin=tuple(meta["origin"]),
            direction=tuple(meta["direction"]),
            provenance=meta["provenance"],
        )

    def _write(self, path: Path, fp: str, case: Case) -> None:
        import h5py

        self.folder.mkdir(parents=True, exist_ok=True)
        meta = {
            "fingerprint": fp,
            "case_id": case.case_id,
            "modalities": list(case.images),
            "spacing": list(case.spacing),
            "origin": list(case.origin),
            "direction": list(case.direction),
            "provenance": case.provenance,
        }
        tmp = temporary_path(path)
        try:
            with h5py.File(tmp, "w") as f:
                f.attrs["meta"] = json.dumps(meta, default=_json_default)
                for name, arr in case.images.items():
                    f.create_dataset(f"images/{name}", data=arr)
                if case.labels is not None:
                    f.create_dataset("labels", data=case.labels)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        logger.debug("cached %s", path)

    def clear(self) -> int:
        """Delete every entry (and stray temporary file); return how many files were removed."""
        if not self.folder.is_dir():
            return 0
        removed = 0
        for path in self.folder.iterdir():
            if path.suffix in (self.suffix, ".tmp") and path.is_file():
                path.unlink()
                removed += 1
        return removed


def _read_array(dataset: object) -> np.ndarray:
    """Read a whole HDF5 dataset straight into a new numpy array (no intermediate copy)."""
    out = np.empty(dataset.shape, dtype=dataset.dtype)  # type: ignore[attr-defined]
    if out.size:
        dataset.read_direct(out)  # type: ignore[attr-defined]
    return out


def pack_cache_key(pack_volume: PackVolume) -> str:
    """Cache key of a pack volume: its case id plus a tag of its folder, so that two packs with
    the same volume numbers (the real pack and a synthetic cohort) keep separate entries."""
    folder = str(pack_volume.folder.resolve()) if pack_volume.folder else ""
    tag = hashlib.sha1(folder.encode(), usedforsecurity=False).hexdigest()[:10]
    return f"{pack_volume.case_id}-{tag}"


def read_volume_cached(
    pack_volume: PackVolume,
    cache_dir: Path | str | None = None,
    channel_order: Sequence[str] | str = DEFAULT_CHANNEL_ORDER,
) -> Case:
    """:func:`~radsurv.data.hdf5.read_volume` through a :class:`VolumeCache`.

    The first call assembles the volume and stores it; later calls cost one file read until a
    slice file changes (size or mtime) or the channel order differs.

    Parameters
    ----------
    pack_volume
        One entry of :func:`~radsurv.data.hdf5.scan_pack`.
    cache_dir
        Cache folder; ``None`` means ``$RADSURV_CACHE_DIR`` or ``~/.cache/radsurv/volumes``.
    channel_order
        Modality of each image channel.
    """
    order = parse_channel_order(channel_order)
    cache = VolumeCache(cache_dir)
    return cache.load(
        pack_cache_key(pack_volume),
        pack_volume.sources,
        lambda: read_volume(pack_volume, order),
        params=f"kaggle_hdf5;channel_order={','.join(order)}",
    )
