"""Feature robustness: features recomputed under perturbations and other segmentations, ICC(2,1).

For each case (after Zwanenburg et al. 2019, Sci Rep 9:614):

1. one *prepare* task reads the case and every mask set once, preprocesses the images on the
   whole image, and crops images and masks to the tumour's bounding box (the union over every
   mask set) widened by the filters' padding *and* by the largest displacement a perturbation
   can give a mask (:meth:`~radsurv.features.perturb.Perturbation.margin`);
2. one *variant* task per row of the long-form table: ``original`` (the reference segmentation,
   unperturbed), each perturbation of it (:mod:`radsurv.features.perturb`), and ``mask:NAME``
   for every other mask set; it perturbs the cropped arrays and computes shape and every
   modality's features with :mod:`radsurv.features.extract`.

So P rows of a case cost P feature computations, one read and one preprocessing. The ICC of a
feature (:func:`radsurv.features.icc.icc_table`) treats each row name as a rater and each case
as a subject, over exactly the rows written to ``<name>_features.csv``.

Tasks run in this process, in a process pool or on a Dask cluster through the backends of
:mod:`radsurv.features.runner`; a failing case is recorded in the status table and the others
go on. Progress is reported through a callback; the library prints nothing.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsurv.atomic import atomic_write_bytes
from radsurv.data.labels import MODALITIES, REGIONS, mask_extent
from radsurv.errors import ConfigError
from radsurv.features.extract import (
    ExtractionConfig,
    MaskError,
    PreparedCase,
    feature_columns,
    merge_notes,
    modality_features,
    prepare_case,
    row_from_values,
    shape_features,
)
from radsurv.features.icc import LONG_KEYS, icc_table
from radsurv.features.params import DEFAULT_PRESET
from radsurv.features.perturb import (
    Perturbation,
    parse_perturbations,
    perturb_image,
    perturb_mask,
    perturbation_rng,
)
from radsurv.features.preprocessing import DEFAULT_INTENSITY
from radsurv.features.regions import region_masks
from radsurv.features.runner import (
    STATUS_COLUMNS,
    CaseRef,
    _error_text,
    _timed,
    _versions,
    case_refs,
    load_ref,
    make_backend,
    read_mask_file,
    sidecar_paths,
    write_table,
)

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, str], None]
ROBUSTNESS_COLUMNS = (
    "feature",
    "icc",
    "icc_low",
    "icc_high",
    "n_cases",
    "n_perturbations",
    "feature_class",
    "image_type",
    "modality",
    "region",
)
GROUND_TRUTH = "ground-truth"
#: a label of each region, used to mark crop corners (any voxel of the region's labels)
_REGION_LABEL = {"NCR": 1, "ED": 2, "ET": 4, "TC": 1, "WT": 2}


# ------------------------------------------------------------------------------- mask sets


def parse_mask_sets(masks: Any) -> dict[str, Any]:
    """Named mask sets from ``--masks`` values: ``DIR``, ``NAME=DIR`` or a dict name -> source.

    A source is a folder with ``<case_id>.nii.gz``, a path template containing ``{case_id}``
    (e.g. ``data/{case_id}/segmentations/isen-20.nii.gz``), or a dict case_id -> file or label
    array. One unnamed folder is called ``predicted``; several take their folder names.
    """
    if masks is None:
        return {}
    if isinstance(masks, dict):
        return dict(masks)
    if isinstance(masks, str | Path):
        masks = [masks]
    items = [str(m) for m in masks]
    out: dict[str, Any] = {}
    for item in items:
        name, sep, source = item.partition("=")
        if not sep:
            name, source = ("predicted" if len(items) == 1 else Path(item).name), item
        name = name.strip()
        if not name or name in out or name in (GROUND_TRUTH, "original"):
            raise ConfigError(f"--masks {item!r}: give each mask set its own name (NAME=DIR)")
        if "{case_id}" not in source and not Path(source).is_dir():
            raise ConfigError(
                f"--masks {item!r}: {source} is not a folder (give DIR with <case_id>.nii.gz, "
                "or a path template with {case_id})"
            )
        out[name] = source
    return out


def _mask_source_for(source: Any, case_id: str) -> Any:
    if isinstance(source, dict):
        if case_id not in source:
            raise MaskError(f"case {case_id}: no mask in the given mask set")
        return source[case_id]
    text = str(source)
    if "{case_id}" in text:
        return text.format(case_id=case_id)
    return str(Path(text) / f"{case_id}.nii.gz")


# ------------------------------------------------------------------------------ worker tasks


@dataclass
class RobustCase:
    """A prepared case plus the other mask sets, cropped to the same box."""

    prep: PreparedCase
    masks: dict[str, np.ndarray]
    reference: str


@dataclass
class _VariantCase(PreparedCase):
    """A prepared case whose region masks are given (perturbed), not derived from labels."""

    region_arrays: dict[str, np.ndarray] = field(default_factory=dict)

    def region_sitk(self, region: str) -> Any:
        return self.sitk(self.region_arrays[region].astype(np.uint8))


def _variant_case(
    prep: PreparedCase, images: dict[str, np.ndarray], masks: dict[str, np.ndarray]
) -> _VariantCase:
    base = {f.name: getattr(prep, f.name) for f in fields(PreparedCase)}
    base.update(images=images, region_voxels={r: int(m.sum()) for r, m in masks.items()})
    return _VariantCase(**base, region_arrays=masks)


def _union(labels: Sequence[np.ndarray], regions: Sequence[str]) -> np.ndarray:
    union = np.zeros(labels[0].shape, dtype=bool)
    for lab in labels:
        for m in region_masks(lab, regions).values():
            union |= m
    return union


def prepare_robust_case(
    case: Any,
    config: ExtractionConfig,
    ground_truth: np.ndarray | None,
    mask_sets: dict[str, np.ndarray],
    reference: str,
    perturbations: Sequence[Perturbation],
) -> RobustCase:
    """Prepare one case once for all its variants (see the module docstring).

    The crop covers every mask set and leaves room for the largest perturbation.
    """
    cid = case.case_id
    if reference == GROUND_TRUTH:
        ref = ground_truth if ground_truth is not None else case.labels
        if ref is None:
            raise MaskError(
                f"case {cid}: has no ground-truth mask to perturb; pass --reference NAME to "
                "use one of the --masks sets as the reference"
            )
    else:
        ref = mask_sets[reference]
    ref = np.asarray(ref)
    others = {n: np.asarray(m) for n, m in mask_sets.items() if n != reference}
    for name, m in others.items():
        if m.shape != ref.shape:
            raise MaskError(f"case {cid}: mask set {name} has shape {m.shape}, not {ref.shape}")
    extent = mask_extent(_union([ref, *others.values()], config.regions))
    marked = ref
    if extent is not None:
        low, high = extent
        spacing_zyx = np.asarray(case.spacing, dtype=float)[::-1]
        half_mm = (high - low) / 2 * spacing_zyx
        margin = max([p.margin(half_mm, spacing_zyx) for p in perturbations] + [1])
        shape = np.asarray(ref.shape)
        lo = np.clip(low - margin, 0, shape - 1)
        hi = np.clip(high - 1 + margin, 0, shape - 1)
        marked = ref.copy()
        label = _REGION_LABEL[config.regions[0]]
        for corner in (tuple(lo), tuple(hi)):
            if marked[corner] == 0:
                marked[corner] = label  # widens prepare_case's crop box to the corner
    prep = prepare_case(case, config, marked)
    box = tuple(slice(a, b) for a, b in prep.crop) if prep.crop else (slice(None),) * 3
    prep.labels = np.ascontiguousarray(ref[box]).astype(np.uint8, copy=False)
    prep.region_voxels = {
        r: int(np.count_nonzero(m)) for r, m in region_masks(ref, config.regions).items()
    }
    empty = [f"{r}: empty region (0 voxels)" for r, n in prep.region_voxels.items() if n == 0]
    prep.notes = [n for n in prep.notes if not n.endswith("empty region (0 voxels)")] + empty
    cropped = {
        n: np.ascontiguousarray(m[box]).astype(np.uint8, copy=False) for n, m in others.items()
    }
    return RobustCase(prep, cropped, reference)


def task_prepare_robust(
    ref: CaseRef,
    config: ExtractionConfig,
    mask_sets: dict[str, Any],
    reference: str,
    perturbations: Sequence[Perturbation],
) -> tuple[RobustCase, float]:
    """Worker task: read a case and its mask sets once, prepare and crop them."""

    def run() -> RobustCase:
        case, ground_truth = load_ref(ref)
        sets = {
            name: read_mask_file(case, _mask_source_for(source, ref.case_id))
            for name, source in mask_sets.items()
        }
        return prepare_robust_case(case, config, ground_truth, sets, reference, perturbations)

    return _timed(run)


def variant_features(
    rc: RobustCase,
    config: ExtractionConfig,
    mask_set: str | None,
    perturbation: Perturbation | None,
    index: int,
    seed: int,
) -> tuple[dict[str, float], list[str]]:
    """All features of one variant: a mask set (None: the reference) under a perturbation."""
    prep = rc.prep
    labels = prep.labels if mask_set is None else rc.masks[mask_set]
    masks = region_masks(labels, config.regions)
    images = {m: prep.images[m] for m in config.modalities}
    if perturbation is not None:
        rng = perturbation_rng(seed, prep.case_id, index)
        spacing_zyx = tuple(reversed(prep.spacing))
        masks = {r: perturb_mask(m, perturbation, spacing_zyx, rng) for r, m in masks.items()}
        images = {
            m: perturb_image(a, perturbation, spacing_zyx, rng).astype(a.dtype, copy=False)
            for m, a in images.items()
        }
    vc = _variant_case(prep, images, masks)
    values, notes = shape_features(vc, config)
    all_notes = [notes]
    for modality in config.modalities:
        feats, mnotes = modality_features(vc, config, modality)
        values.update(feats)
        all_notes.append(mnotes)
    return values, merge_notes(*all_notes)


# ---------------------------------------------------------------------------------- runner


@dataclass(frozen=True)
class Variant:
    """One row name of the long table and how it is made."""

    name: str
    mask_set: str | None
    perturbation: Perturbation | None
    index: int


def plan_variants(
    perturbations: Sequence[Perturbation], mask_sets: Sequence[str], reference: str
) -> list[Variant]:
    """``original``, then each perturbation of the reference, then ``mask:NAME`` per other set."""
    out = [Variant("original", None, None, 0)]
    out += [Variant(p.label, None, p, i) for i, p in enumerate(perturbations, start=1)]
    out += [Variant(f"mask:{n}", n, None, 0) for n in mask_sets if n != reference]
    return out


@dataclass
class _CaseJob:
    ref: CaseRef
    rows: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[list[str]] = field(default_factory=list)
    seconds: float = 0.0
    remaining: int = 0


def _run(
    refs: Sequence[CaseRef],
    config: ExtractionConfig,
    columns: Sequence[str],
    variants: Sequence[Variant],
    mask_sets: dict[str, Any],
    reference: str,
    perturbations: Sequence[Perturbation],
    seed: int,
    backend: Any,
    progress: ProgressCallback | None,
) -> dict[str, dict[str, Any]]:
    """Prepare each case once, then one task per variant; case_id -> record (rows by variant).

    At most ``workers + 1`` cases are in flight, which bounds the memory of the payloads.
    """
    records: dict[str, dict[str, Any]] = {}
    todo = deque(refs)
    jobs: dict[str, _CaseJob] = {}
    futures: dict[Any, tuple[str, str]] = {}
    max_active = backend.workers + 1

    def finish(cid: str, error: BaseException | None = None) -> None:
        job = jobs.pop(cid)
        record: dict[str, Any] = {
            "case_id": cid,
            "status": "ok" if error is None else "failed",
            "seconds": round(job.seconds, 3),
            "error": "" if error is None else _error_text(error),
            "notes": merge_notes(*job.notes),
        }
        if error is None:
            record["rows"] = {
                v.name: row_from_values(cid, job.rows[v.name], columns) for v in variants
            }
        else:
            logger.error("case %s failed: %s", cid, record["error"])
        records[cid] = record
        if progress is not None:
            progress(len(records), len(refs), f"{cid} {record['status']}")

    try:
        while todo or futures:
            while todo and len(jobs) < max_active:
                ref = todo.popleft()
                jobs[ref.case_id] = _CaseJob(ref)
                f = backend.submit(
                    task_prepare_robust, ref, config, mask_sets, reference, perturbations
                )
                futures[f] = (ref.case_id, "")
            for future in backend.wait_any(list(futures)):
                cid, name = futures.pop(future)
                job = jobs.get(cid)
                if job is None:
                    continue
                try:
                    result, seconds = future.result()
                except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                    finish(cid, exc)
                    continue
                job.seconds += seconds
                if not name:
                    rc: RobustCase = result
                    job.notes.append(rc.prep.notes)
                    shared = backend.share(rc)
                    for v in variants:
                        f = backend.submit(
                            _timed, variant_features, shared, config, v.mask_set,
                            v.perturbation, v.index, seed,
                        )  # fmt: skip
                        futures[f] = (cid, v.name)
                    job.remaining = len(variants)
                else:
                    values, notes = result
                    job.rows[name] = values
                    job.notes.append(
                        [f"{name}: {n}" for n in notes] if name != "original" else notes
                    )
                    job.remaining -= 1
                    if job.remaining == 0:
                        finish(cid)
    finally:
        for future in futures:
            future.cancel()
    return records


# ---------------------------------------------------------------------------- annotations


def describe_feature(column: str, modalities: Sequence[str] = MODALITIES) -> dict[str, str]:
    """``feature_class, image_type, modality, region`` of a radsurv feature column.

    ``t1gd_ET_original_glcm_Contrast`` -> glcm, original, t1gd, ET;
    ``WT_original_shape_MeshVolume`` -> shape, original, ``none`` (no modality), WT.
    """
    parts = column.split("_")
    modality = "none"
    if parts[0] in modalities or (parts[0] not in REGIONS and len(parts) > 4):
        modality, parts = parts[0], parts[1:]
    region = parts[0]
    key = "_".join(parts[1:]).split("_", 2)
    image_type = key[0] if key else ""
    feature_class = key[1] if len(key) > 1 else ""
    return {
        "feature_class": feature_class,
        "image_type": image_type,
        "modality": modality,
        "region": region,
    }


def segmentation_spread(long: pd.DataFrame, rows: Sequence[str]) -> pd.DataFrame:
    """Per feature and case, the spread of a feature across segmentations (``rows``).

    Returns a long table ``feature, case_id, n_segmentations, mean, sd, cv`` where ``sd`` is the
    sample SD (ddof 1) over the segmentations with a value and ``cv = sd / |mean|``.
    """
    sub = long[long["perturbation"].isin(rows)]
    features = [c for c in long.columns if c not in LONG_KEYS]
    stacked = sub.set_index(list(LONG_KEYS))[features].stack(future_stack=True)
    stacked.index = stacked.index.set_names(["case_id", "perturbation", "feature"])
    grouped = stacked.groupby(level=["feature", "case_id"], sort=False)
    out = pd.DataFrame(
        {
            "n_segmentations": grouped.count(),
            "mean": grouped.mean(),
            "sd": grouped.std(ddof=1),
        }
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        out["cv"] = out["sd"] / out["mean"].abs()
    out.loc[~np.isfinite(out["cv"]), "cv"] = np.nan
    return out.reset_index()


# -------------------------------------------------------------------------------- results


@dataclass
class RobustnessResult:
    """What :func:`compute_robustness` returns.

    Attributes
    ----------
    robustness
        One row per feature: ``feature, icc, icc_low, icc_high, n_cases, n_perturbations,
        feature_class, image_type, modality, region``.
    features
        Long form: ``case_id, perturbation``, then the feature columns (one row per case and
        variant); the ICC is computed over exactly these rows.
    spread
        With mask sets: ``feature, case_id, n_segmentations, mean, sd, cv`` across the
        segmentations (``original`` and every ``mask:NAME``); else empty.
    status
        One row per case (as extract-features' status table).
    provenance
        Settings, perturbations, mask sets, versions, timings, output paths.
    """

    robustness: pd.DataFrame
    features: pd.DataFrame
    spread: pd.DataFrame
    status: pd.DataFrame
    provenance: dict[str, Any]

    @property
    def failed(self) -> list[str]:
        """Ids of the cases that failed."""
        return self.status.loc[self.status["status"] == "failed", "case_id"].tolist()

    def fraction_at_least(self, threshold: float) -> float:
        """Fraction of features with a defined ICC that reach ``threshold``."""
        icc = self.robustness["icc"].dropna()
        return float((icc >= threshold).mean()) if len(icc) else math.nan

    def _repr_html_(self) -> str:
        head = (
            f"<p><b>RobustnessResult</b>: {len(self.robustness)} features, "
            f"{self.provenance.get('n_ok')} case(s) ok, {len(self.failed)} failed; "
            f"ICC >= 0.75: {self.fraction_at_least(0.75):.0%}, "
            f">= 0.9: {self.fraction_at_least(0.9):.0%}</p>"
        )
        return head + self.robustness.head(20).to_html(index=False)


def output_paths(output: Path) -> dict[str, Path]:
    """Files written beside ``-o robustness.csv``."""
    output = Path(output)
    if not output.name.lower().endswith(".csv"):
        raise ConfigError(f"-o {output}: give a .csv file name, e.g. robustness.csv")
    stem = output.name[: -len(".csv")]
    status, provenance = sidecar_paths(output)
    return {
        "robustness": output,
        "features": output.with_name(f"{stem}_features.csv"),
        "segmentations": output.with_name(f"{stem}_segmentations.csv"),
        "report": output.with_name(f"{stem}.html"),
        "status": status,
        "provenance": provenance,
    }


def compute_robustness(
    cases: Any,
    *,
    perturbations: Sequence[str] | str | None = None,
    masks: Any = None,
    reference: str = GROUND_TRUTH,
    params: str | dict[str, Any] = DEFAULT_PRESET,
    intensity: str = DEFAULT_INTENSITY,
    regions: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    seed: int = 0,
    jobs: int | None = None,
    dask: Any = None,
    output: str | Path | None = None,
    progress: ProgressCallback | None = None,
) -> RobustnessResult:
    """Recompute every case's features under perturbations and mask sets; ICC(2,1) per feature.

    Parameters
    ----------
    cases
        A manifest path, a Manifest read from a file, a Case or Cases.
    perturbations
        Specs of :func:`radsurv.features.perturb.parse_perturbations` (default: erode, dilate,
        contour, translate, rotate:-5, rotate:5, noise); ``"none"`` for no perturbation.
    masks
        Other segmentations to compare: ``DIR``, ``["NAME=DIR", ...]`` or a dict NAME -> source
        (see :func:`parse_mask_sets`). Each becomes a row ``mask:NAME``.
    reference
        The segmentation that is perturbed and called ``original``: ``ground-truth`` (the
        case's mask) or the NAME of a mask set (for cases without an expert mask).
    params, intensity, regions, modalities
        As in :func:`radsurv.features.extract_features`.
    seed
        Seeds the random perturbations (contour, noise): same seed, same values.
    jobs, dask
        Worker processes (default all cores; 1 runs here) or a Dask scheduler address/Client.
    output
        ``robustness.csv`` path; writes it and, beside it, ``<name>_features.csv``,
        ``<name>_segmentations.csv`` (with masks), ``<name>.html``, ``<name>.status.csv`` and
        ``<name>.provenance.json``.
    progress
        Called as ``progress(done, total, message)`` after each case.

    Examples
    --------
    >>> res = compute_robustness("data_manifest.csv", perturbations=["erode", "noise"],
    ...                          output="robustness.csv", jobs=2)  # doctest: +SKIP
    >>> res.robustness.sort_values("icc").head()  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    paths = output_paths(Path(output)) if output is not None else None
    perts = parse_perturbations(perturbations)
    sets = parse_mask_sets(masks)
    if reference != GROUND_TRUTH and reference not in sets:
        raise ConfigError(
            f"--reference {reference!r}: not a mask set name (have {list(sets) or 'none'}); "
            f"use {GROUND_TRUTH} or one of the --masks names"
        )
    variants = plan_variants(perts, list(sets), reference)
    if len(variants) < 2:
        raise ConfigError(
            "nothing to compare: give --perturbations and/or --masks (an ICC needs 2 raters)"
        )
    refs, common = case_refs(cases, GROUND_TRUTH)
    config = ExtractionConfig.create(
        params, intensity, regions, modalities or common or MODALITIES, reference
    )
    columns = feature_columns(config)
    logger.info(
        "robustness of %d case(s) x %d variant(s) (%s), %d columns",
        len(refs),
        len(variants),
        ", ".join(v.name for v in variants),
        len(columns),
    )
    backend = make_backend(jobs, dask)
    try:
        records = _run(
            refs, config, columns, variants, sets, reference, perts, seed, backend, progress
        )
    finally:
        backend.close()

    long_rows, status_rows = [], []
    for ref in refs:
        rec = records[ref.case_id]
        if rec["status"] == "ok":
            for v in variants:
                row = dict(rec["rows"][v.name])
                row.pop("case_id")
                long_rows.append({"case_id": ref.case_id, "perturbation": v.name, **row})
        status_rows.append(
            {
                "case_id": ref.case_id,
                "status": rec["status"],
                "seconds": rec["seconds"],
                "error": rec["error"],
                "notes": "; ".join(rec["notes"]),
                "resumed": False,
            }
        )
    long = pd.DataFrame(long_rows, columns=[*LONG_KEYS, *columns])
    long[columns] = long[columns].astype(np.float64)
    status = pd.DataFrame(status_rows, columns=list(STATUS_COLUMNS))
    table = icc_table(long, list(columns)).reset_index()
    meta = pd.DataFrame([describe_feature(c, config.modalities) for c in table["feature"]])
    robustness = pd.concat([table, meta], axis=1)[list(ROBUSTNESS_COLUMNS)]
    seg_rows = ["original", *(v.name for v in variants if v.mask_set is not None)]
    spread = (
        segmentation_spread(long, seg_rows)
        if sets
        else pd.DataFrame(columns=["feature", "case_id", "n_segmentations", "mean", "sd", "cv"])
    )
    icc = robustness["icc"].dropna()
    provenance: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "settings": config.settings(),
        "settings_hash": config.settings_hash(),
        "icc_form": "ICC(2,1): two-way random effects, absolute agreement, single rater "
        "(Shrout & Fleiss 1979; McGraw & Wong 1996 ICC(A,1)), 95% CI by McGraw & Wong's F method",
        "perturbations": [v.name for v in variants],
        "reference": reference,
        "mask_sets": {n: str(s) if not isinstance(s, dict) else "dict" for n, s in sets.items()},
        "seed": seed,
        "n_cases": len(refs),
        "n_ok": int((status["status"] == "ok").sum()),
        "n_failed": int((status["status"] == "failed").sum()),
        "n_features": len(columns),
        "n_features_icc_defined": int(len(icc)),
        "fraction_icc_ge_0.75": float((icc >= 0.75).mean()) if len(icc) else None,
        "fraction_icc_ge_0.9": float((icc >= 0.9).mean()) if len(icc) else None,
        "task_seconds": round(float(status["seconds"].sum()), 3),
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "backend": "dask" if dask is not None else f"processes={jobs or os.cpu_count()}",
    }
    result = RobustnessResult(robustness, long, spread, status, provenance)
    if paths is not None:
        write_table(robustness, paths["robustness"])
        write_table(long, paths["features"])
        write_table(status, paths["status"])
        if sets:
            write_table(spread, paths["segmentations"])
        from radsurv.evaluation.robustness_report import write_robustness_report

        write_robustness_report(result, paths["report"])
        provenance["outputs"] = {
            k: str(p) for k, p in paths.items() if k != "segmentations" or sets
        }
        atomic_write_bytes(
            paths["provenance"], json.dumps(provenance, indent=2, default=str).encode()
        )
    return result
