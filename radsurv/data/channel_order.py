"""Which image channel is which modality: a check on signatures that hold on real MRI.

:func:`check_channel_order` scores every assignment of modalities to the image channels on
signatures that hold on real MRI (oedema on FLAIR and T2, CSF bright on T2 and dark on FLAIR,
enhancement on T1Gd, T1 and T1Gd alike in normal brain), measured on percentile ranks within
normal brain, and says whether the configured modality order is consistent, wrong (naming the
one order that fits) or undetermined (``radsurv check DATA --channels``).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import TYPE_CHECKING, Any

import numpy as np

from radsurv.data.case import Case
from radsurv.data.hdf5 import (
    DEFAULT_CHANNEL_ORDER,
    parse_channel_order,
)
from radsurv.data.labels import LABEL_ED, LABEL_ET, LABEL_NCR

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

#
# Which image channel is which modality, decided from signatures that hold on real MRI and that
# survive any per-volume intensity scaling (the Kaggle pack is standardised per volume, BraTS
# 2015 data are z-scored in the brain): every statistic is a percentile rank within the case's
# own normal brain, or a rank correlation.
#
#   oedema        ED is brighter (vs normal brain) on FLAIR and T2 than on T1 and T1Gd
#   csf           CSF is bright on T2 and suppressed on FLAIR: the brightest normal-brain voxels
#                 far from the tumour on T2 are dark on FLAIR, not the other way round
#   et            enhancing tumour is brighter on T1Gd than on T1
#   vessels       vessels / choroid plexus enhance: the brightest voxels on T1Gd are dark on T1,
#                 not the other way round (works without ET: LGG)
#   et_over_ed    on T1Gd, ET is brighter than ED; on FLAIR and T2 it is not much brighter
#   t1_pair_alike T1 and T1Gd look alike in normal brain (grey/white matter, CSF): each correlates
#                 with the other more than with FLAIR or T2
#
# Each candidate order (every assignment of modalities to the channels present) is scored pair
# of channels by pair of channels: a pair is supported when at least one of its signatures
# passes its threshold in favour and none passes it against. An order fits when all its pairs
# are supported. The check names an order only when exactly one fits; otherwise it says
# undetermined.

CHANNEL_REGIONS: dict[str, int] = {"ET": LABEL_ET, "NCR": LABEL_NCR, "ED": LABEL_ED}

BRIGHT_QUANTILE = 0.99  # "bright on A": above A's 99th percentile of normal brain
DARK_QUANTILE = 0.5  # "dark on B": below B's median of normal brain
FAR_FROM_TUMOUR_MM = 10.0  # CSF / vessel candidates keep this distance from the tumour
MIN_REGION_VOXELS = 20  # a case with fewer ET (or ED, NCR) voxels leaves that region out
MIN_BRIGHT_VOXELS = 10  # fewer bright candidates: the bright-only statistic is left out
MIN_FAR_FRACTION = 0.5  # fewer normal-brain voxels that far from the tumour: use them all
_SUBSAMPLE_ABOVE = 400_000  # larger brains are measured on every 2nd voxel along each axis

# Signature -> threshold on its value (a difference of percentile ranks, fractions or rank
# correlations). On the real TCGA cases (README) every value that decided a pair is at least 1.6
# times its threshold (t1_pair_alike 0.17, et_over_ed 0.25, vessels 0.23, oedema 0.30).
SIGNATURE_THRESHOLDS: dict[str, float] = {
    "oedema": 0.15,
    "csf": 0.3,
    "et": 0.2,
    "vessels": 0.1,
    "et_over_ed": 0.15,
    "t1_pair_alike": 0.1,
}
_T2_LIKE = ("flair", "t2")
_PARTNER = {"t1": "t1gd", "t1gd": "t1", "flair": "t2", "t2": "flair"}
_NAMES = {"flair": "FLAIR", "t1": "T1", "t1gd": "T1Gd", "t2": "T2"}


def _background_values(image: np.ndarray) -> np.ndarray:
    """The value outside the head, per axial slice: the median of the slice's border.

    Skull-stripped BraTS images are 0 outside the brain; standardisation (the Kaggle pack) turns
    that 0 into a negative constant, so "non-zero" cannot define the brain there. Taking it per
    slice also covers data standardised slice by slice.
    """
    frame = np.concatenate([image[:, 0, :], image[:, -1, :], image[:, :, 0], image[:, :, -1]], 1)
    return np.median(frame, axis=1)[:, None, None]


def _own_midranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``values`` sorted, and the percentile rank (0..1) of each value among them (mid ranks)."""
    order = np.argsort(values, kind="stable")
    ref = values[order]
    if ref.size == 0:
        return ref, np.empty(0)
    new_run = np.empty(ref.size, dtype=bool)
    new_run[0] = True
    np.not_equal(ref[1:], ref[:-1], out=new_run[1:])
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], ref.size)
    run_rank = (starts + ends) / (2.0 * ref.size)  # the mid rank of each run of equal values
    ranks = np.empty(ref.size)
    ranks[order] = np.repeat(run_rank, ends - starts)
    return ref, ranks


