"""One way to iterate the cases of a dataset, a manifest or a list of cases.

:func:`iter_cases` yields one :class:`CaseSource` per case, whatever the cases come from: a
dataset folder of any registered format (:mod:`radsurv.data.formats`), a manifest (its path or a
:class:`~radsurv.data.manifest.Manifest`), :class:`~radsurv.data.case.Case` objects or
``(case_id, loader)`` pairs. A source reads its case only when asked (:meth:`CaseSource.load`,
:meth:`CaseSource.validate`), so a batch can record a case that fails and go on; sources of
dataset folders and manifest files are picklable and can be sent to worker processes.

``radsurv check``, ``radsurv convert``, the feature runner's case references and the
segmentation loaders (:func:`radsurv.segmentation.sources.case_loaders`) are built on it.

Example
-------
>>> for source in iter_cases(Path("data_manifest.csv")):  # doctest: +SKIP
...     case = source.load()
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

from radsurv.data.case import Case
from radsurv.data.formats import (
    FORMATS,
    ReadOptions,
    canonical_name,
    detect_format,
    get_format,
)
from radsurv.data.formats.base import Problem
from radsurv.data.listing import FolderListing
from radsurv.errors import DataError


class CaseSourceError(DataError):
    """Something given as a case (or a list of cases) is not one."""


@dataclass(frozen=True)
class CaseSource:
    """One case: its id and how to read it (lazily).

    Either ``loader`` (any callable returning the :class:`Case`) or a registered ``format``
    with its ``ref`` (the format's handle, e.g. a Kaggle ``PackVolume``) and read ``options``.

    Attributes
    ----------
    case_id
        The case id.
    loader
        Reads the case (``None`` for format sources).
    format, ref, options
        The format name, its handle on the case and how to read it (format sources).
    file
        The file or folder a problem of the whole case is reported against.
    """

    case_id: str
    loader: Callable[[], Case] | None = None
    format: str = ""
    ref: Any = None
    options: ReadOptions = field(default_factory=ReadOptions)
    file: str = ""

    def load(self) -> Case:
        """Read the case (a :class:`DataError` naming the file when it cannot be read)."""
        if self.loader is not None:
            return self.loader()
        return get_format(self.format).read(self.ref, self.options)

    def validate(self) -> tuple[Case | None, list[Problem]]:
        """Read and check the case: the case (``None`` when bad) and every problem found.

        Format sources report what the format's validator finds (the Kaggle reader lists every
        bad slice); other sources read the case, run :meth:`Case.validate` and report the
        first problem.
        """
        if self.loader is None:
            return get_format(self.format).validate(self.ref, self.options)
        try:
            case = self.load()
            case.validate()
        except DataError as exc:
            return None, [Problem(self.file or self.case_id, str(exc))]
        return case, []


@lru_cache(maxsize=4)
def _read_manifest(path: str) -> Any:
    from radsurv.data.manifest import Manifest

    return Manifest.read(Path(path))


@dataclass(frozen=True)
class ManifestCase:
    """A picklable loader of one case of a manifest file (the file is read once per process)."""

    manifest: str
    case_id: str
    cache_dir: str | None = None

    def __call__(self) -> Case:
        cache = Path(self.cache_dir) if self.cache_dir is not None else None
        return _read_manifest(self.manifest).load_case(self.case_id, cache_dir=cache)


@dataclass(frozen=True)
class _Given:
    """A loader returning a Case already in memory."""

    case: Case

    def __call__(self) -> Case:
        return self.case


def manifest_sources(manifest: Any, cache_dir: Path | None = None) -> list[CaseSource]:
    """One source per case of a manifest, in manifest order.

    ``manifest`` is a :class:`~radsurv.data.manifest.Manifest` (or anything with ``case_ids``
    and ``load_case``). One read from a file loads through :class:`ManifestCase` (picklable,
    light to send to workers); one built in memory through its own ``load_case``.
    """
    path = getattr(manifest, "path", None)
    sources = []
    for cid in manifest.case_ids:
        if path is not None:
            loader: Callable[[], Case] = ManifestCase(
                str(Path(path).resolve()), cid, str(cache_dir) if cache_dir else None
            )
        elif cache_dir is not None:
            loader = partial(manifest.load_case, cid, cache_dir=cache_dir)
        else:
            loader = partial(manifest.load_case, cid)
        where = getattr(manifest, "source_path", None)
        sources.append(CaseSource(cid, loader, file=str(where(cid)) if where else cid))
    return sources


def dataset_sources(
    path: Path,
    fmt: str | None = None,
    options: ReadOptions | None = None,
    listing: FolderListing | None = None,
) -> tuple[str, list[CaseSource]]:
    """The format name and one source per case of a dataset folder.

    Parameters
    ----------
    path
        A dataset of a registered format (e.g. a Kaggle pack's root or its slice folder, a
        folder of NIfTI case folders).
    fmt
        The format name (or alias); ``None`` detects it.
    options
        How to read the cases.
    listing
        Folder listings shared with the rest of a run (each folder is listed once).

    Raises
    ------
    DataError
        When the format is unknown, not detected, or ``path`` is not such a dataset.
    """
    listing = listing if listing is not None else FolderListing()
    options = options or ReadOptions()
    name = canonical_name(fmt) if fmt else detect_format(Path(path), listing)
    if name is None:
        known = "; ".join(f"{f.name}: {f.describe}" for f in FORMATS.values())
        what = f"unknown dataset format {fmt!r}" if fmt else "holds no dataset radsurv reads"
        raise DataError(f"{path}: {what} ({known})")
    layout = get_format(name)
    entries = layout.list_cases(Path(path), options, listing)
    return name, [
        CaseSource(
            e.case_id, format=name, ref=e.ref, options=options, file=layout.problem_file(e.ref)
        )
        for e in entries
    ]


def _is_manifest(source: Any) -> bool:
    return hasattr(source, "case_ids") and hasattr(source, "load_case")


def iter_cases(
    source: Any,
    *,
    fmt: str | None = None,
    options: ReadOptions | None = None,
    cache_dir: Path | None = None,
) -> Iterator[CaseSource]:
    """Yield one :class:`CaseSource` per case of ``source``.

    Parameters
    ----------
    source
        A dataset folder, a manifest CSV path, a :class:`~radsurv.data.manifest.Manifest`, a
        :class:`Case`, a :class:`CaseSource`, or an iterable of Cases, CaseSources and
        ``(case_id, loader)`` pairs.
    fmt, options
        Format and read options of a dataset folder (see :func:`dataset_sources`).
    cache_dir
        Volume cache for the Kaggle rows of a manifest.

    Raises
    ------
    CaseSourceError
        When an item is none of these, or a case id appears twice in a list.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if path.is_dir():
            yield from dataset_sources(path, fmt, options)[1]
        else:
            yield from manifest_sources(_manifest_at(path), cache_dir)
        return
    if _is_manifest(source):
        yield from manifest_sources(source, cache_dir)
        return
    if isinstance(source, Case | CaseSource):
        source = [source]
    if not isinstance(source, Iterable):
        raise CaseSourceError(
            f"cannot read cases from a {type(source).__name__}; pass a manifest, its path, "
            "or a list of Case objects"
        )
    seen: dict[str, int] = {}
    for item in source:
        if isinstance(item, CaseSource):
            out = item
        elif isinstance(item, Case):
            out = CaseSource(item.case_id, _Given(item))
        elif isinstance(item, tuple) and len(item) == 2 and callable(item[1]):
            out = CaseSource(str(item[0]), item[1])
        else:
            raise CaseSourceError(
                f"cannot use {type(item).__name__} as a case; pass Case objects or "
                "(case_id, loader) pairs"
            )
        seen[out.case_id] = seen.get(out.case_id, 0) + 1
        yield out
    dupes = sorted(k for k, n in seen.items() if n > 1)
    if dupes:
        raise CaseSourceError(f"case ids {dupes} appear more than once in the case list")


def _manifest_at(path: Path) -> Any:
    from radsurv.data.manifest import Manifest

    return Manifest.read(path)
