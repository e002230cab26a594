"""Where cases come from: a manifest, its path, Case objects or ``(case_id, loader)`` pairs.

Segmentation code works over :class:`CaseLoader` lists so it does not depend on the format;
loading is lazy so a batch can record a case that fails to load and go on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radsurv.data.case import Case
from radsurv.errors import SegmentationError


@dataclass(frozen=True)
class CaseLoader:
    """A case id and a function that loads the case (called once per use)."""

    case_id: str
    load: Callable[[], Case]


CaseSource = Any  # Manifest | str | Path | Iterable[Case | CaseLoader | tuple[str, Callable]]


def _manifest_loaders(manifest: Any) -> list[CaseLoader]:
    return [
        CaseLoader(cid, (lambda cid=cid: manifest.load_case(cid)))  # bind cid now
        for cid in manifest.case_ids
    ]


def case_loaders(source: CaseSource) -> list[CaseLoader]:
    """Normalise a case source to a list of :class:`CaseLoader`.

    Parameters
    ----------
    source
        A ``radsurv.data.manifest.Manifest`` (anything with ``case_ids`` and ``load_case``), the
        path of a manifest CSV, or an iterable of :class:`Case`, :class:`CaseLoader` or
        ``(case_id, loader)`` pairs.
    """
    if isinstance(source, str | Path):
        from radsurv.data.manifest import Manifest

        return _manifest_loaders(Manifest.read(Path(source)))
    if hasattr(source, "case_ids") and hasattr(source, "load_case"):
        return _manifest_loaders(source)
    if not isinstance(source, Iterable):
        raise SegmentationError(
            f"cannot read cases from a {type(source).__name__}; pass a manifest, its path, "
            "or a list of Case objects"
        )
    loaders: list[CaseLoader] = []
    for item in source:
        if isinstance(item, CaseLoader):
            loaders.append(item)
        elif isinstance(item, Case):
            loaders.append(CaseLoader(item.case_id, (lambda c=item: c)))
        elif isinstance(item, tuple) and len(item) == 2 and callable(item[1]):
            loaders.append(CaseLoader(str(item[0]), item[1]))
        else:
            raise SegmentationError(
                f"cannot use {type(item).__name__} as a case; pass Case objects or "
                "(case_id, loader) pairs"
            )
    ids = [ld.case_id for ld in loaders]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SegmentationError(f"case ids {dupes} appear more than once in the case list")
    return loaders
