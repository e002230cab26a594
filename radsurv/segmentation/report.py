"""The segmentation report: look at predicted masks before computing radiomics from them.

One self-contained HTML page (``report.html``; images embedded as base64 PNG, no scripts, no
external files or fonts) with, per case, axial, coronal and sagittal overlays through the tumour
centre, the prediction beside the reference, Dice and HD95 per region (WT, TC, ET) sorted worst
first, and the distribution of each metric over the cases.

- Background: FLAIR when the case has it, else its first modality, in grey (window: 0.5th to
  99.5th percentile of the non-zero voxels of the whole volume, 64 grey levels).
- Labels: one fixed colour each, blended at 50 % over the grey (:data:`LABEL_COLOURS`):
  NCR (1) red, ED (2) green, ET (4) yellow.
- Centre: centre of mass of the reference WT; of the predicted WT when the reference is absent
  or empty; the centre of the volume when both are empty. Prediction and reference are cut
  through the same voxel. Voxels are drawn at their physical aspect (anisotropic spacing shows
  as such); coronal and sagittal views have z (the slice axis) increasing upwards.
- Order: failed cases first, then by WT Dice ascending (ties: mean Dice over WT, TC and ET,
  then case id). Without any reference the cases keep the source's order, and the page has
  no metric columns.

Examples
--------
>>> from radsurv.segmentation.report import write_segmentation_report
>>> write_segmentation_report("pred", "data_manifest.csv")  # doctest: +SKIP
PosixPath('pred/report.html')
"""

from __future__ import annotations

import base64
import io
import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radsurv.data.case import Case
from radsurv.data.labels import LABEL_ED, LABEL_ET, LABEL_NCR, REGION_LABELS
from radsurv.data.nifti import read_mask_nifti
from radsurv.errors import RadsurvError
from radsurv.evaluation.report import figure_to_data_uri, format_number, new_figure, render_report
from radsurv.segmentation.evaluate import find_mask
from radsurv.segmentation.metrics import EVAL_REGIONS, HD95_EMPTY_MM, case_scores
from radsurv.segmentation.sources import Cases, case_loaders

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"

#: label value -> (name, RGB colour 0..1, hex): fixed, so every report reads the same way.
LABEL_COLOURS: dict[int, tuple[str, tuple[float, float, float], str]] = {
    LABEL_NCR: ("NCR", (0.894, 0.102, 0.110), "#e41a1c"),  # red
    LABEL_ED: ("ED", (0.302, 0.686, 0.290), "#4daf4a"),  # green
    LABEL_ET: ("ET", (1.000, 0.851, 0.184), "#ffd92f"),  # yellow
}
OVERLAY_ALPHA = 0.5
PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
GREY_LEVELS = 64  # 4 slots (grey, NCR, ED, ET) x 64 levels = one 256-colour PNG palette
MIN_DISPLAY_PX = 160  # small volumes are enlarged (nearest neighbour) to at least this size

#: Errors of one case that the report records (as a failed case) instead of stopping.
CASE_ERRORS: tuple[type[Exception], ...] = (RadsurvError, OSError, RuntimeError, ValueError)

ProgressCallback = Callable[[int, int, str], None]
"""``progress(done, total, what)``: called after each case (the CLI draws a bar)."""


def background_modality(case: Case) -> str:
    """FLAIR when present, else the case's first modality (canonical order)."""
    mods = case.modalities
    if not mods:
        raise RadsurvError(f"case {case.case_id}: no image to draw the masks over")
    return "flair" if "flair" in mods else mods[0]


