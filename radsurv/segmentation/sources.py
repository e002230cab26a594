"""Where cases come from: a manifest, its path, a dataset folder, Case objects or
``(case_id, loader)`` pairs.

Segmentation code works over :class:`CaseLoader` lists so it does not depend on the format;
loading is lazy so a batch can record a case that fails to load and go on. A
:class:`CaseLoader` is the data layer's one case-source type,
:class:`radsurv.data.sources.CaseSource` (``.case_id``, ``.load()``), and
:func:`case_loaders` is :func:`radsurv.data.sources.iter_cases` with segmentation's errors.
"""

from __future__ import annotations

from typing import Any

from radsurv.data.sources import CaseSource as CaseLoader
from radsurv.data.sources import CaseSourceError, iter_cases
from radsurv.errors import SegmentationError

#: What :func:`case_loaders` accepts: Manifest | str | Path | Iterable[Case | CaseLoader |
#: tuple[str, Callable]] (named apart from the data layer's one case type, CaseSource).
Cases = Any

__all__ = ["CaseLoader", "Cases", "case_loaders"]


def case_loaders(source: Cases) -> list[CaseLoader]:
    """Normalise a case source to a list of :class:`CaseLoader`.

    Parameters
    ----------
    source
        A ``radsurv.data.manifest.Manifest`` (anything with ``case_ids`` and ``load_case``), the
        path of a manifest CSV or of a dataset folder, or an iterable of :class:`Case`,
        :class:`CaseLoader` or ``(case_id, loader)`` pairs.

    Raises
    ------
    SegmentationError
        When an item is not a case, or a case id appears twice.
    """
    try:
        return list(iter_cases(source))
    except CaseSourceError as exc:
        raise SegmentationError(str(exc)) from exc
