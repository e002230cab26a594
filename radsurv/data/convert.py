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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from radsurv.data.formats import FORMATS, get_format
from radsurv.data.formats.kaggle_hdf5 import assign_volumes as assign_volumes
from radsurv.data.hdf5 import DEFAULT_CHANNEL_ORDER
from radsurv.data.manifest import Manifest, build_manifest
from radsurv.data.sources import manifest_sources
from radsurv.errors import ConfigError, RadsurvError

logger = logging.getLogger(__name__)

#: The layouts a dataset converts to: every registered format (radsurv.data.formats).
TARGETS: tuple[str, ...] = tuple(FORMATS)


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
    try:
        writer_format = get_format(to)
    except KeyError:
        raise ConfigError(
            f"unknown target layout {to!r}; choose from {', '.join(TARGETS)}"
        ) from None
    dst = Path(dst)
    manifest = open_source(
        src,
        fmt=fmt,
        modality_patterns=modality_patterns,
        seg_pattern=seg_pattern,
        label_convention=label_convention,
    )
    dst.mkdir(parents=True, exist_ok=True)
    report = ConversionReport(target=writer_format.name, dst=dst)
    writer = writer_format.open_writer(dst, manifest.case_ids, channel_order=channel_order)
    for source in manifest_sources(manifest, cache_dir):
        case_id = source.case_id
        try:
            case = source.load()
            case.validate()
            result = CaseResult(case_id, True, output=str(writer.write(case)))
        except RadsurvError as exc:
            logger.error("case %s not converted: %s", case_id, exc)
            result = CaseResult(case_id, False, error=str(exc))
        except (OSError, ValueError, MemoryError) as exc:
            logger.error("case %s not converted: %s: %s", case_id, type(exc).__name__, exc)
            result = CaseResult(case_id, False, error=f"{type(exc).__name__}: {exc}")
        report.results.append(result)
        if on_case is not None:
            on_case(result)
    writer.close([r.case_id for r in report.results if r.ok])
    logger.info(
        "converted %d of %d case(s) to %s under %s",
        len(report.results) - len(report.failed),
        len(report.results),
        to,
        dst,
    )
    return report