def tumour_centre(
    reference: np.ndarray | None, prediction: np.ndarray | None, shape: tuple[int, ...]
) -> tuple[tuple[int, int, int], str]:
    """Voxel (z, y, x) the views cut through, and which rule chose it.

    Centre of mass of the reference WT (labels > 0); of the prediction's when the reference is
    absent or empty; the volume's centre when both are empty.
    """
    for mask, name in ((reference, "reference WT"), (prediction, "predicted WT")):
        wt = None if mask is None else np.asarray(mask) > 0
        if wt is not None and wt.any():
            # from the three projections: as exact as argwhere().mean() and 5x faster
            n = float(np.count_nonzero(wt))
            com = np.array(
                [
                    float(np.dot(np.arange(wt.shape[axis]), wt.sum(axis=others))) / n
                    for axis, others in ((0, (1, 2)), (1, (0, 2)), (2, (0, 1)))
                ]
            )
            centre = tuple(int(c) for c in np.floor(com + 0.5))  # halves round up
            return centre, f"centre of mass of the {name}"  # type: ignore[return-value]
    return tuple(int(s) // 2 for s in shape), "centre of the volume (both masks empty)"  # type: ignore[return-value]


def grey_window(image: np.ndarray) -> tuple[float, float]:
    """Grey window (low, high) of a volume: 0.5th to 99.5th percentile of its non-zero voxels.

    Estimated on every second voxel along each axis (an eighth of the volume), which moves the
    percentiles by far less than one of the 64 grey levels and is eight times faster.
    """
    sample = np.asarray(image)[::2, ::2, ::2].astype(np.float64).ravel()
    sample = sample[np.isfinite(sample)]
    inside = sample[sample != 0]
    if inside.size:
        sample = inside
    if sample.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.5]))
    if hi <= lo:
        lo, hi = float(sample.min()), float(sample.max())
    return lo, (hi if hi > lo else lo + 1.0)


