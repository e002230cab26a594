"""The dataset formats radsurv reads and writes, registered once.

Each format is one module behind :class:`~radsurv.data.formats.base.DataFormat` (detect, list
cases, read, validate, describe as manifest rows, write):

========= ===================================================== =========================
name      layout                                                 module
========= ===================================================== =========================
kaggle    Kaggle BraTS2020 HDF5 pack, ``volume_{V}_slice_{S}.h5`` :mod:`.kaggle_hdf5`
nifti     BraTS NIfTI case folders                               :mod:`.nifti`
========= ===================================================== =========================

The canonical names are the manifest's ``format`` values and the ``--format`` choices;
``kaggle_hdf5`` is accepted as an alias of ``kaggle`` (older manifests, ``--format``).

Example
-------
>>> from radsurv.data.formats import detect_format, get_format
>>> fmt = get_format(detect_format(Path("BraTS2020_training_data")))  # doctest: +SKIP
>>> fmt.name  # doctest: +SKIP
'kaggle'
"""

from __future__ import annotations

from pathlib import Path

from radsurv.data.formats.base import (
    CaseEntry,
    DataFormat,
    Problem,
    ReadOptions,
)
from radsurv.data.formats.kaggle_hdf5 import KaggleHDF5Format
from radsurv.data.formats.nifti import NiftiFormat
from radsurv.data.listing import FolderListing

#: Canonical name -> format, in detection order.
FORMATS: dict[str, DataFormat] = {}
_ALIASES: dict[str, str] = {}


def register_format(fmt: DataFormat) -> None:
    """Make a format known (detection tries the formats in registration order)."""
    FORMATS[fmt.name] = fmt
    for alias in (fmt.name, *fmt.aliases):
        _ALIASES[alias] = fmt.name


register_format(KaggleHDF5Format())
register_format(NiftiFormat())


def canonical_name(name: str) -> str | None:
    """The canonical name of a format name or alias (``None`` when unknown)."""
    return _ALIASES.get(str(name).strip().lower())


def get_format(name: str) -> DataFormat:
    """The format registered under ``name`` (or an alias of it).

    Raises
    ------
    KeyError
        When no format has that name (callers turn it into their own, precise error).
    """
    canonical = canonical_name(name)
    if canonical is None:
        raise KeyError(name)
    return FORMATS[canonical]


def detect_format(path: Path, listing: FolderListing | None = None) -> str | None:
    """The canonical name of the first format whose :meth:`~DataFormat.detect` accepts ``path``.

    ``None`` when none does. ``listing`` shares the folder listings with the rest of a run.
    """
    listing = listing if listing is not None else FolderListing()
    for fmt in FORMATS.values():
        if fmt.detect(Path(path), listing):
            return fmt.name
    return None


__all__ = [
    "FORMATS",
    "CaseEntry",
    "DataFormat",
    "Problem",
    "ReadOptions",
    "canonical_name",
    "detect_format",
    "get_format",
    "register_format",
]
