"""Convert a dataset between the Kaggle HDF5 slice layout and BraTS 2020 NIfTI folders.

``--to nifti`` writes ``DST/<case_id>/<case_id>_{flair,t1,t1ce,t2,seg}.nii.gz`` with the stored
values (no re-normalisation) and labels 1, 2, 4. ``--to kaggle`` writes
``DST/data/volume_{V}_slice_{S}.h5`` standardised per volume like the pack, plus
``DST/data/meta_data.csv`` and ``DST/case_ids.csv`` (volume -> original case id). The Kaggle
layout keeps no geometry: NIfTI -> Kaggle -> NIfTI comes back at 1 mm spacing, identity
direction and zero origin. A case that fails is recorded and the others are converted.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from radsurv.data.case import Case
from radsurv.data.hdf5 import DEFAULT_CHANNEL_ORDER, meta_data_rows, write_kaggle_volume
from radsurv.data.manifest import Manifest, build_manifest
from radsurv.errors import ConfigError, RadsurvError

logger = logging.getLogger(__name__)

TARGETS: tuple[str, ...] = ("nifti", "kaggle")
_VOLUME_ID = re.compile(r"^BraTS20_Training_(\d+)$")


@dataclass
class CaseResult:
    """Outcome of converting one case."""

    case_id: str
    ok: bool
    output: str = ""
    error: str = ""


@dataclass
class ConversionReport:
    """Per-case outcomes of :func:`convert_dataset`."""

    target: str
    dst: Path
    results: list[CaseResult] = field(default_factory=list)

    @property
    def failed(self) -> list[CaseResult]:
        """Cases that could not be converted."""
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        """True when every case was converted."""
        return not self.failed

    def to_frame(self) -> pd.DataFrame:
        """One row per case: case_id, ok, output, error."""
        return pd.DataFrame(
            [vars(r) for r in self.results], columns=list(CaseResult.__annotations__)
        )


def open_source(
    src: Path,
    *,
    fmt: str | None = None,
    modality_patterns: dict[str, str] | None = None,
    seg_pattern: str | None = None,
    label_convention: str | None = None,
) -> Manifest:
    """A :class:`Manifest` for any source: a manifest CSV, a Kaggle pack or a NIfTI dataset."""
    src = Path(src)
    if src.is_file() and src.suffix.lower() == ".csv":
        return Manifest.read(src)
    table = build_manifest(
        src,
        fmt=fmt,
        modality_patterns=modality_patterns,
        seg_pattern=seg_pattern,
        label_convention=label_convention,
        relative_to=src if src.is_dir() else src.parent,
        checksum=False,
        find_tables=False,
    )
    return Manifest.from_table(table)


def assign_volumes(case_ids: Sequence[str]) -> dict[str, int]:
    """Kaggle volume number per case: N for ``BraTS20_Training_N``, else the next free number."""
    numbers: dict[str, int] = {}
    for case_id in case_ids:
        match = _VOLUME_ID.match(case_id)
        if match and int(match.group(1)) not in numbers.values():
            numbers[case_id] = int(match.group(1))
    free = (n for n in range(1, 10**7) if n not in set(numbers.values()))
    for case_id in case_ids:
        if case_id not in numbers:
            numbers[case_id] = next(free)
    return numbers


def _write_kaggle(case: Case, data_dir: Path, volume: int, channel_order: Sequence[str]) -> Path:
    missing = [m for m in channel_order if m not in case.images]
    if missing:
        logger.warning(
            "case %s has no %s: written as zero channel(s) in the Kaggle layout",
            case.case_id,
            ", ".join(missing),
        )
    spacing = tuple(float(s) for s in case.spacing)
    if not np.allclose(spacing, 1.0):
        logger.warning(
            "case %s: spacing %s (x, y, z) mm is not kept by the Kaggle layout (1 mm assumed)",
            case.case_id,
            spacing,
        )
    write_kaggle_volume(case, data_dir, volume, channel_order=channel_order)
    return data_dir


def convert_dataset(
    src: Path,
    dst: Path,
    to: str,
    *,
    fmt: str | None = None,
    modality_patterns: dict[str, str] | None = None,
    seg_pattern: str | None = None,
    label_convention: str | None = None,
    channel_order: Sequence[str] = DEFAULT_CHANNEL_ORDER,
    cache_dir: Path | None = None,
    on_case: Callable[[CaseResult], None] | None = None,
) -> ConversionReport:
    """Convert every case of ``src`` into ``dst`` in the ``to`` layout.

    Parameters
    ----------
    src
        A Kaggle pack (root or slice folder), a NIfTI dataset or a manifest CSV.
    dst
        Output folder (created).
    to
        ``nifti`` (BraTS 2020 folders, stored values, labels 1/2/4) or ``kaggle`` (HDF5 slices,
        standardised per volume, plus ``data/meta_data.csv`` and ``case_ids.csv``).
    fmt, modality_patterns, seg_pattern, label_convention
        How to read ``src`` when it is not a manifest (see :func:`build_manifest`).
    channel_order
        Image channel order of the written Kaggle slices.
    cache_dir
        Volume cache for reading a Kaggle source.
    on_case
        Called with each case's result as it completes (progress display).

    Returns
    -------
    ConversionReport
        One :class:`CaseResult` per case; failures carry the error message.
    """
    if to not in TARGETS:
        raise ConfigError(f"unknown target layout {to!r}; choose from {', '.join(TARGETS)}")
    dst = Path(dst)
    manifest = open_source(
        src,
        fmt=fmt,
        modality_patterns=modality_patterns,
        seg_pattern=seg_pattern,
        label_convention=label_convention,
    )
    dst.mkdir(parents=True, exist_ok=True)
    report = ConversionReport(target=to, dst=dst)
    volumes = assign_volumes(manifest.case_ids) if to == "kaggle" else {}
    data_dir = dst / "data"
    meta: list[dict] = []
    for case_id in manifest.case_ids:
        try:
            case = manifest.load_case(case_id, cache_dir=cache_dir)
            case.validate()
            if to == "nifti":
                from radsurv.data.nifti import write_nifti_case

                out = write_nifti_case(case, dst)
            else:
                out = _write_kaggle(case, data_dir, volumes[case_id], channel_order)
                meta += meta_data_rows(case, volumes[case_id])
            result = CaseResult(case_id, True, output=str(out))
        except RadsurvError as exc:
            logger.error("case %s not converted: %s", case_id, exc)
            result = CaseResult(case_id, False, error=str(exc))
        except (OSError, ValueError, MemoryError) as exc:
            logger.error("case %s not converted: %s: %s", case_id, type(exc).__name__, exc)
            result = CaseResult(case_id, False, error=f"{type(exc).__name__}: {exc}")
        report.results.append(result)
        if on_case is not None:
            on_case(result)
    if to == "kaggle" and meta:
        pd.DataFrame(meta).to_csv(data_dir / "meta_data.csv", index=False)
        ok_ids = [r.case_id for r in report.results if r.ok]
        pd.DataFrame({"volume": [volumes[c] for c in ok_ids], "case_id": ok_ids}).to_csv(
            dst / "case_ids.csv", index=False
        )
    logger.info(
        "converted %d of %d case(s) to %s under %s",
        len(report.results) - len(report.failed),
        len(report.results),
        to,
        dst,
    )
    return report
