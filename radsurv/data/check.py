"""Validate a dataset case by case (``radsurv check DATA``).

:func:`check_dataset` reads every slice of every case and records *all* problems per case. The
channel-order check (``radsurv check DATA --channels``) lives in
:mod:`radsurv.data.channel_order`.

Dataset layouts plug in through :func:`register_format`: a layout says whether a path is one
of its datasets and lists its cases, each with a function that validates it. The Kaggle HDF5
pack is registered here; other readers register theirs the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radsurv.data.case import Case
from radsurv.data.hdf5 import (
    DEFAULT_CHANNEL_ORDER,
    PackError,
    find_slice_dir,
    parse_channel_order,
    scan_pack,
    validate_volume,
)
from radsurv.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Problem:
    """One problem of a case: the file it is about and what is wrong (and what to do)."""

    file: str
    problem: str


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


@dataclass
class CaseSource:
    """One case of a dataset, with the function that reads and validates it.

    ``validate()`` returns the assembled :class:`Case` (``None`` when it has problems) and every
    problem found.
    """

    case_id: str
    validate: Callable[[], tuple[Case | None, list[Problem]]]


@dataclass(frozen=True)
class DatasetFormat:
    """A dataset layout :func:`check_dataset` can check.

    Attributes
    ----------
    name
        Layout name (``--format``).
    detect
        ``detect(path)``: is ``path`` a dataset of this layout?
    list_cases
        ``list_cases(path, channel_order)``: its cases, in order.
    describe
        What the layout looks like (for the "not recognised" error).
    """

    name: str
    detect: Callable[[Path], bool]
    list_cases: Callable[[Path, tuple[str, ...]], list[CaseSource]]
    describe: str = ""


DATASET_FORMATS: dict[str, DatasetFormat] = {}


def register_format(fmt: DatasetFormat) -> None:
    """Make a dataset layout known to :func:`check_dataset` (detection tries them in order)."""
    DATASET_FORMATS[fmt.name] = fmt


def _problems(errors: Iterable[PackError]) -> list[Problem]:
    return [Problem(e.file, f"{e.problem}; {e.hint}" if e.hint else e.problem) for e in errors]


def _kaggle_detect(path: Path) -> bool:
    try:
        find_slice_dir(path)
    except DataError:
        return False
    return True


def _kaggle_cases(path: Path, channel_order: tuple[str, ...]) -> list[CaseSource]:
    def validator(pv: Any) -> Callable[[], tuple[Case | None, list[Problem]]]:
        def run() -> tuple[Case | None, list[Problem]]:
            case, errors = validate_volume(pv, channel_order)
            return case, _problems(errors)

        return run

    return [CaseSource(cid, validator(pv)) for cid, pv in scan_pack(path).items()]


register_format(
    DatasetFormat(
        name="kaggle",
        detect=_kaggle_detect,
        list_cases=_kaggle_cases,
        describe="Kaggle HDF5 pack: volume_{V}_slice_{S}.h5 files (e.g. under "
        "BraTS2020_training_data/content/data)",
    )
)


def _validated(case_id: str, file: str, load: Callable[[], Case]) -> CaseSource:
    """A case source whose validation loads the case and runs :meth:`Case.validate`."""

    def run() -> tuple[Case | None, list[Problem]]:
        try:
            case = load()
            case.validate()
        except DataError as exc:  # one problem per case: these readers stop at the first
            return None, [Problem(file, str(exc))]
        return case, []

    return CaseSource(case_id, run)


def _nifti_detect(path: Path) -> bool:
    from radsurv.data.nifti import find_nifti_cases

    if not path.is_dir():
        return False
    try:
        return bool(find_nifti_cases(path))
    except DataError:
        return False


def _nifti_cases(path: Path, channel_order: tuple[str, ...]) -> list[CaseSource]:
    from radsurv.data.nifti import find_nifti_cases, read_nifti_case

    return [
        _validated(cid, str(folder), lambda folder=folder, cid=cid: read_nifti_case(folder, cid))
        for cid, folder in find_nifti_cases(path).items()
    ]


def _manifest_detect(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() == ".csv"


def _manifest_cases(path: Path, channel_order: tuple[str, ...]) -> list[CaseSource]:
    # the manifest records each case's own patterns, label convention and channel order
    from radsurv.data.manifest import Manifest

    manifest = Manifest.read(path)
    return [
        _validated(cid, str(manifest.source_path(cid)), lambda cid=cid: manifest.load_case(cid))
        for cid in manifest.case_ids
    ]


register_format(
    DatasetFormat(
        name="nifti",
        detect=_nifti_detect,
        list_cases=_nifti_cases,
        describe="BraTS NIfTI case folders (BraTS 2020 *_flair.nii.gz ..., 2021-2023 "
        "*-t2f.nii.gz ...; other namings: build a manifest with --modality and check that)",
    )
)
register_format(
    DatasetFormat(
        name="manifest",
        detect=_manifest_detect,
        list_cases=_manifest_cases,
        describe="a data_manifest.csv written by radsurv manifest",
    )
)


def _resolve_format(path: Path, fmt: str) -> DatasetFormat:
    if fmt != "auto":
        if fmt not in DATASET_FORMATS:
            raise DataError(
                f"{path}: unknown dataset format {fmt!r}; choose from "
                f"{', '.join(['auto', *DATASET_FORMATS])}"
            )
        return DATASET_FORMATS[fmt]
    if not Path(path).exists():
        raise DataError(f"{path}: does not exist; give the dataset folder")
    for candidate in DATASET_FORMATS.values():
        if candidate.detect(path):
            return candidate
    if len(DATASET_FORMATS) == 1:
        only = next(iter(DATASET_FORMATS.values()))
        only.list_cases(path, DEFAULT_CHANNEL_ORDER)  # raises the layout's own, precise error
    layouts = "; ".join(f"{f.name}: {f.describe}" for f in DATASET_FORMATS.values())
    raise DataError(f"{path}: not a dataset radsurv check knows ({layouts})")


def check_dataset(
    path: Path,
    channel_order: Sequence[str] | str = DEFAULT_CHANNEL_ORDER,
    *,
    fmt: str = "auto",
    on_case: Callable[[Case], None] | None = None,
    on_progress: Callable[[CaseCheck, int, int], None] | None = None,
) -> CheckReport:
    """Read every file of every case of a dataset and record all problems per case.

    A case's problems never stop the check of the others; an unexpected failure while reading
    a case is recorded as a problem of that case.

    Parameters
    ----------
    path
        The dataset: for the Kaggle layout, the pack's root or any folder of slice files.
    channel_order
        Modality of each image channel (Kaggle layout), default FLAIR, T1, T1Gd, T2.
    fmt
        Layout name, or ``"auto"`` to detect it.
    on_case
        Called with each case that was read without problems (e.g. to gather channel
        statistics in the same pass).
    on_progress
        Called after each case with its result, its position (1-based) and the case count.

    Returns
    -------
    CheckReport

    Raises
    ------
    DataError
        When ``path`` is not a dataset at all (missing, no slice files, ...).

    Examples
    --------
    >>> report = check_dataset(Path("BraTS2020_training_data"))  # doctest: +SKIP
    >>> report.ok, [c.case_id for c in report.bad_cases]  # doctest: +SKIP
    (True, [])
    """
    order = parse_channel_order(channel_order)
    layout = _resolve_format(Path(path), fmt)
    sources = layout.list_cases(Path(path), order)
    results: list[CaseCheck] = []
    for i, source in enumerate(sources, start=1):
        try:
            case, problems = source.validate()
        except Exception as exc:  # a batch job records the case and goes on
            logger.debug("checking %s failed", source.case_id, exc_info=True)
            case = None
            problems = [Problem(str(path), f"unexpected error: {type(exc).__name__}: {exc}")]
        check = CaseCheck(source.case_id, problems)
        results.append(check)
        if case is not None and not problems and on_case is not None:
            on_case(case)
        if on_progress is not None:
            on_progress(check, i, len(sources))
    report = CheckReport(results, source=str(path), format=layout.name)
    logger.info("%s", report.summary())
    return report
