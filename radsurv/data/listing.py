"""One directory listing per folder per run, shared by format detection, case listing and reading.

Listing the Kaggle pack's folder of 57,195 slice files costs far more than anything done with
its names, so every step of one run (detecting the layout, finding the slice folder, listing the
volumes) asks a :class:`FolderListing` instead of calling :func:`os.scandir` itself.

Example
-------
>>> listing = FolderListing()
>>> names = listing.files(Path("BraTS2020_training_data/content/data"))  # doctest: +SKIP
>>> listing.scans  # doctest: +SKIP
1
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    """One directory entry: its name and whether it is a folder or a file (links followed)."""

    name: str
    is_dir: bool
    is_file: bool
    is_link: bool = False


class FolderListing:
    """A memo of :func:`os.scandir` results: each folder is listed at most once.

    Attributes
    ----------
    scans
        How many folders were listed (one :func:`os.scandir` call each).
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Entry, ...]] = {}
        self.scans = 0

    def entries(self, folder: Path) -> tuple[Entry, ...]:
        """The entries of ``folder`` (listed on first use).

        Raises
        ------
        OSError
            When the folder cannot be listed.
        """
        key = os.fspath(folder)
        found = self._entries.get(key)
        if found is None:
            self.scans += 1
            with os.scandir(key) as it:
                found = tuple(_entry(e) for e in it)
            self._entries[key] = found
        return found

    def seed(self, folder: Path, entries: tuple[Entry, ...]) -> None:
        """Record a listing made elsewhere (e.g. in the parent of a worker process)."""
        self._entries[os.fspath(folder)] = tuple(entries)

    def names(self, folder: Path) -> list[str]:
        """Every entry name of ``folder`` (files and folders)."""
        return [e.name for e in self.entries(folder)]

    def files(self, folder: Path) -> list[str]:
        """The names of the regular files (or links to them) in ``folder``."""
        return [e.name for e in self.entries(folder) if e.is_file]

    def walk(self, root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
        """Like :func:`os.walk` (top-down; prune by editing the folder list in place).

        Folders that cannot be listed are skipped, as :func:`os.walk` does.
        """
        try:
            entries = self.entries(root)
        except OSError:
            return
        dirs = [e.name for e in entries if e.is_dir]
        files = [e.name for e in entries if not e.is_dir]
        yield Path(root), dirs, files
        links = {e.name for e in entries if e.is_link}
        for name in dirs:
            if name not in links:  # like os.walk: list linked folders, do not descend
                yield from self.walk(Path(root) / name)


def _entry(e: os.DirEntry) -> Entry:
    try:
        return Entry(e.name, e.is_dir(), e.is_file(), e.is_symlink())
    except OSError:  # a vanished file: neither a folder nor a file
        return Entry(e.name, False, False)
