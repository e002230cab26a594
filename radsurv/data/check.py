"""Validate a dataset case by case, and check the assumed image channel order against the data.

:func:`check_dataset` reads every slice of every case and records *all* problems per case
(``radsurv check DATA``); :func:`check_channel_order` measures, per image channel, the mean
intensity inside ET, NCR and ED against normal brain and says whether the data agree with the
configured modality order (``radsurv check DATA --channels``).

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

import numpy as np

from radsurv.data.case import Case
from radsurv.data.hdf5 import (
    DEFAULT_CHANNEL_ORDER,
    PackError,
    find_slice_dir,
    parse_channel_order,
    scan_pack,
    validate_volume,
)
from radsurv.data.labels import LABEL_ED, LABEL_ET, LABEL_NCR
from radsurv.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# Dataset validation
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Channel order
# ---------------------------------------------------------------------------------------------

CHANNEL_REGIONS: dict[str, int] = {"ET": LABEL_ET, "NCR": LABEL_NCR, "ED": LABEL_ED}


def _background_values(image: np.ndarray) -> np.ndarray:
    """The value outside the head, per axial slice: the median of the slice's border.

    Skull-stripped BraTS images are 0 outside the brain; standardisation (the Kaggle pack) turns
    that 0 into a negative constant, so "non-zero" cannot define the brain there. Taking it per
    slice also covers data standardised slice by slice.
    """
    frame = np.concatenate([image[:, 0, :], image[:, -1, :], image[:, :, 0], image[:, :, -1]], 1)
    return np.median(frame, axis=1)[:, None, None]


def case_channel_stats(case: Case) -> list[dict[str, Any]]:
    """Per image channel of one case: mean intensity in ET, NCR, ED and normal brain.

    Normal brain is every voxel that differs from the background value (in any channel) and is
    not tumour. ``*_contrast`` is (region mean - brain mean) / brain sd, comparable across
    cases with different intensity scales; a region the case lacks (ET in LGG) gives NaN.

    Returns
    -------
    list of dict
        One row per channel, with keys ``case_id, channel, modality, brain_mean, brain_sd`` and
        ``{region}_mean, {region}_contrast, {region}_voxels`` for ET, NCR, ED; empty when the
        case has no label mask.
    """
    if case.labels is None:
        return []
    order = list(case.provenance.get("channel_order") or case.images)
    present = [m for m in order if m in case.images]
    brain = np.zeros(case.shape, dtype=bool)
    for name in present:
        img = case.images[name]
        brain |= img != _background_values(img)
    tumour = case.labels > 0
    normal = brain & ~tumour
    region_masks = {r: case.labels == lab for r, lab in CHANNEL_REGIONS.items()}
    rows = []
    for index, name in enumerate(order):
        if name not in case.images:
            continue
        img = case.images[name]
        values = img[normal].astype(np.float64)
        mu = float(values.mean()) if values.size else float("nan")
        sd = float(values.std()) if values.size else float("nan")
        row: dict[str, Any] = {
            "case_id": case.case_id,
            "channel": index,
            "modality": name,
            "brain_mean": mu,
            "brain_sd": sd,
        }
        for region, sel in region_masks.items():
            n = int(np.count_nonzero(sel))
            mean = float(img[sel].astype(np.float64).mean()) if n else float("nan")
            row[f"{region}_mean"] = mean
            row[f"{region}_contrast"] = (mean - mu) / sd if n and sd > 0 else float("nan")
            row[f"{region}_voxels"] = n
        rows.append(row)
    return rows


@dataclass
class ChannelReport:
    """Whether the image channels behave like the modalities they are configured as.

    Attributes
    ----------
    configured
        The configured channel order (modality of channel 0, 1, ...).
    table
        One row per channel: ``modality`` (configured), ``cases``, mean intensities
        ``brain_mean, ET_mean, NCR_mean, ED_mean`` and contrasts vs normal brain in brain-sd
        units ``ET_contrast, NCR_contrast, ED_contrast`` (averaged over cases that have the
        region), and ``cases_with_ET``.
    per_case
        The per-case rows behind ``table``.
    agrees
        True/False, or None when the data cannot tell (no ET anywhere, missing channels).
    implied
        The order the data imply (``None`` when undetermined).
    verdict
        One sentence saying what was found.
    notes
        Caveats (weak margins, what the check cannot tell apart).
    """

    configured: tuple[str, ...]
    table: pd.DataFrame
    per_case: pd.DataFrame
    agrees: bool | None
    implied: tuple[str, ...] | None
    verdict: str
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (the table as records)."""
        return {
            "configured": list(self.configured),
            "implied": list(self.implied) if self.implied else None,
            "agrees": self.agrees,
            "verdict": self.verdict,
            "notes": self.notes,
            "channels": json.loads(self.table.reset_index().to_json(orient="records")),
        }

    def _repr_html_(self) -> str:
        colour = {True: "green", False: "red", None: "gray"}[self.agrees]
        notes = "".join(f"<li>{escape(n)}</li>" for n in self.notes)
        return (
            f"<p style='color:{colour}'><b>{escape(self.verdict)}</b></p>"
            + self.table.to_html(float_format=lambda v: f"{v:.2f}")
            + (f"<ul>{notes}</ul>" if notes else "")
        )

    def __str__(self) -> str:
        return self.verdict


# ET must beat the runner-up by this many brain-sd for a confident verdict
_WEAK_MARGIN = 0.5