def _midranks(sorted_ref: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Percentile rank (0..1) of ``values`` within the sorted reference; ties get the mid rank."""
    lo = np.searchsorted(sorted_ref, values, side="left")
    hi = np.searchsorted(sorted_ref, values, side="right")
    return (lo + hi) / (2.0 * max(sorted_ref.size, 1))


@dataclass
class _CaseMeasurements:
    rows: list[dict[str, Any]]  # one per channel
    pairs: list[dict[str, Any]]  # one per ordered pair of channels


def _measure_case(case: Case) -> _CaseMeasurements | None:
    """Per-channel and per-channel-pair statistics of one case (None without a label mask)."""
    if case.labels is None:
        return None
    from scipy.ndimage import distance_transform_edt

    order = list(case.provenance.get("channel_order") or case.images)
    present = [(i, m) for i, m in enumerate(order) if m in case.images]
    brain = np.zeros(case.shape, dtype=bool)
    for _, name in present:
        img = case.images[name]
        brain |= img != _background_values(img)
    labels = case.labels
    step = 2 if np.count_nonzero(brain) > _SUBSAMPLE_ABOVE else 1
    sub = (slice(None, None, step),) * 3
    brain_s, tumour_s = brain[sub], labels[sub] > 0
    normal_s = brain_s & ~tumour_s
    if tumour_s.any():
        spacing_zyx = tuple(float(s) * step for s in reversed(case.spacing))
        far_s = normal_s & (
            distance_transform_edt(~tumour_s, sampling=spacing_zyx) > FAR_FROM_TUMOUR_MM
        )
    else:
        far_s = normal_s
    if np.count_nonzero(far_s) < MIN_FAR_FRACTION * np.count_nonzero(normal_s):
        far_s = normal_s  # the tumour fills the image (phantoms): all normal brain
    far_in_normal = far_s[normal_s]
    regions = {r: labels == lab for r, lab in CHANNEL_REGIONS.items()}
    counts = {r: int(np.count_nonzero(sel)) for r, sel in regions.items()}
    rows: list[dict[str, Any]] = []
    ranks: dict[int, np.ndarray] = {}
    for index, name in present:
        img = case.images[name]
        values = img[sub][normal_s].astype(np.float64)
        ref, ranks[index] = _own_midranks(values)
        mu = float(values.mean()) if values.size else float("nan")
        sd = float(values.std()) if values.size else float("nan")
        row: dict[str, Any] = {
            "case_id": case.case_id,
            "channel": index,
            "modality": name,
            "brain_mean": mu,
            "brain_sd": sd,
        }
        for region, sel in regions.items():
            n = counts[region]
            region_values = img[sel].astype(np.float64) if n else np.empty(0)
            mean = float(region_values.mean()) if n else float("nan")
            row[f"{region}_mean"] = mean
            row[f"{region}_contrast"] = (mean - mu) / sd if n and sd > 0 else float("nan")
            row[f"{region}_voxels"] = n
            usable = n >= MIN_REGION_VOXELS and ref.size > 0
            row[f"{region}_rank"] = (
                float(np.median(_midranks(ref, region_values))) if usable else float("nan")
            )
        rows.append(row)
    pairs: list[dict[str, Any]] = []
    far_ranks = {i: r[far_in_normal] for i, r in ranks.items()}
    for a, name_a in present:
        bright = far_ranks[a] >= BRIGHT_QUANTILE
        n_bright = int(np.count_nonzero(bright))
        for b, name_b in present:
            if a == b:
                continue
            if ranks[a].size > 2 and ranks[a].std() > 0 and ranks[b].std() > 0:
                rho = float(np.corrcoef(ranks[a], ranks[b])[0, 1])
            else:
                rho = float("nan")
            only = (
                float(np.mean(far_ranks[b][bright] < DARK_QUANTILE))
                if n_bright >= MIN_BRIGHT_VOXELS
                else float("nan")
            )
            pairs.append(
                {
                    "case_id": case.case_id,
                    "channel_a": a,
                    "channel_b": b,
                    "modality_a": name_a,
                    "modality_b": name_b,
                    "rho": rho,
                    "bright_only": only,
                }
            )
    return _CaseMeasurements(rows, pairs)


def case_channel_stats(case: Case) -> list[dict[str, Any]]:
    """Per image channel of one case: intensities in ET, NCR, ED and normal brain.

    Normal brain is every voxel that differs from the background value (in any channel) and is
    not tumour. ``{region}_rank`` is the median percentile rank (0..1) of the region's voxels
    within the channel's normal brain: scale-free, so it compares across cases and survives any
    per-volume standardisation; NaN when the case has fewer than ``MIN_REGION_VOXELS`` voxels of
    the region (ET in LGG). ``{region}_contrast`` is (region mean - brain mean) / brain sd, kept
    for display; the verdict does not use it.

    Returns
    -------
    list of dict
        One row per channel, with keys ``case_id, channel, modality, brain_mean, brain_sd`` and
        ``{region}_mean, {region}_contrast, {region}_rank, {region}_voxels`` for ET, NCR, ED;
        empty when the case has no label mask.
    """
    measured = _measure_case(case)
    return [] if measured is None else measured.rows


@dataclass(frozen=True)
class Signature:
    """One signature measured for one candidate order, on two of its channels.

    ``value`` >= ``threshold`` supports the candidate order, ``value`` <= -``threshold``
    contradicts it, anything between (or NaN: not measurable) is inconclusive.
    """

    name: str
    modalities: tuple[str, str]
    channels: tuple[int, int]
    claim: str
    value: float
    threshold: float

    @property
    def outcome(self) -> str:
        if not np.isfinite(self.value):
            return "not measurable"
        if self.value >= self.threshold:
            return "supports"
        if self.value <= -self.threshold:
            return "contradicts"
        return "inconclusive"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "modalities": list(self.modalities),
            "channels": list(self.channels),
            "claim": self.claim,
            "value": round(float(self.value), 4) if np.isfinite(self.value) else None,
            "threshold": self.threshold,
            "outcome": self.outcome,
        }


@dataclass
class _Measures:
    """Cohort (or one case's) statistics the signatures read: per channel and channel pair."""

    rank: dict[tuple[str, int], float]  # (region, channel) -> median percentile rank
    rho: dict[tuple[int, int], float]
    bright_only: dict[tuple[int, int], float]

    def get(self, table: dict, key: tuple) -> float:
        value = table.get(key, float("nan"))
        return float(value) if value is not None else float("nan")


def _pair_signatures(m: dict[str, int], a: str, b: str, stats: _Measures) -> list[Signature]:
    """The signatures that tell modality ``a`` from ``b`` under the assignment ``m``."""
    thr = SIGNATURE_THRESHOLDS
    rank = lambda region, mod: stats.get(stats.rank, (region, m[mod]))  # noqa: E731
    only = lambda x, y: stats.get(stats.bright_only, (m[x], m[y]))  # noqa: E731
    rho = lambda x, y: stats.get(stats.rho, (m[x], m[y]))  # noqa: E731
    pair = {a, b}
    out: list[Signature] = []

    def add(name: str, x: str, y: str, claim: str, value: float) -> None:
        out.append(Signature(name, (x, y), (m[x], m[y]), claim, value, thr[name]))

    if pair == {"flair", "t2"}:
        add(
            "csf",
            "t2",
            "flair",
            "CSF: normal-brain voxels far from the tumour in the top 1% on T2 are below the "
            "median on FLAIR (fraction), minus the same with T2 and FLAIR exchanged",
            only("t2", "flair") - only("flair", "t2"),
        )
    elif pair == {"t1", "t1gd"}:
        add(
            "et",
            "t1gd",
            "t1",
            "enhancement: median percentile of ET within normal brain, T1Gd minus T1",
            rank("ET", "t1gd") - rank("ET", "t1"),
        )
        add(
            "vessels",
            "t1gd",
            "t1",
            "enhancing vessels: voxels far from the tumour in the top 1% on T1Gd that are below "
            "the median on T1 (fraction), minus the same with T1 and T1Gd exchanged",
            only("t1gd", "t1") - only("t1", "t1gd"),
        )
    else:
        x = a if a in _T2_LIKE else b  # oedema-bright
        y = b if x == a else a  # T1-weighted
        add(
            "oedema",
            x,
            y,
            f"oedema: median percentile of ED within normal brain, {_NAMES[x]} minus {_NAMES[y]}",
            rank("ED", x) - rank("ED", y),
        )
        partner = _PARTNER[y]
        if partner in m:
            add(
                "t1_pair_alike",
                y,
                x,
                f"T1 and T1Gd alike in normal brain: rank correlation of {_NAMES[y]} with "
                f"{_NAMES[partner]} minus that of {_NAMES[x]} with {_NAMES[partner]}",
                rho(y, partner) - rho(x, partner),
            )
        if y == "t1gd":
            add(
                "et_over_ed",
                y,
                x,
                f"ET over ED: (ET - ED median percentile) on T1Gd minus the same on {_NAMES[x]}",
                (rank("ET", y) - rank("ED", y)) - (rank("ET", x) - rank("ED", x)),
            )
    return out


def _pair_outcome(signatures: Sequence[Signature]) -> str:
    outcomes = {s.outcome for s in signatures}
    if "contradicts" in outcomes:
        return "contradicted"
    if "supports" in outcomes:
        return "supported"
    return "inconclusive"


def _evaluate(assignment: dict[int, str], stats: _Measures) -> tuple[list[Signature], str]:
    """All signatures of one candidate order and its outcome: fits, contradicted or open."""
    m = {mod: ch for ch, mod in assignment.items()}
    channels = sorted(assignment)
    signatures: list[Signature] = []
    outcomes = []
    for i, ci in enumerate(channels):
        for cj in channels[i + 1 :]:
            sigs = _pair_signatures(m, assignment[ci], assignment[cj], stats)
            signatures += sigs
            outcomes.append(_pair_outcome(sigs))
    if "contradicted" in outcomes:
        return signatures, "contradicted"
    if all(o == "supported" for o in outcomes):
        return signatures, "fits"
    return signatures, "open"


@dataclass
class _Decision:
    implied: tuple[str, ...] | None
    fitting: list[dict[int, str]]
    possible: dict[int, list[str]]
    configured_evidence: list[Signature]
    implied_evidence: list[Signature]
    reason: str
    swaps: list[str] = field(default_factory=list)  # exchanges of two configured channels ruled out


def _decide(configured: tuple[str, ...], channels: list[int], stats: _Measures) -> _Decision:
    """Score every assignment of modalities to the channels present; name the one that fits."""
    from itertools import permutations

    from radsurv.data.labels import MODALITIES

    config_assign = {c: configured[c] for c in channels if configured[c] in MODALITIES}
    configured_evidence: list[Signature] = []
    configured_outcome = "unknown"
    if len(config_assign) == len(channels):
        configured_evidence, configured_outcome = _evaluate(config_assign, stats)
    if len(channels) < 2:
        reason = f"only {len(channels)} channel(s) present; at least two are needed"
        return _Decision(None, [], {}, configured_evidence, [], reason)
    fitting: list[dict[int, str]] = []
    open_: list[dict[int, str]] = []
    for mods in permutations(MODALITIES, len(channels)):
        assignment = dict(zip(channels, mods, strict=True))
        _, outcome = _evaluate(assignment, stats)
        if outcome == "fits":
            fitting.append(assignment)
        elif outcome == "open":
            open_.append(assignment)
    allowed = fitting or open_
    possible = {c: sorted({a[c] for a in allowed}, key=MODALITIES.index) for c in channels}
    if len(fitting) == 1:
        assignment = fitting[0]
        implied = list(configured)
        leftover = [m for m in MODALITIES if m not in assignment.values()]
        absent = [c for c in range(len(configured)) if c not in assignment]
        if sorted(configured[c] for c in absent) != sorted(leftover):
            for c, mod in zip(absent, leftover, strict=False):
                implied[c] = mod
        for c, mod in assignment.items():
            implied[c] = mod
        evidence, _ = _evaluate(assignment, stats)
        return _Decision(tuple(implied), fitting, possible, configured_evidence, evidence, "")
    if fitting:
        orders = "; ".join(",".join(a[c] for c in channels) for a in fitting[:6])
        more = f" and {len(fitting) - 6} more" if len(fitting) > 6 else ""
        reason = f"{len(fitting)} orders fit every signature ({orders}{more})"
    else:
        reason = "no order fits every signature"
    swaps: list[str] = []
    if configured_outcome == "fits":
        reason += "; the configured order is one of them"
        for i, ci in enumerate(channels):
            for cj in channels[i + 1 :]:
                swapped = {**config_assign, ci: config_assign[cj], cj: config_assign[ci]}
                sigs, outcome = _evaluate(swapped, stats)
                against = [
                    f"{sig.name} {sig.value:+.2f}" for sig in sigs if sig.outcome == "contradicts"
                ]
                if outcome == "contradicted" and against:
                    swaps.append(
                        f"channels {ci} and {cj} ({config_assign[ci]}, {config_assign[cj]}): "
                        + ", ".join(against)
                    )
    elif configured_evidence:
        by_pair: dict[tuple[int, int], list[Signature]] = {}
        for sig in configured_evidence:
            by_pair.setdefault(tuple(sorted(sig.channels)), []).append(sig)
        described = []
        for sigs in by_pair.values():
            outcome = _pair_outcome(sigs)
            if outcome == "supported":
                continue
            a, b = sigs[0].modalities
            detail = ", ".join(
                f"{sig.name} {sig.value:+.2f} (threshold {sig.threshold})"
                if np.isfinite(sig.value)
                else f"{sig.name} not measurable"
                for sig in sigs
            )
            described.append(f"{_NAMES[a]} vs {_NAMES[b]} {outcome}: {detail}")
        reason += "; the configured order: " + "; ".join(described)
    return _Decision(None, fitting, possible, configured_evidence, [], reason, swaps)


def _measures_from(channel_rows: pd.DataFrame, pair_rows: pd.DataFrame) -> _Measures:
    """Median over cases of the per-case statistics (a region's ranks: cases that have it)."""
    rank: dict[tuple[str, int], float] = {}
    for region in CHANNEL_REGIONS:
        med = channel_rows.groupby("channel")[f"{region}_rank"].median()
        rank.update({(region, int(c)): float(v) for c, v in med.items()})
    rho: dict[tuple[int, int], float] = {}
    only: dict[tuple[int, int], float] = {}
    if not pair_rows.empty:
        grouped = pair_rows.groupby(["channel_a", "channel_b"])
        rho = {(int(a), int(b)): float(v) for (a, b), v in grouped["rho"].median().items()}
        only = {(int(a), int(b)): float(v) for (a, b), v in grouped["bright_only"].median().items()}
    return _Measures(rank, rho, only)


@dataclass
class ChannelReport:
    """Whether the image channels behave like the modalities they are configured as.

    Attributes
    ----------
    configured
        The configured channel order (modality of channel 0, 1, ...).
    table
        One row per channel: ``modality`` (configured), ``cases``, ``cases_with_ET``, median
        percentile ranks within normal brain ``ET_rank, NCR_rank, ED_rank`` (what the verdict
        uses), mean intensities ``brain_mean, ET_mean, NCR_mean, ED_mean`` and contrasts vs
        normal brain in brain-sd units ``ET_contrast, NCR_contrast, ED_contrast`` (display).
    per_case
        The per-case rows behind ``table``.
    agrees
        True (consistent), False (wrong: ``implied`` names the right order) or None
        (undetermined).
    implied
        The one order the data fit (``None`` when undetermined).
    verdict
        One sentence saying what was found.
    notes
        Caveats and partial findings.
    evidence
        The signatures of the configured order (``evidence["configured"]``) and of the implied
        one (``evidence["implied"]``): name, modalities, channels, claim, value, threshold,
        outcome.
    pairs
        One row per ordered pair of channels: median rank correlation in normal brain ``rho``
        and ``bright_only`` (fraction of the top-1% voxels of channel a, far from the tumour,
        that are below the median on channel b).
    possible
        Channel -> modalities still possible (orders not contradicted by any signature).
    per_case_verdicts
        One row per case: ``case_id, status, implied`` from that case's own statistics.
    """

    configured: tuple[str, ...]
    table: pd.DataFrame
    per_case: pd.DataFrame
    agrees: bool | None
    implied: tuple[str, ...] | None
    verdict: str
    notes: list[str] = field(default_factory=list)
    evidence: dict[str, list[Signature]] = field(default_factory=dict)
    pairs: pd.DataFrame | None = None
    possible: dict[int, list[str]] = field(default_factory=dict)
    per_case_verdicts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def status(self) -> str:
        """``consistent``, ``wrong`` or ``undetermined``."""
        return {True: "consistent", False: "wrong", None: "undetermined"}[self.agrees]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form: verdict, evidence (each signature with value and threshold)."""
        pairs = self.pairs
        return {
            "status": self.status,
            "configured": list(self.configured),
            "implied": list(self.implied) if self.implied else None,
            "agrees": self.agrees,
            "verdict": self.verdict,
            "notes": self.notes,
            "evidence": {k: [s.to_dict() for s in v] for k, v in self.evidence.items()},
            "possible": {str(c): mods for c, mods in self.possible.items()},
            "thresholds": dict(SIGNATURE_THRESHOLDS),
            "settings": {
                "bright_quantile": BRIGHT_QUANTILE,
                "dark_quantile": DARK_QUANTILE,
                "far_from_tumour_mm": FAR_FROM_TUMOUR_MM,
                "min_region_voxels": MIN_REGION_VOXELS,
            },
            "channels": json.loads(self.table.reset_index().to_json(orient="records")),
            "pairs": (
                json.loads(pairs.to_json(orient="records"))
                if pairs is not None and not pairs.empty
                else []
            ),
            "per_case": self.per_case_verdicts,
        }

    def evidence_frame(self, which: str = "configured") -> pd.DataFrame:
        """The signatures of the configured (or ``"implied"``) order as a table."""
        import pandas as pd

        rows = [s.to_dict() for s in self.evidence.get(which, [])]
        return pd.DataFrame(rows)

    def _repr_html_(self) -> str:
        colour = {True: "green", False: "red", None: "gray"}[self.agrees]
        notes = "".join(f"<li>{escape(n)}</li>" for n in self.notes)
        which = "implied" if self.evidence.get("implied") else "configured"
        evidence = self.evidence_frame(which)
        return (
            f"<p style='color:{colour}'><b>{escape(self.verdict)}</b></p>"
            + self.table.to_html(float_format=lambda v: f"{v:.2f}")
            + (
                f"<p>signatures of the {which} order</p>"
                + evidence.to_html(index=False, float_format=lambda v: f"{v:.3f}")
                if not evidence.empty
                else ""
            )
            + (f"<ul>{notes}</ul>" if notes else "")
        )

    def __str__(self) -> str:
        return self.verdict


class ChannelStats:
    """Accumulates the channel statistics over cases (streaming: one case in memory)."""

    def __init__(self, channel_order: Sequence[str] | str | None = None) -> None:
        self.configured = parse_channel_order(channel_order) if channel_order else None
        self.rows: list[dict[str, Any]] = []
        self.pair_rows: list[dict[str, Any]] = []
        self.skipped: list[str] = []

    def add(self, case: Case) -> None:
        """Add one case (a case without a label mask is skipped and listed)."""
        measured = _measure_case(case)
        if measured is None or not measured.rows:
            self.skipped.append(case.case_id)
            return
        if self.configured is None:
            self.configured = parse_channel_order(
                case.provenance.get("channel_order") or list(case.images)
            )
        self.rows += measured.rows
        self.pair_rows += measured.pairs

    def report(self) -> ChannelReport:
        """Aggregate the cases added so far into a :class:`ChannelReport`."""
        import pandas as pd

        configured = self.configured or tuple(DEFAULT_CHANNEL_ORDER)
        per_case = pd.DataFrame(self.rows)
        if per_case.empty:
            table = pd.DataFrame(columns=["modality", "cases"])
            verdict = "undetermined: no case with a label mask was read"
            return ChannelReport(configured, table, per_case, None, None, verdict)
        pair_rows = pd.DataFrame(self.pair_rows)
        table = per_case.groupby("channel").agg(
            modality=("modality", "first"),
            cases=("case_id", "nunique"),
            **{f"{r}_rank": (f"{r}_rank", "median") for r in CHANNEL_REGIONS},
            brain_mean=("brain_mean", "mean"),
            **{f"{r}_mean": (f"{r}_mean", "mean") for r in CHANNEL_REGIONS},
            **{f"{r}_contrast": (f"{r}_contrast", "mean") for r in CHANNEL_REGIONS},
        )
        with_et = per_case[per_case["ET_rank"].notna()].groupby("channel")["case_id"].nunique()
        table["cases_with_ET"] = with_et.reindex(table.index).fillna(0).astype(int)
        pairs = (
            pair_rows.groupby(["channel_a", "channel_b"], as_index=False).agg(
                modality_a=("modality_a", "first"),
                modality_b=("modality_b", "first"),
                rho=("rho", "median"),
                bright_only=("bright_only", "median"),
            )
            if not pair_rows.empty
            else pd.DataFrame()
        )
        channels = [int(c) for c in table.index]
        decision = _decide(configured, channels, _measures_from(per_case, pair_rows))
        notes: list[str] = []
        per_case_verdicts = []
        case_ids = list(dict.fromkeys(per_case["case_id"]))
        for case_id in case_ids:
            rows = per_case[per_case["case_id"] == case_id]
            prs = pair_rows[pair_rows["case_id"] == case_id] if not pair_rows.empty else pair_rows
            own = _decide(configured, [int(c) for c in rows["channel"]], _measures_from(rows, prs))
            status = (
                "undetermined"
                if own.implied is None
                else ("consistent" if own.implied == configured else "wrong")
            )
            per_case_verdicts.append(
                {
                    "case_id": case_id,
                    "status": status,
                    "implied": list(own.implied) if own.implied else None,
                }
            )
        if len(case_ids) > 1:
            counts = pd.Series([v["status"] for v in per_case_verdicts]).value_counts()
            notes.append(
                "case by case: "
                + ", ".join(f"{n} {s}" for s, n in counts.items())
                + " (the verdict uses the medians over cases)"
            )
        if table["ET_rank"].isna().all():
            notes.append(
                f"no case has ET (at least {MIN_REGION_VOXELS} voxels): the et and et_over_ed "
                "signatures are not measurable; T1 vs T1Gd rests on the vessel signature"
            )
        if self.skipped:
            notes.append(f"{len(self.skipped)} case(s) without a label mask skipped")
        evidence = {"configured": decision.configured_evidence}
        cfg = ",".join(configured)
        if decision.implied is None:
            agrees = None
            verdict = (
                f"undetermined: the data do not single out one channel order: {decision.reason}"
            )
            if decision.possible:
                fits_configured = all(
                    configured[c] in mods for c, mods in decision.possible.items()
                )
                described = "; ".join(
                    f"channel {c}: {' or '.join(mods) if mods else 'none'}"
                    for c, mods in decision.possible.items()
                )
                notes.append(
                    f"modalities the signatures leave possible per channel: {described}"
                    + (
                        " (each channel's configured modality is among them)"
                        if fits_configured
                        else " (the configured order is not among them: at least one of its "
                        "signatures contradicts it)"
                    )
                )
            if decision.swaps:
                notes.append(
                    "the configured order fits every signature, and exchanging two of its "
                    "channels is contradicted for: " + "; ".join(decision.swaps)
                )
        else:
            evidence["implied"] = decision.implied_evidence
            supported = [s for s in decision.implied_evidence if s.outcome == "supports"]
            summary = "; ".join(
                f"{s.name} {_NAMES[s.modalities[0]]}(ch{s.channels[0]}) vs "
                f"{_NAMES[s.modalities[1]]}(ch{s.channels[1]}) {s.value:+.2f}"
                for s in supported
                if s.name in ("csf", "et", "vessels", "oedema")
            )
            if decision.implied == configured:
                agrees = True
                verdict = (
                    f"consistent: the data agree with the channel order {cfg} and with no other "
                    f"order ({summary})"
                )
            else:
                agrees = False
                implied = ",".join(decision.implied)
                moved = ", ".join(
                    f"channel {c} (configured {configured[c]}) is {decision.implied[c]}"
                    for c in channels
                    if configured[c] != decision.implied[c]
                )
                verdict = (
                    f"wrong: the data disagree with the channel order {cfg}: {moved}; they imply "
                    f"--channel-order {implied} ({summary})"
                )
        if len(channels) < 4:
            notes.append(
                f"only {len(channels)} of 4 modalities present: FLAIR and T2 can be told apart "
                "only when both are present, T1 and T1Gd likewise"
            )
        return ChannelReport(
            configured,
            table,
            per_case,
            agrees,
            decision.implied,
            verdict,
            notes,
            evidence,
            pairs,
            decision.possible,
            per_case_verdicts,
        )


def check_channel_order(
    cases: Iterable[Case], channel_order: Sequence[str] | str | None = None
) -> ChannelReport:
    """Check that the image channels behave like their configured modalities.

    Every assignment of the four modalities to the channels present is scored on signatures
    that hold on real MRI (see the module notes and ``SIGNATURE_THRESHOLDS``): oedema bright on
    FLAIR and T2, CSF bright on T2 and dark on FLAIR, enhancement (ET, vessels) on T1Gd and not
    on T1, T1 and T1Gd alike in normal brain. The verdict is *consistent* when the configured
    order is the only one that fits, *wrong* (with the order that fits) when another one is the
    only one, and *undetermined* otherwise. All statistics are percentile ranks or rank
    correlations within each case's normal brain, so per-volume standardisation does not matter.

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
    >>> report.status, report.implied  # doctest: +SKIP
    ('consistent', ('flair', 't1', 't1gd', 't2'))
    """
    stats = ChannelStats(channel_order)
    for case in cases:
        stats.add(case)
    return stats.report()
