"""The interface every dataset format implements: detect, list cases, read, validate, write.

A format module (:mod:`~radsurv.data.formats.kaggle_hdf5`, :mod:`~radsurv.data.formats.nifti`)
defines one :class:`DataFormat` subclass and registers an instance in
:mod:`radsurv.data.formats`. Everything format-specific lives there; the manifest, ``radsurv
check``, ``radsurv convert``, the feature runner and the segmentation loaders only talk to this
interface.

A *ref* is a format's own, picklable handle on one case (a Kaggle
:class:`~radsurv.data.hdf5.PackVolume`, a NIfTI :class:`~radsurv.data.formats.nifti.NiftiRef`),
so that a case can be read in a worker process.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radsurv.data.case import Case
from radsurv.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from radsurv.data.listing import FolderListing

DEFAULT_CHANNEL_ORDER: tuple[str, ...] = ("flair", "t1", "t1gd", "t2")


@dataclass(frozen=True)
class Problem:
    """One problem of a case: the file it is about and what is wrong (and what to do)."""

    file: str
    problem: str


@dataclass(frozen=True)
class ReadOptions:
    """How to read the cases of a dataset (each format uses the options that concern it).

    Attributes
    ----------
    channel_order
        Modality of each image channel (Kaggle pack).
    modality_patterns, seg_pattern, label_convention
        NIfTI file naming and mask label convention (``None``: detected).
    cache_dir
        Volume cache folder (Kaggle pack; ``None`` reads the slice files directly).
    """

    channel_order: tuple[str, ...] = DEFAULT_CHANNEL_ORDER
    modality_patterns: Mapping[str, str] | None = None
    seg_pattern: str | None = None
    label_convention: str | None = None
    cache_dir: Path | None = None


@dataclass(frozen=True)
class CaseEntry:
    """One case a format listed: its id, the format's handle on it and its folder.

    ``folder`` is what a manifest row records as the case's ``source`` (the slice folder of a
    Kaggle pack, the case folder of a NIfTI dataset).
    """

    case_id: str
    ref: Any
    folder: Path


class DatasetWriter:
    """Writes the cases of one dataset in a format, one by one; :meth:`close` finishes it.

    The default writes each case with :meth:`DataFormat.write`; a format whose layout has
    dataset-wide files (the Kaggle pack's ``meta_data.csv``) returns its own writer.
    """

    def __init__(
        self, fmt: DataFormat, dst: Path, channel_order: Sequence[str] = DEFAULT_CHANNEL_ORDER
    ) -> None:
        self.fmt = fmt
        self.dst = Path(dst)
        self.channel_order = tuple(channel_order)

    def write(self, case: Case) -> Path:
        """Write one case; return what was written."""
        return self.fmt.write(case, self.dst)

    def close(self, written: Sequence[str]) -> None:
        """Finish the dataset (``written``: the ids of the cases written, in order)."""


class DataFormat(ABC):
    """A dataset layout radsurv reads and writes.

    Attributes
    ----------
    name
        Canonical name: the manifest's ``format`` value and the ``--format`` choice.
    aliases
        Other names accepted for it (older manifests, ``--format``).
    describe
        What the layout looks like (for "not recognised" errors).
    """

    name: str = ""
    aliases: tuple[str, ...] = ()
    describe: str = ""

    @abstractmethod
    def detect(self, path: Path, listing: FolderListing) -> bool:
        """Whether ``path`` holds (or leads to) a dataset of this layout."""

    @abstractmethod
    def list_cases(
        self, path: Path, options: ReadOptions, listing: FolderListing
    ) -> list[CaseEntry]:
        """The cases of the dataset at ``path``, in the layout's order.

        Raises
        ------
        DataError
            When ``path`` is not such a dataset (the message says what was expected).
        """

    @abstractmethod
    def read(self, ref: Any, options: ReadOptions) -> Case:
        """Read one case; a :class:`DataError` naming the file on the first problem."""

    def problem_file(self, ref: Any) -> str:
        """The file or folder a problem of the whole case is reported against."""
        return str(ref)

    def validate(self, ref: Any, options: ReadOptions) -> tuple[Case | None, list[Problem]]:
        """Read one case and check it; return the case (``None`` when bad) and every problem.

        The default reads the case and runs :meth:`Case.validate`, so it reports the first
        problem; a format whose reader can go on after a problem lists them all.
        """
        try:
            case = self.read(ref, options)
            case.validate()
        except DataError as exc:
            return None, [Problem(self.problem_file(ref), str(exc))]
        return case, []

    @abstractmethod
    def manifest_row(
        self, entry: CaseEntry, source: str, checksum: bool, options: ReadOptions
    ) -> dict[str, Any]:
        """The manifest columns of one case (see :data:`radsurv.data.manifest.BASE_COLUMNS`).

        A format may add private keys (starting with ``_``) that :meth:`finish_rows` uses and
        removes.

        Raises
        ------
        DataError
            When the case cannot be described; the manifest records it as the row's problem.
        """

    def finish_rows(self, rows: list[dict[str, Any]], options: ReadOptions) -> list[dict[str, Any]]:
        """Dataset-wide decisions over all rows (e.g. one label convention); in place."""
        return rows

    @abstractmethod
    def read_row(
        self,
        row: pd.Series,
        source: Path,
        *,
        where: str,
        state: dict,
        cache_dir: Path | None = None,
    ) -> Case:
        """Read the case a manifest row describes (``source``: its absolute folder).

        ``where`` names the manifest in messages; ``state`` is a per-manifest scratch dict (e.g.
        for a folder listing made once when files moved); ``cache_dir`` a volume cache.
        """

    @abstractmethod
    def write(self, case: Case, dst: Path, **options: Any) -> Path:
        """Write one case in this layout under ``dst``; return what was written (a folder)."""

    def open_writer(
        self,
        dst: Path,
        case_ids: Sequence[str],
        channel_order: Sequence[str] = DEFAULT_CHANNEL_ORDER,
    ) -> DatasetWriter:
        """A writer of a dataset of ``case_ids`` under ``dst`` in this layout.

        ``channel_order`` is the image channel order of layouts that stack the modalities
        (the Kaggle pack); others ignore it.
        """
        return DatasetWriter(self, dst, channel_order)

    @abstractmethod
    def hash_file(self, h: Any, path: Path) -> None:
        """Feed one file's content to the hash ``h`` (independent of how it is stored)."""

    def checksum(self, files: Sequence[Path]) -> str:
        """Deterministic ``sha256:<hex>`` of a case's content (never of mtimes or paths): each
        file's name and :meth:`hash_file` content, in the order given."""
        h = hashlib.sha256()
        for path in files:
            h.update(f"{Path(path).name}\n".encode())
            self.hash_file(h, Path(path))
        return "sha256:" + h.hexdigest()