def _implied_order(
    table: pd.DataFrame, configured: tuple[str, ...]
) -> tuple[tuple[str, ...] | None, str, list[str]]:
    """The order the channel contrasts imply, a reason, and caveats."""
    notes: list[str] = []
    if len(configured) != 4 or len(table) != 4:
        return None, "the check needs all four channels (FLAIR, T1, T1Gd, T2) present", notes
    et = table["ET_contrast"]
    ed = table["ED_contrast"]
    if et.isna().all() or ed.isna().all():
        missing = "ET" if et.isna().all() else "ED"
        return None, f"no case has {missing} voxels, so the channels cannot be told apart", notes
    ranked_et = et.sort_values(ascending=False)
    t1gd = int(ranked_et.index[0])
    margin = float(ranked_et.iloc[0] - ranked_et.iloc[1])
    if margin < _WEAK_MARGIN:
        notes.append(
            f"weak: ET is only {margin:.2f} brain-sd brighter on channel {t1gd} than on channel "
            f"{int(ranked_et.index[1])}"
        )
    rest = ed.drop(index=t1gd).sort_values(ascending=False)
    bright_pair = {int(rest.index[0]), int(rest.index[1])}
    t1 = int(rest.index[2])
    configured_pair = {configured.index("flair"), configured.index("t2")}
    if bright_pair == configured_pair:
        flair, t2 = configured.index("flair"), configured.index("t2")
    else:
        # FLAIR and T2 both show oedema; necrosis is brighter (fluid-like) on T2
        ncr_minus_ed = table["NCR_contrast"] - table["ED_contrast"]
        a, b = sorted(bright_pair, key=lambda c: float(np.nan_to_num(ncr_minus_ed[c], nan=0)))
        flair, t2 = a, b
    notes.append(
        "FLAIR and T2 are both bright in oedema; this check does not tell the two apart "
        "(it keeps the configured assignment when it fits)"
    )
    implied = [""] * 4
    implied[flair], implied[t1], implied[t1gd], implied[t2] = "flair", "t1", "t1gd", "t2"
    lo, hi = sorted(bright_pair)
    reason = (
        f"ET is brightest vs brain on channel {t1gd} (configured {configured[t1gd]}, "
        f"{et[t1gd]:+.2f} sd), ED on channels {lo} and {hi} (configured {configured[lo]} and "
        f"{configured[hi]}, {ed[lo]:+.2f} and {ed[hi]:+.2f} sd)"
    )
    return tuple(implied), reason, notes


class ChannelStats:
    """Accumulates :func:`case_channel_stats` over cases (streaming: one case in memory)."""

    def __init__(self, channel_order: Sequence[str] | str | None = None) -> None:
        self.configured = parse_channel_order(channel_order) if channel_order else None
        self.rows: list[dict[str, Any]] = []
        self.skipped: list[str] = []

    def add(self, case: Case) -> None:
        """Add one case (a case without a label mask is skipped and listed)."""
        rows = case_channel_stats(case)
        if not rows:
            self.skipped.append(case.case_id)
            return
        if self.configured is None:
            self.configured = parse_channel_order(
                case.provenance.get("channel_order") or list(case.images)
            )
        self.rows += rows

    def report(self) -> ChannelReport:
        """Aggregate the cases added so far into a :class:`ChannelReport`."""
        import pandas as pd

        configured = self.configured or tuple(DEFAULT_CHANNEL_ORDER)
        per_case = pd.DataFrame(self.rows)
        if per_case.empty:
            table = pd.DataFrame(columns=["modality", "cases"])
            verdict = "undetermined: no case with a label mask was read"
            return ChannelReport(configured, table, per_case, None, None, verdict)
        table = per_case.groupby("channel").agg(
            modality=("modality", "first"),
            cases=("case_id", "nunique"),
            brain_mean=("brain_mean", "mean"),
            **{f"{r}_mean": (f"{r}_mean", "mean") for r in CHANNEL_REGIONS},
            **{f"{r}_contrast": (f"{r}_contrast", "mean") for r in CHANNEL_REGIONS},
        )
        with_et = per_case[per_case["ET_voxels"] > 0].groupby("channel")["case_id"].nunique()
        table["cases_with_ET"] = with_et.reindex(table.index).fillna(0).astype(int)
        implied, reason, notes = _implied_order(table, configured)
        if self.skipped:
            notes.append(f"{len(self.skipped)} case(s) without a label mask skipped")
        if implied is None:
            agrees, verdict = None, f"undetermined: {reason}"
        elif implied == configured:
            agrees = True
            verdict = f"the data agree with the channel order {','.join(configured)}: {reason}"
        else:
            agrees = False
            verdict = (
                f"the data disagree with the channel order {','.join(configured)}: {reason}; "
                f"they imply --channel-order {','.join(implied)}"
            )
        return ChannelReport(configured, table, per_case, agrees, implied, verdict, notes)


def check_channel_order(
    cases: Iterable[Case], channel_order: Sequence[str] | str | None = None
) -> ChannelReport:
    """Check that the image channels behave like their configured modalities.

    Expected: enhancing tumour (ET) brightest relative to normal brain on T1Gd; oedema (ED)
    bright on FLAIR and T2. Robust to cases without ET (LGG): their ET contrast is left out.

    Parameters
    ----------
    cases
        Cases with label masks, e.g. ``(read_volume(pv) for pv in scan_pack(path).values())``;
        read one at a time.
    channel_order
        The configured order; default: the cases' own (``provenance["channel_order"]``).

    Examples
    --------
    >>> volumes = scan_pack(Path("BraTS2020_training_data"))  # doctest: +SKIP
    >>> report = check_channel_order(read_volume(v) for v in volumes.values())  # doctest: +SKIP
    >>> report.agrees, report.implied  # doctest: +SKIP
    (True, ('flair', 't1', 't1gd', 't2'))
    """
    stats = ChannelStats(channel_order)
    for case in cases:
        stats.add(case)
    return stats.report()
