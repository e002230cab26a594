"""Validate a dataset case by case (``radsurv check DATA``).

:func:`check_dataset` reads every slice of every case and records *all* problems per case. The
channel-order check (``radsurv check DATA --channels``) lives in
:mod:`radsurv.data.channel_order`.

The layouts are the formats of :mod:`radsurv.data.formats` (each validates its own cases: the
Kaggle reader lists every bad slice) plus manifests; the cases come from
:mod:`radsurv.data.sources`. ``jobs`` reads them in worker processes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radsurv.data import formats
from radsurv.data.case import Case
from radsurv.data.formats import Problem, ReadOptions
from radsurv.data.hdf5 import DEFAULT_CHANNEL_ORDER, parse_channel_order
from radsurv.data.listing import FolderListing
from radsurv.data.parallel import check_jobs, map_ordered
from radsurv.data.sources import CaseSource, dataset_sources, manifest_sources
from radsurv.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


@dataclass
class CaseCheck:
    """The outcome of checking one case."""

    case_id: str
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no problem was found."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """``{"case_id": ..., "ok": ..., "problems": [{"file": ..., "problem": ...}]}``."""
        return {
            "case_id": self.case_id,
            "ok": self.ok,
            "problems": [{"file": p.file, "problem": p.problem} for p in self.problems],
        }


@dataclass
class CheckReport:
    """Per-case results of :func:`check_dataset`.

    Attributes
    ----------
    cases
        One :class:`CaseCheck` per case, in dataset order.
    source
        The dataset checked.
    format
        Its layout (e.g. ``kaggle``).
    """

    cases: list[CaseCheck]
    source: str = ""
    format: str = ""

    @property
    def ok(self) -> bool:
        """True when every case is fine."""
        return all(c.ok for c in self.cases)

    @property
    def bad_cases(self) -> list[CaseCheck]:
        """The cases with at least one problem."""
        return [c for c in self.cases if not c.ok]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``{"cases": [{"case_id", "ok", "problems": [{"file", "problem"}]}]}``."""
        return {"cases": [c.to_dict() for c in self.cases]}

    def write_json(self, path: Path) -> Path:
        """Write :meth:`to_dict` as JSON to ``path``; return the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    def to_frame(self) -> pd.DataFrame:
        """One row per problem (one row with an empty problem for a fine case)."""
        import pandas as pd

        rows = []
        for c in self.cases:
            rows += [
                {"case_id": c.case_id, "ok": c.ok, "file": p.file, "problem": p.problem}
                for p in c.problems
            ] or [{"case_id": c.case_id, "ok": True, "file": "", "problem": ""}]
        return pd.DataFrame(rows, columns=["case_id", "ok", "file", "problem"])

    def summary(self) -> str:
        """One line: how many cases, how many bad."""
        n_bad = len(self.bad_cases)
        return f"{len(self.cases)} case(s) checked in {self.source or 'the dataset'}: " + (
            "all fine" if not n_bad else f"{n_bad} with problems"
        )

    def _repr_html_(self) -> str:
        bad = self.bad_cases
        head = f"<p><b>{escape(self.summary())}</b></p>"
        if not bad:
            return head
        rows = "".join(
            f"<tr><td>{escape(c.case_id)}</td><td>{escape(Path(p.file).name)}</td>"
            f"<td>{escape(p.problem)}</td></tr>"
            for c in bad
            for p in c.problems
        )
        return (
            f"{head}<table><thead><tr><th>case</th><th>file</th><th>problem</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )


def _layouts() -> str:
    described = [(f.name, f.describe) for f in formats.FORMATS.values()]
    described.append(("manifest", "a data_manifest.csv written by radsurv manifest"))
    return "; ".join(f"{name}: {text}" for name, text in described)


def _is_manifest_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


def _sources(path: Path, fmt: str, order: tuple[str, ...]) -> tuple[str, list[CaseSource]]:
    """The layout name and the cases of ``path`` (a dataset folder or a manifest CSV)."""
    from radsurv.data.manifest import Manifest

    options = ReadOptions(channel_order=order)
    if fmt == "manifest":
        # the manifest records each case's own patterns, label convention and channel order
        return "manifest", manifest_sources(Manifest.read(path))
    if fmt != "auto":
        name = formats.canonical_name(fmt)
        if name is None:
            choices = ", ".join(["auto", *formats.FORMATS, "manifest"])
            raise DataError(f"{path}: unknown dataset format {fmt!r}; choose from {choices}")
        return dataset_sources(path, name, options)
    if not path.exists():
        raise DataError(f"{path}: does not exist; give the dataset folder")
    if _is_manifest_file(path):
        return "manifest", manifest_sources(Manifest.read(path))
    listing = FolderListing()
    name = formats.detect_format(path, listing)
    if name is None:
        raise DataError(f"{path}: not a dataset radsurv check knows ({_layouts()})")
    try:
        return dataset_sources(path, name, options, listing)
    except DataError as exc:  # files of a layout, but not a dataset of it
        raise DataError(f"{path}: not a dataset radsurv check knows ({_layouts()})") from exc


def _check_task(task: tuple[CaseSource, str, bool]) -> tuple[CaseCheck, Case | None]:
    """Validate one case (in this process or a worker); the case too when it is wanted."""
    source, where, want_case = task
    try:
        case, problems = source.validate()
    except Exception as exc:  # a batch job records the case and goes on
        logger.debug("checking %s failed", source.case_id, exc_info=True)
        case = None
        problems = [Problem(where, f"unexpected error: {type(exc).__name__}: {exc}")]
    keep = case if want_case and case is not None and not problems else None
    return CaseCheck(source.case_id, problems), keep


def check_dataset(
    path: Path,
    channel_order: Sequence[str] | str = DEFAULT_CHANNEL_ORDER,
    *,
    fmt: str = "auto",
    on_case: Callable[[Case], None] | None = None,
    on_progress: Callable[[CaseCheck, int, int], None] | None = None,
    jobs: int = 1,
) -> CheckReport:
    """Read every file of every case of a dataset and record all problems per case.

    A case's problems never stop the check of the others; an unexpected failure while reading
    a case is recorded as a problem of that case.

    Parameters
    ----------
    path
        The dataset: for the Kaggle layout, the pack's root or any folder of slice files; a
        folder of NIfTI case folders; or a manifest CSV.
    channel_order
        Modality of each image channel (Kaggle layout), default FLAIR, T1, T1Gd, T2.
    fmt
        Layout name (``kaggle``, ``nifti``, ``manifest``; ``kaggle_hdf5`` is ``kaggle``), or
        ``"auto"`` to detect it.
    on_case
        Called with each case that was read without problems (e.g. to gather channel
        statistics in the same pass). With ``jobs > 1`` each such case is sent back from its
        worker (a full-size Kaggle volume is about 300 MB).
    on_progress
        Called after each case with its result, its position (1-based) and the case count.
    jobs
        Worker processes reading the cases; results are identical to ``jobs=1`` and in the
        same order.

    Returns
    -------
    CheckReport

    Raises
    ------
    DataError
        When ``path`` is not a dataset at all (missing, no slice files, ...).

    Examples
    --------
    >>> report = check_dataset(Path("BraTS2020_training_data"), jobs=4)  # doctest: +SKIP
    >>> report.ok, [c.case_id for c in report.bad_cases]  # doctest: +SKIP
    (True, [])
    """
    check_jobs(jobs)
    order = parse_channel_order(channel_order)
    name, sources = _sources(Path(path), fmt, order)
    tasks = [(source, str(path), on_case is not None) for source in sources]
    results: list[CaseCheck] = []
    for i, (check, case) in enumerate(map_ordered(_check_task, tasks, jobs), start=1):
        results.append(check)
        if case is not None and on_case is not None:
            on_case(case)
        if on_progress is not None:
            on_progress(check, i, len(tasks))
    report = CheckReport(results, source=str(path), format=name)
    logger.info("%s", report.summary())
    return report
