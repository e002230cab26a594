"""Score a folder of predicted masks against the reference masks of a manifest (or case list).

Writes a JSON ``{"mean": {"WT": {"dice", "hd95"}, "TC": ..., "ET": ...}, "cases": [...]}`` and
a CSV with one row per case, and the self-contained ``report.html`` of
:mod:`radsurv.segmentation.report` (overlays, scores worst first, distributions). A case whose
mask is missing, unreadable or on another grid is recorded with its error and left out of the
means; the others are scored.
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radsurv.data.nifti import read_mask_nifti
from radsurv.errors import RadsurvError, SegmentationError
from radsurv.segmentation.metrics import EVAL_REGIONS, case_scores, mean_scores
from radsurv.segmentation.sources import Cases, case_loaders

if TYPE_CHECKING:
    from radsurv.segmentation.report import ProgressCallback

logger = logging.getLogger(__name__)


class MissingMaskError(SegmentationError):
    """A case of the manifest has no predicted mask in the masks folder."""


@dataclass
class EvaluationResult:
    """Per-case and mean Dice / HD95 (mm) for WT, TC, ET.

    Attributes
    ----------
    mean
        ``{"WT": {"dice": .., "hd95": ..}, "TC": {...}, "ET": {...}}`` over scored cases.
    cases
        One dict per case: ``case_id``, ``status`` (``ok``/``failed``), ``error`` and, when
        scored, ``WT``/``TC``/``ET`` dicts.
    report
        The HTML report written, or None.
    """

    mean: dict[str, dict[str, float]]
    cases: list[dict[str, Any]]
    report: Path | None = None

    @property
    def failed(self) -> list[str]:
        """Ids of cases that could not be scored."""
        return [c["case_id"] for c in self.cases if c["status"] != "ok"]

    def to_dict(self) -> dict[str, Any]:
        """The JSON document."""
        return {"mean": self.mean, "cases": self.cases}

    def rows(self) -> list[dict[str, Any]]:
        """Flat rows: case_id, status, error, WT_dice, WT_hd95, ..."""
        out = []
        for c in self.cases:
            row = {"case_id": c["case_id"], "status": c["status"], "error": c.get("error", "")}
            for r in EVAL_REGIONS:
                for m in ("dice", "hd95"):
                    row[f"{r}_{m}"] = c[r][m] if r in c else ""
            out.append(row)
        return out

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{r} Dice</th><th>{r} HD95</th>" for r in EVAL_REGIONS)
        mean = "".join(
            f"<td>{self.mean[r]['dice']:.3f}</td><td>{self.mean[r]['hd95']:.2f}</td>"
            for r in EVAL_REGIONS
        )
        return (
            f"<table><tr><th></th>{head}</tr><tr><th>mean ({len(self.cases) - len(self.failed)}"
            f" cases)</th>{mean}</tr></table>"
            + (f"<p>failed: {', '.join(self.failed)}</p>" if self.failed else "")
        )


def find_mask(pred_dir: str | Path, case_id: str) -> Path:
    """The predicted mask ``pred_dir/<case_id>.nii.gz`` (or ``.nii``) of a case.

    Raises
    ------
    MissingMaskError
        Neither file exists; the message names the case and the expected file.
    """
    pred_dir = Path(pred_dir)
    for suffix in (".nii.gz", ".nii"):
        path = pred_dir / f"{case_id}{suffix}"
        if path.is_file():
            return path
    raise MissingMaskError(
        f"case {case_id}: no mask {pred_dir / (case_id + '.nii.gz')} in the masks folder; "
        "run `radsurv segment predict` for it or remove it from the manifest"
    )


def evaluate_masks(
    pred_dir: str | Path,
    source: Cases,
    json_path: str | Path | None = None,
    csv_path: str | Path | None = None,
    *,
    report: str | Path | bool = True,
    progress: ProgressCallback | None = None,
) -> EvaluationResult:
    """Dice and HD95 of ``pred_dir/<case_id>.nii.gz`` against each case's reference labels.

    Parameters
    ----------
    pred_dir
        Folder of predicted canonical label masks.
    source
        Manifest, its path, or a list of cases with reference labels.
    json_path, csv_path
        Where to write the JSON summary and the per-case CSV (optional).
    report
        Where to write the HTML report (overlays, scores worst first, distributions; see
        :func:`~radsurv.segmentation.report.write_segmentation_report`): ``True`` (default)
        for ``pred_dir/report.html``, a path, or ``False`` for none.
    progress
        ``progress(done, total, "cases")`` after each case.

    Empty regions follow BraTS: both empty -> Dice 1, HD95 0; one empty -> Dice 0,
    HD95 373.13 mm (see :mod:`radsurv.segmentation.metrics`).
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise SegmentationError(f"masks folder {pred_dir} does not exist")
    page = None
    if report is not False:
        from radsurv.segmentation.report import REPORT_FILE, SegmentationReport, describe_source

        page = SegmentationReport(pred_dir, source=describe_source(source))
    cases: list[dict[str, Any]] = []
    loaders = case_loaders(source)
    for i, loader in enumerate(loaders, 1):
        record: dict[str, Any] = {"case_id": loader.case_id, "status": "ok", "error": ""}
        case = pred = None
        try:
            mask_path = find_mask(pred_dir, loader.case_id)
            case = loader.load()
            pred = read_mask_nifti(mask_path, case, label_convention="brats2020")
            if case.labels is None:
                raise SegmentationError(
                    f"case {case.case_id}: the manifest gives no reference mask to score against"
                )
            record.update(case_scores(pred, case.labels, case.spacing))
        except RadsurvError as exc:
            record.update(status="failed", error=str(exc))
            logger.error("%s", exc)
        cases.append(record)
        if page is not None:
            page.add_case(loader.case_id, case=case, prediction=pred, scores=record)
        if progress is not None:
            progress(i, len(loaders), "cases")
    scored = [c for c in cases if c["status"] == "ok"]
    result = EvaluationResult(mean=mean_scores(scored), cases=cases)
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(result.to_dict(), indent=2))
    if csv_path:
        Path(csv_path).parent.mkdir(parents=True, exist_ok=True)
        rows = result.rows()
        with Path(csv_path).open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["case_id"])
            writer.writeheader()
            writer.writerows(rows)
    if page is not None:
        result.report = page.write(pred_dir / REPORT_FILE if report is True else Path(report))
    return result