def grey_levels(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """``image`` as integer grey levels 0..GREY_LEVELS-1 over ``window`` (NaN shows black)."""
    lo, hi = window
    arr = np.nan_to_num(np.asarray(image, dtype=np.float64), nan=lo, posinf=hi, neginf=lo)
    levels = np.clip((arr - lo) * ((GREY_LEVELS - 1) / (hi - lo)), 0, GREY_LEVELS - 1)
    return np.rint(levels).astype(np.uint8)


def _palette() -> list[int]:
    """256 RGB entries: slot s (0 grey, 1 NCR, 2 ED, 3 ET) x grey level g at index 64 s + g."""
    grey = np.linspace(0.0, 1.0, GREY_LEVELS)[:, None].repeat(3, axis=1)
    slots = [grey] + [
        (1 - OVERLAY_ALPHA) * grey + OVERLAY_ALPHA * np.asarray(rgb)
        for _, rgb, _ in LABEL_COLOURS.values()
    ]
    return [int(round(v * 255)) for v in np.concatenate(slots).ravel()]


_PALETTE = _palette()
_SLOT = np.zeros(256, np.uint8)
for _slot, _label in enumerate(LABEL_COLOURS, 1):
    _SLOT[_label] = _slot


def _plane(volume: np.ndarray, plane: str, centre: tuple[int, int, int]) -> np.ndarray:
    """2-D cut of a (z, y, x) volume; coronal/sagittal flipped so that z increases upwards."""
    z, y, x = centre
    if plane == "axial":
        return volume[z]
    if plane == "coronal":
        return volume[:, y, :][::-1]
    return volume[:, :, x][::-1]


def _plane_spacing(spacing: tuple[float, float, float], plane: str) -> tuple[float, float]:
    """(row, column) spacing in mm of a cut; ``spacing`` is SimpleITK (x, y, z)."""
    sx, sy, sz = (float(s) for s in spacing)
    return {"axial": (sy, sx), "coronal": (sz, sx), "sagittal": (sz, sy)}[plane]


def _display_indices(shape: tuple[int, int], row_col_mm: tuple[float, float]) -> list[np.ndarray]:
    """Nearest-neighbour row/column indices that draw voxels at their physical aspect."""
    mm = [n * s for n, s in zip(shape, row_col_mm, strict=True)]
    pixel = min(row_col_mm)
    out = [max(1, round(m / pixel)) for m in mm]
    factor = max(1, math.ceil(MIN_DISPLAY_PX / max(out)))
    pixel /= factor
    return [
        np.minimum((np.arange(max(1, round(m / pixel))) + 0.5) * pixel / s, n - 1).astype(int)
        for m, s, n in zip(mm, row_col_mm, shape, strict=True)
    ]


def overlay_png(
    image: np.ndarray,
    labels: np.ndarray | None,
    plane: str,
    centre: tuple[int, int, int],
    spacing: tuple[float, float, float],
    window: tuple[float, float] | None = None,
) -> str:
    """One overlay as a ``data:image/png;base64,...`` URI (an 8-bit palette PNG).

    Parameters
    ----------
    image
        The background volume (z, y, x).
    labels
        Canonical label mask (z, y, x), or None for the background alone.
    plane
        ``axial``, ``coronal`` or ``sagittal``.
    centre
        Voxel (z, y, x) the cut goes through.
    spacing
        SimpleITK (x, y, z) spacing in mm.
    window
        Grey window (low, high); default :func:`grey_window` of ``image``.
    """
    from PIL import Image

    index = grey_levels(_plane(image, plane, centre), window or grey_window(image))
    if labels is not None:
        slot = _SLOT[np.clip(_plane(labels, plane, centre), 0, 255).astype(np.uint8)]
        index = index + GREY_LEVELS * slot
    rows, cols = _display_indices(index.shape, _plane_spacing(spacing, plane))
    image = Image.fromarray(np.ascontiguousarray(index[np.ix_(rows, cols)]), mode="P")
    image.putpalette(_PALETTE)
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _volumes_ml(labels: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Volume of WT, TC and ET in mL (one pass over the mask)."""
    voxel_ml = float(np.prod([float(s) for s in spacing])) / 1000.0
    counts = {v: np.count_nonzero(labels == v) for v in LABEL_COLOURS}
    return {r: sum(counts[v] for v in REGION_LABELS[r]) * voxel_ml for r in EVAL_REGIONS}


@dataclass
class CaseEntry:
    """What the report shows of one case."""

    case_id: str
    status: str = "ok"
    error: str = ""
    scores: dict[str, dict[str, float]] | None = None
    overlays: dict[str, dict[str, str]] = field(default_factory=dict)  # row -> plane -> uri
    has_reference: bool = False
    centre: tuple[int, int, int] | None = None
    centre_rule: str = ""
    background: str = ""
    pred_ml: dict[str, float] | None = None
    ref_ml: dict[str, float] | None = None

    @property
    def mean_dice(self) -> float:
        """Mean Dice over WT, TC and ET (NaN when not scored)."""
        if not self.scores:
            return math.nan
        return float(np.mean([self.scores[r]["dice"] for r in EVAL_REGIONS]))

    def sort_key(self) -> tuple[int, float, float, str]:
        """Failed first, then WT Dice ascending, mean Dice, case id; unscored cases last."""
        if self.status == "failed":
            return (0, 0.0, 0.0, self.case_id)
        if not self.scores:
            return (2, 0.0, 0.0, self.case_id)
        return (1, self.scores["WT"]["dice"], self.mean_dice, self.case_id)


def _normalise_scores(
    scores: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] | Any | None,
) -> dict[str, Mapping[str, Any]]:
    """Per-case records by case id, from a list of records, a dict or an EvaluationResult."""
    if scores is None:
        return {}
    if hasattr(scores, "cases") and not isinstance(scores, Mapping):
        scores = scores.cases
    if isinstance(scores, Mapping):
        return {str(k): v for k, v in scores.items()}
    return {str(rec["case_id"]): rec for rec in scores}


class SegmentationReport:
    """Collects cases one by one (keeping only their small PNGs) and writes the page.

    :func:`write_segmentation_report` reads the cases itself; code that already holds the case
    and its prediction in memory (``evaluate_masks``) adds them here to avoid reading them twice.

    Examples
    --------
    >>> report = SegmentationReport(pred_dir="pred")  # doctest: +SKIP
    >>> report.add_case(case.case_id, case=case, prediction=labels)  # doctest: +SKIP
    >>> report.write("pred/report.html")  # doctest: +SKIP
    """

    def __init__(self, pred_dir: str | Path | None = None, source: str = "") -> None:
        self.pred_dir = None if pred_dir is None else Path(pred_dir)
        self.source = source
        self.entries: list[CaseEntry] = []

    def add_case(
        self,
        case_id: str,
        *,
        case: Case | None = None,
        prediction: np.ndarray | None = None,
        scores: Mapping[str, Any] | None = None,
        error: str = "",
    ) -> CaseEntry:
        """Add one case: draw its overlays and take (or compute) its scores.

        Parameters
        ----------
        case_id
            The case's id.
        case
            The loaded case (images and, when known, ``labels``), or None when it could not be
            read.
        prediction
            The predicted canonical label mask on the case's grid, or None when it could not be
            read.
        scores
            The case's record as :func:`~radsurv.segmentation.evaluate.evaluate_masks` makes it
            (``status``, ``error``, ``WT``/``TC``/``ET`` dicts). A failed record marks the case
            failed with its error; without region dicts the scores are computed here when the
            case has a reference.
        error
            Why the case or its mask could not be read (the case is then failed).
        """
        entry = CaseEntry(case_id)
        rec = dict(scores or {})
        if error or rec.get("status") == "failed":
            entry.status = "failed"
            entry.error = error or str(rec.get("error", ""))
        if case is None or prediction is None:
            entry.status = "failed"
            entry.error = entry.error or "the case or its predicted mask could not be read"
            self.entries.append(entry)
            return entry
        try:
            self._draw(entry, case, prediction, rec)
        except CASE_ERRORS as exc:
            entry.status, entry.error = "failed", _error_text(exc)
            logger.error("report: case %s: %s", case_id, exc)
        self.entries.append(entry)
        return entry

    def _draw(
        self, entry: CaseEntry, case: Case, prediction: np.ndarray, rec: Mapping[str, Any]
    ) -> None:
        if prediction.shape != tuple(case.shape):
            raise RadsurvError(
                f"case {case.case_id}: predicted mask has shape {prediction.shape}, the images "
                f"have {tuple(case.shape)}"
            )
        reference = case.labels
        entry.has_reference = reference is not None
        entry.background = background_modality(case)
        entry.centre, entry.centre_rule = tumour_centre(reference, prediction, case.shape)
        image = case.images[entry.background]
        window = grey_window(image)
        rows = {"prediction": prediction}
        if reference is not None:
            rows["reference"] = reference
        entry.overlays = {
            row: {
                p: overlay_png(image, mask, p, entry.centre, case.spacing, window) for p in PLANES
            }
            for row, mask in rows.items()
        }
        entry.pred_ml = _volumes_ml(prediction, case.spacing)
        if reference is not None:
            entry.ref_ml = _volumes_ml(reference, case.spacing)
            if entry.status != "failed":
                if all(isinstance(rec.get(r), Mapping) for r in EVAL_REGIONS):
                    entry.scores = {r: dict(rec[r]) for r in EVAL_REGIONS}
                else:
                    entry.scores = case_scores(prediction, reference, case.spacing)

    def write(self, out: str | Path) -> Path:
        """Render the page to ``out`` and return its path."""
        return render_report("segmentation.html.j2", self.context(), out)

    def context(self) -> dict[str, Any]:
        """The template variables (useful to test what the page shows)."""
        entries = sorted(self.entries, key=CaseEntry.sort_key)
        with_ref = any(e.has_reference for e in entries)
        scored = [e for e in entries if e.scores]
        failed = [e for e in entries if e.status == "failed"]
        if not with_ref:
            entries = [e for e in entries if e.status == "failed"] + [
                e for e in self.entries if e.status != "failed"
            ]
        n = len(entries)
        subtitle = f"{n} case(s): {n - len(failed)} drawn, {len(failed)} failed"
        if with_ref:
            subtitle += f", {len(scored)} scored"
        return {
            "title": "radsurv segmentation report",
            "subtitle": subtitle,
            "warnings": [
                e.error if e.case_id in e.error else f"case {e.case_id}: {e.error}" for e in failed
            ],
            "with_reference": with_ref,
            "legend": [
                {"label": value, "name": name, "hex": hexa}
                for value, (name, _, hexa) in LABEL_COLOURS.items()
            ],
            "regions": list(EVAL_REGIONS),
            "planes": list(PLANES),
            "mean": _mean_rows(scored) if scored else [],
            "distribution": _distributions(scored) if scored else "",
            "rows": [_table_row(i, e) for i, e in enumerate(entries)],
            "cases": [_case_view(i, e) for i, e in enumerate(entries)],
            "hd95_empty": format_number(HD95_EMPTY_MM),
            "settings": {
                "predicted masks": str(self.pred_dir) if self.pred_dir else "",
                "cases from": self.source,
                "background": "FLAIR when present, else the first modality; grey window "
                "0.5-99.5th percentile of non-zero voxels",
                "colours": ", ".join(
                    f"{name} ({v}) {hexa}" for v, (name, _, hexa) in LABEL_COLOURS.items()
                )
                + f", blended at {OVERLAY_ALPHA:.0%}",
                "centre": "centre of mass of the reference WT, else of the predicted WT, else "
                "the centre of the volume",
                "order": "failed first, then WT Dice ascending (ties: mean Dice, case id)"
                if with_ref
                else "as in the source (no reference masks)",
            },
        }


def _fmt_dice(v: float) -> str:
    return format_number(v, decimals=3)


def _table_row(i: int, e: CaseEntry) -> dict[str, Any]:
    cells: list[str] = []
    if e.scores:
        cells = [_fmt_dice(e.scores[r]["dice"]) for r in EVAL_REGIONS]
        cells.append(_fmt_dice(e.mean_dice))
        cells += [format_number(e.scores[r]["hd95"]) for r in EVAL_REGIONS]
    return {
        "anchor": f"case-{i}",
        "case_id": e.case_id,
        "status": e.status,
        "error": e.error,
        "cells": cells,
        "pred_ml": [format_number(e.pred_ml[r]) for r in EVAL_REGIONS] if e.pred_ml else [],
        "ref_ml": [format_number(e.ref_ml[r]) for r in EVAL_REGIONS] if e.ref_ml else [],
    }


def _case_view(i: int, e: CaseEntry) -> dict[str, Any]:
    return {
        "anchor": f"case-{i}",
        "case_id": e.case_id,
        "status": e.status,
        "error": e.error,
        "overlays": e.overlays,
        "has_reference": e.has_reference,
        "centre": e.centre,
        "centre_rule": e.centre_rule,
        "background": e.background,
        "summary": (
            ", ".join(f"{r} Dice {_fmt_dice(e.scores[r]['dice'])}" for r in EVAL_REGIONS)
            if e.scores
            else ""
        ),
    }


def _mean_rows(scored: list[CaseEntry]) -> list[dict[str, str]]:
    rows = []
    for r in EVAL_REGIONS:
        dice = np.array([e.scores[r]["dice"] for e in scored if e.scores])
        hd = np.array([e.scores[r]["hd95"] for e in scored if e.scores])
        rows.append(
            {
                "region": r,
                "dice_mean": _fmt_dice(float(dice.mean())),
                "dice_median": _fmt_dice(float(np.median(dice))),
                "dice_min": _fmt_dice(float(dice.min())),
                "hd95_mean": format_number(float(hd.mean())),
                "hd95_median": format_number(float(np.median(hd))),
                "hd95_max": format_number(float(hd.max())),
            }
        )
    return rows


def _distributions(scored: list[CaseEntry]) -> str:
    """Box + strip plots of Dice and of HD95 (one panel each, one box per region)."""
    fig, ax = new_figure((9.0, 3.2))
    ax.remove()
    jitter = np.random.default_rng(0)
    for axis, (metric, label) in zip(
        fig.subplots(1, 2), (("dice", "Dice"), ("hd95", "HD95 (mm)")), strict=True
    ):
        values = [np.array([e.scores[r][metric] for e in scored if e.scores]) for r in EVAL_REGIONS]
        axis.boxplot(values, widths=0.5, showfliers=False)
        for k, v in enumerate(values, 1):
            x = k + jitter.uniform(-0.12, 0.12, v.size)
            axis.scatter(x, v, s=14, alpha=0.7, color="#4a6fa5")
        axis.set_xticks(range(1, len(EVAL_REGIONS) + 1), list(EVAL_REGIONS))
        axis.set_ylabel(label)
        if metric == "dice":
            axis.set_ylim(-0.03, 1.03)
        axis.set_title(f"{label} over {len(scored)} case(s)")
    return figure_to_data_uri(fig)


def _error_text(exc: Exception) -> str:
    """A radsurv error's message (it names the case and the fix); others with their type."""
    return str(exc) if isinstance(exc, RadsurvError) else f"{type(exc).__name__}: {exc}"


def _read_prediction(pred_dir: Path, case: Case) -> np.ndarray:
    return read_mask_nifti(find_mask(pred_dir, case.case_id), case, label_convention="brats2020")


def write_segmentation_report(
    pred_dir: str | Path,
    source: Cases,
    out: str | Path | None = None,
    *,
    scores: Iterable[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]] | None = None,
    progress: ProgressCallback | None = None,
) -> Path:
    """Write the self-contained HTML report of a folder of predicted masks.

    Parameters
    ----------
    pred_dir
        Folder of predicted canonical label masks ``<case_id>.nii.gz`` (as
        ``radsurv segment predict`` writes them).
    source
        The cases (images, and reference masks when present): a manifest, its path, or a list
        of :class:`~radsurv.data.case.Case` / ``(case_id, loader)`` pairs.
    out
        The HTML file (default ``pred_dir/report.html``).
    scores
        Per-case records as :func:`~radsurv.segmentation.evaluate.evaluate_masks` makes them
        (a list of dicts with ``case_id``, ``status``, ``error`` and ``WT``/``TC``/``ET``
        ``{"dice", "hd95"}``; or an ``EvaluationResult``; or a dict by case id). Cases with a
        reference and no record are scored here. Records without region dicts (e.g. the
        status records of ``predict_masks``) only give a failed case its error.
    progress
        ``progress(done, total, "cases")`` after each case.

    Returns
    -------
    pathlib.Path
        The report's path.

    Notes
    -----
    A case whose mask or images cannot be read is shown as failed with its error; the other
    cases go on. Without any reference mask the page shows the predictions only, with their
    volumes and no Dice / HD95.
    """
    pred_dir = Path(pred_dir)
    records = _normalise_scores(scores)
    loaders = case_loaders(source)
    report = SegmentationReport(pred_dir, source=describe_source(source))
    for i, loader in enumerate(loaders, 1):
        rec = records.get(loader.case_id)
        case = prediction = None
        error = ""
        try:
            case = loader.load()
            prediction = _read_prediction(pred_dir, case)
        except CASE_ERRORS as exc:
            error = _error_text(exc)
            if rec is not None and rec.get("status") == "failed" and rec.get("error"):
                error = str(rec["error"])  # the step that made the mask knows better why
            logger.error("report: case %s: %s", loader.case_id, error)
        report.add_case(loader.case_id, case=case, prediction=prediction, scores=rec, error=error)
        if progress is not None:
            progress(i, len(loaders), "cases")
    return report.write(pred_dir / REPORT_FILE if out is None else out)


def describe_source(source: Cases) -> str:
    """A short description of a case source for the report: its path or its type."""
    if isinstance(source, str | Path):
        return str(source)
    path = getattr(source, "path", None)
    if path:
        return str(path)
    if isinstance(source, list | tuple):
        return f"{len(source)} case(s) passed in memory"
    return type(source).__name__
