"""The manifest (``data_manifest.csv``): the sample sheet every later command takes.

One row per case: where its files are (relative to the manifest's folder), what they hold
(slices, shape, modalities, mask, label convention, channel order), the clinical fields joined by
case id and a content checksum. :class:`Manifest` reads it back and loads cases from it.

Example
-------
>>> df = build_manifest(Path("demo_out/cohort"), relative_to=Path("."))  # doctest: +SKIP
>>> write_manifest(df, Path("data_manifest.csv"))  # doctest: +SKIP
>>> m = Manifest.read(Path("data_manifest.csv"))  # doctest: +SKIP
>>> case = m.load_case(m.case_ids[0])  # doctest: +SKIP
"""

from __future__ import annotations

import glob
import gzip
import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsurv.data.case import Case
from radsurv.data.cohort import COHORT_COLUMNS, UNKNOWN_SITE, check_cohort, read_cohort_columns
from radsurv.data.labels import LABEL_CONVENTIONS, MODALITIES
from radsurv.errors import ClinicalTableError, DataError, ManifestError

logger = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("kaggle", "nifti")

#: Columns every manifest has, in order; label columns of ``--labels`` come before ``checksum``.
BASE_COLUMNS: tuple[str, ...] = (
    "case_id",
    "format",
    "source",
    "files",
    "volume",
    "n_slices",
    "shape",
    "spacing",
    "modalities",
    "has_mask",
    "label_convention",
    "channel_order",
    "grade",
)
CLINICAL_COLUMNS: tuple[str, ...] = ("age", "time", "event", "resection")
CHECKSUM_COLUMN = "checksum"
#: Last column: why a case could not be read (empty when fine); ``radsurv check`` tells more.
PROBLEM_COLUMN = "problem"
REQUIRED_COLUMNS: tuple[str, ...] = ("case_id", "format", "source")

#: File names a dataset folder (e.g. a ``radsurv synth`` output) carries its tables under.
DEFAULT_TABLES: dict[str, str] = {
    "clinical": "survival_info.csv",
    "name_mapping": "name_mapping.csv",
    "labels": "pseudoprogression.csv",
    "cohort": "cohort.csv",  # subject_id / timepoint (/ site) per scan: synth --timepoints
}


def _rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` in POSIX form (stable across machines)."""
    return Path(os.path.relpath(Path(path).resolve(), Path(base).resolve())).as_posix()


def _examples(ids: Iterable[str], limit: int = 5) -> str:
    ids = sorted(ids)
    more = f", ... (+{len(ids) - limit})" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


# ---------------------------------------------------------------------------------- checksums


def _hash_file_stream(h: Any, path: Path) -> None:
    """Feed a file's bytes (decompressed for .gz: independent of the zlib build) to ``h``."""
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read {path} for its checksum: {exc}") from exc


def _hash_h5_slice(h: Any, path: Path) -> dict[str, np.ndarray]:
    """Feed the decoded datasets of one slice file to ``h`` (independent of the HDF5 file
    layout, compression and library version) and return them."""
    import h5py

    arrays = {}
    try:
        with h5py.File(path, "r") as f:
            for name in sorted(f.keys()):
                obj = f[name]
                if not isinstance(obj, h5py.Dataset):
                    continue
                arr = np.ascontiguousarray(obj[()])
                arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
                h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
                h.update(arr.tobytes())
                arrays[name] = arr
    except OSError as exc:
        raise DataError(f"cannot read slice file {path} for its checksum: {exc}") from exc
    return arrays


def content_checksum(files: Sequence[Path], kind: str) -> str:
    """Deterministic sha256 of a case's content (never of mtimes or absolute paths).

    ``kind='nifti'`` hashes each file's decompressed bytes; ``kind='kaggle'`` hashes the decoded
    datasets of each slice file, in the order given, so that the value is the same on any
    machine and with any HDF5 / zlib build. Returns ``"sha256:<hex>"``.
    """
    h = hashlib.sha256()
    for path in files:
        h.update(f"{Path(path).name}\n".encode())
        if kind == "kaggle":
            _hash_h5_slice(h, Path(path))
        else:
            _hash_file_stream(h, Path(path))
    return "sha256:" + h.hexdigest()


# ------------------------------------------------------------------------------ format detect


def detect_format(data: Path) -> str:
    """``kaggle`` when ``data`` holds (or leads to) Kaggle slice files, else ``nifti``."""
    data = Path(data)
    if not data.exists():
        raise ManifestError(f"data folder {data} does not exist")
    for _, _, filenames in os.walk(data):
        for name in filenames:
            if name.endswith(".h5") and name.startswith("volume_"):
                return "kaggle"
            if name.endswith((".nii", ".nii.gz")):
                return "nifti"
    raise ManifestError(
        f"{data} holds neither Kaggle slice files (volume_V_slice_S.h5) nor NIfTI files; "
        "give the pack's root, the folder of slices or a folder of NIfTI case folders"
    )


def find_default_tables(data: Path) -> dict[str, Path]:
    """Clinical tables that sit beside a dataset (a synth output, a BraTS release folder).

    Looks in ``data`` and up to three parent folders, stopping at the first folder that holds
    any of ``survival_info.csv``, ``name_mapping.csv``, ``pseudoprogression.csv``,
    ``cohort.csv``.
    """
    folder = Path(data).resolve()
    for candidate in [folder, *list(folder.parents)[:3]]:
        found = {
            key: candidate / name
            for key, name in DEFAULT_TABLES.items()
            if (candidate / name).is_file()
        }
        if found:
            return found
    return {}


# ------------------------------------------------------------------------------------ rows


def _kaggle_content(files: Sequence[Path], channel_order: Sequence[str]) -> tuple[str, list[str]]:
    """Checksum of a volume's slices and the channels that hold any non-zero voxel."""
    h = hashlib.sha256()
    nonzero = np.zeros(len(channel_order), dtype=bool)
    for path in files:
        h.update(f"{path.name}\n".encode())
        image = _hash_h5_slice(h, path).get("image")
        if image is not None and image.ndim == 3 and image.shape[-1] == len(channel_order):
            nonzero |= np.any(image != 0, axis=(0, 1))
    present = [m for m, keep in zip(channel_order, nonzero, strict=True) if keep]
    return "sha256:" + h.hexdigest(), present


def _problem_row(case_id: str, fmt: str, source: str, exc: Exception) -> dict[str, Any]:
    """The row of a case that could not be read: identity plus the problem, nothing invented."""
    logger.warning("case %s: %s", case_id, exc)
    return {"case_id": case_id, "format": fmt, "source": source, PROBLEM_COLUMN: str(exc)}


def _kaggle_row(
    case_id: str, pack_volume: Any, source: str, checksum: bool, order: list[str]
) -> dict[str, Any]:
    import h5py

    files = _pack_files(pack_volume)
    slices = sorted(pack_volume.files)
    gaps = sorted(set(range(slices[-1] + 1)) - set(slices)) if slices else []
    if getattr(pack_volume, "duplicates", None):
        dup = sorted(pack_volume.duplicates)
        raise DataError(f"volume {pack_volume.volume}: several files for slice(s) {dup[:5]}")
    if gaps:
        raise DataError(f"volume {pack_volume.volume}: slice file(s) {gaps[:5]} missing")
    try:
        with h5py.File(files[0], "r") as f:
            height, width = f["image"].shape[:2]
    except (OSError, KeyError, ValueError) as exc:
        raise DataError(f"cannot read slice file {files[0]}: {exc}") from exc
    # a modality the case lacks is stored as an all-zero channel (write_kaggle_volume)
    digest, present = _kaggle_content(files, order) if checksum else ("", order)
    return {
        "case_id": case_id,
        "format": "kaggle",
        "source": source,
        "files": "",
        "volume": int(pack_volume.volume),
        "n_slices": len(files),
        "shape": f"{len(files)}x{height}x{width}",
        "spacing": "1x1x1",
        "modalities": ",".join(present),
        "has_mask": True,
        "label_convention": "brats2020",
        "channel_order": ",".join(order),
        CHECKSUM_COLUMN: digest,
    }


def _kaggle_rows(data: Path, base: Path, checksum: bool) -> list[dict[str, Any]]:
    from radsurv.data.hdf5 import DEFAULT_CHANNEL_ORDER, find_slice_dir, scan_pack

    slice_dir = find_slice_dir(data)
    source = _rel(slice_dir, base)
    rows = []
    for case_id, pack_volume in sorted(scan_pack(slice_dir).items()):
        try:
            rows.append(
                _kaggle_row(case_id, pack_volume, source, checksum, list(DEFAULT_CHANNEL_ORDER))
            )
        except DataError as exc:
            rows.append(_problem_row(case_id, "kaggle", source, exc))
    return rows


def _pack_files(pack_volume: Any) -> list[Path]:
    """Slice files of a PackVolume in slice order (a list, or a dict slice -> path)."""
    files = pack_volume.files
    if isinstance(files, dict):
        return [Path(files[k]) for k in sorted(files)]
    return [Path(f) for f in files]


def dataset_convention(values: dict[str, set[int]]) -> tuple[str, str]:
    """One label convention for a whole dataset from the mask values of its cases.

    Per case, a mask with 3 but no 4 would read as BraTS 2023; across a dataset, any case
    holding both 3 and 4 makes 3 the non-enhancing core of BraTS 2015 for every case.
    Returns ``(convention, reason)``.
    """
    from radsurv.data.labels import detect_convention

    union = set().union(*values.values()) if values else set()
    convention, reason = detect_convention(np.array(sorted(union or {0})))
    both = sorted(c for c, v in values.items() if {3, 4} <= v)
    if convention == "brats2015" and both:
        reason = f"{len(both)} case(s) hold both 3 and 4 (e.g. {both[0]}): BraTS 2015 (3 = NET)"
    return convention, f"over {len(values)} mask(s), {reason}"


def _nifti_row(
    case_id: str,
    folder: Path,
    source: str,
    checksum: bool,
    modality_patterns: dict[str, str] | None,
    seg_pattern: str | None,
    label_convention: str | None,
) -> tuple[dict[str, Any], set[int] | None]:
    """One NIfTI case's row and, when the convention is to be detected, its mask values."""
    import SimpleITK as sitk

    from radsurv.data.nifti import resolve_case_files

    images, seg, _ = resolve_case_files(folder, modality_patterns, seg_pattern)
    first = images[next(m for m in MODALITIES if m in images)]
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(first))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise DataError(f"cannot read the NIfTI header of {first}") from exc
    size = reader.GetSize()  # (x, y, z)
    values = None
    if seg is not None and label_convention is None:
        try:
            mask = sitk.GetArrayFromImage(sitk.ReadImage(str(seg)))
        except RuntimeError as exc:
            raise DataError(f"cannot read the mask {seg}") from exc
        values = {int(v) for v in np.unique(mask)}
    entries = [f"{m}={images[m].relative_to(folder).as_posix()}" for m in images]
    if seg is not None:
        entries.append(f"seg={seg.relative_to(folder).as_posix()}")
    ordered = [images[m] for m in images] + ([seg] if seg is not None else [])
    row = {
        "case_id": case_id,
        "format": "nifti",
        "source": source,
        "files": ";".join(entries),
        "volume": pd.NA,
        "n_slices": int(size[2]),
        "shape": "x".join(str(int(s)) for s in reversed(size)),
        "spacing": "x".join(f"{s:g}" for s in reader.GetSpacing()),
        "modalities": ",".join(images),
        "has_mask": seg is not None,
        "label_convention": label_convention if seg is not None else "",
        "channel_order": "",
        CHECKSUM_COLUMN: content_checksum(ordered, "nifti") if checksum else "",
    }
    return row, values


def _nifti_rows(
    data: Path,
    base: Path,
    checksum: bool,
    modality_patterns: dict[str, str] | None,
    seg_pattern: str | None,
    label_convention: str | None,
) -> list[dict[str, Any]]:
    from radsurv.data.nifti import find_nifti_cases

    rows = []
    seg_values: dict[str, set[int]] = {}
    for case_id, folder in find_nifti_cases(data, modality_patterns, seg_pattern).items():
        source = _rel(folder, base)
        try:
            row, values = _nifti_row(
                case_id, folder, source, checksum, modality_patterns, seg_pattern, label_convention
            )
        except DataError as exc:
            rows.append(_problem_row(case_id, "nifti", source, exc))
            continue
        rows.append(row)
        if values is not None:
            seg_values[case_id] = values
    if seg_values:
        convention, reason = dataset_convention(seg_values)
        logger.info(
            "label convention %s detected (%s); pass --label-convention to fix it",
            convention,
            reason,
        )
        for row in rows:
            if row.get("has_mask") is True:
                row["label_convention"] = convention
    return rows


# --------------------------------------------------------------------------------- clinical


def _survival_fields(path: Path) -> pd.DataFrame:
    from radsurv.clinical import read_survival_table

    table = read_survival_table(path)
    return table[[c for c in CLINICAL_COLUMNS if c in table.columns]]


def _grade_fields(path: Path) -> pd.DataFrame:
    """Grade and, from the BraTS 2019 / TCGA ids, the site of each case of a name mapping."""
    from radsurv.clinical import read_name_mapping
    from radsurv.data.cohort import CohortError, sites_from_name_mapping

    mapping = read_name_mapping(path)
    out = mapping[["grade"]].copy()
    try:
        out["site"] = sites_from_name_mapping(mapping)
    except CohortError:
        logger.info("%s: no BraTS 2019 / TCGA id column: no sites from it", path)
    return out


def _label_fields(path: Path) -> pd.DataFrame:
    from radsurv.clinical import read_label_table

    labels = read_label_table(path)
    taken = (
        set(BASE_COLUMNS)
        | set(CLINICAL_COLUMNS)
        | set(COHORT_COLUMNS)
        | {CHECKSUM_COLUMN, PROBLEM_COLUMN}
    )
    name = f"label_{labels.name}" if labels.name in taken else str(labels.name)
    return labels.rename(name).to_frame()


def _cohort_fields(
    path: Path,
    id_column: str | None = None,
    site_column: str | None = None,
    subject_column: str | None = None,
    timepoint_column: str | None = None,
) -> pd.DataFrame:
    """The cohort columns a table provides (those it does not provide are left out)."""
    from radsurv.data.cohort import CohortError

    try:
        cohort = read_cohort_columns(
            path,
            id_column=id_column,
            site_column=site_column,
            subject_column=subject_column,
            timepoint_column=timepoint_column,
        )
    except CohortError as exc:
        raise ClinicalTableError(str(exc)) from exc
    given = cohort.attrs["sources"]
    keep = [c for c in COHORT_COLUMNS if str(given[c]).startswith(str(path))]
    if not keep:
        raise ClinicalTableError(
            f"{path}: no subject, timepoint or site column found (usual names: subject_id, "
            "timepoint, site); name them with --subject-column, --timepoint-column or "
            "--site-column"
        )
    return cohort[keep]


def _join(df: pd.DataFrame, fields: pd.DataFrame, table: Path) -> pd.DataFrame:
    """Left-join a clinical table by case id; ids on one side only are logged, never dropped."""
    from radsurv.clinical import join_tables

    if not set(fields.index.astype(str)) & set(df.index.astype(str)):
        raise ClinicalTableError(
            f"{table}: no case id in common with the data (table e.g. "
            f"{_examples(fields.index.astype(str), 3)}; data e.g. {_examples(df.index, 3)}); "
            "is it the table of this dataset?"
        )
    joined = join_tables(
        df.drop(columns=[c for c in fields.columns if c in df.columns]),
        fields,
        how="left",
        left_name="data",
        right_name=table.name,
    ).table
    joined.index = joined.index.rename(None)
    return joined


# ------------------------------------------------------------------------------------ build


def build_manifest(
    data: Path,
    *,
    fmt: str | None = None,
    clinical: Path | None = None,
    name_mapping: Path | None = None,
    labels: Path | None = None,
    modality_patterns: dict[str, str] | None = None,
    seg_pattern: str | None = None,
    label_convention: str | None = None,
    relative_to: Path | None = None,
    checksum: bool = True,
    find_tables: bool = True,
    cohort_table: Path | None = None,
    cohort_id_column: str | None = None,
    site_column: str | None = None,
    subject_column: str | None = None,
    timepoint_column: str | None = None,
) -> pd.DataFrame:
    """Build the manifest of a dataset: one row per case.

    Parameters
    ----------
    data
        A Kaggle pack's root or its folder of slices, a ``radsurv synth`` output folder, or a
        folder of NIfTI case folders.
    fmt
        ``kaggle`` or ``nifti``; ``None`` detects it from the files.
    clinical, name_mapping, labels
        Survival table (``survival_info.csv``: age, time, event, resection), name mapping
        (``Grade``) and an endpoint label table (its label column(s) are copied as they are).
        ``None`` uses the file of that name found beside the data (see
        :func:`find_default_tables`), if any.
    modality_patterns, seg_pattern, label_convention
        NIfTI naming and label convention, as in :func:`radsurv.data.nifti.read_nifti_case`.
    relative_to
        Folder the source paths are stored relative to: the folder the manifest will be
        written to. Default: the current directory (:func:`write_manifest` re-bases if needed).
    checksum
        Compute the content checksum (reads every file once); ``False`` leaves it empty.
    find_tables
        Look for clinical tables beside the data when they are not given. A table found that
        way which does not parse or shares no id with the data is logged and ignored.
    cohort_table, cohort_id_column, site_column, subject_column, timepoint_column
        A table of the cohort structure (any CSV/TSV/Parquet with a case id column; it may be
        the survival table or the name mapping) and the columns to read from it, as in
        :func:`radsurv.data.cohort.read_cohort_columns` (unnamed columns are found by their
        usual names: ``subject_id``, ``timepoint``, ``site``). ``None`` uses ``cohort.csv``
        beside the data (``radsurv synth --timepoints 2`` writes one), if any.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``case_id`` with ``case_id``, the cohort columns ``subject_id`` (default:
        the case id), ``timepoint`` (float days or ordinal; NaN for single scans) and ``site``
        (from the cohort table, else from the name mapping's BraTS 2019 / TCGA ids, ``unknown``
        for a case neither tells; empty when no table gives sites), then the other columns of
        :data:`BASE_COLUMNS`, the clinical fields, the label column(s) and ``checksum``.
        ``df.attrs["root"]`` is ``relative_to``.

    Notes
    -----
    Ids present in the data but not in a table, and the reverse, are logged (WARNING) with
    counts and examples. Cases without a table row keep empty fields; table rows without images
    cannot be rows of the manifest and are only reported.
    """
    data = Path(data)
    base = Path(relative_to) if relative_to is not None else Path.cwd()
    fmt = fmt or detect_format(data)
    if fmt not in FORMATS:
        raise ManifestError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if label_convention is not None and label_convention not in LABEL_CONVENTIONS:
        raise ManifestError(
            f"unknown label convention {label_convention!r}; "
            f"choose from {', '.join(LABEL_CONVENTIONS)}"
        )
    if fmt == "kaggle":
        if modality_patterns or seg_pattern:
            logger.warning("--modality/--seg apply to NIfTI data only; ignored for a Kaggle pack")
        rows = _kaggle_rows(data, base, checksum)
    else:
        rows = _nifti_rows(data, base, checksum, modality_patterns, seg_pattern, label_convention)
    df = pd.DataFrame(rows, columns=[*BASE_COLUMNS[:-1], CHECKSUM_COLUMN, PROBLEM_COLUMN])
    df[PROBLEM_COLUMN] = df[PROBLEM_COLUMN].fillna("")
    df = df.set_index("case_id", drop=False)
    df.index.name = None
    defaults = find_default_tables(data) if find_tables else {}
    options = {
        "--cohort-id-column": cohort_id_column,
        "--site-column": site_column,
        "--subject-column": subject_column,
        "--timepoint-column": timepoint_column,
    }
    named = [k for k, v in options.items() if v is not None]
    if named and cohort_table is None:
        raise ManifestError(
            f"{', '.join(named)} name column(s) of the cohort table: give it with "
            "--cohort-table FILE (it may be the same file as --clinical or --name-mapping)"
        )
    given = {
        "clinical": clinical,
        "name_mapping": name_mapping,
        "labels": labels,
        "cohort": cohort_table,
    }
    readers = {
        "clinical": _survival_fields,
        "name_mapping": _grade_fields,
        "labels": _label_fields,
        "cohort": lambda path: _cohort_fields(
            path, cohort_id_column, site_column, subject_column, timepoint_column
        ),
    }
    site_from: str | None = None
    for key, reader in readers.items():
        path = Path(given[key]) if given[key] else defaults.get(key)
        if path is None:
            continue
        if not path.is_file():
            raise ClinicalTableError(f"{key.replace('_', ' ')} table {path} does not exist")
        how = "given" if given[key] else "found beside the data"
        logger.info("joining %s table %s (%s)", key.replace("_", " "), path, how)
        try:
            fields = reader(path)
            before = df["site"] if "site" in df.columns else None
            df = _join(df, fields, path)
            if "site" in fields.columns:
                if before is not None:  # the later table wins; the earlier fills its gaps
                    logger.info("site: from %s, else from %s", path.name, site_from)
                    df["site"] = df["site"].astype("string").fillna(before.astype("string"))
                site_from = path.name
        except ClinicalTableError as exc:
            if given[key]:
                raise
            # a table the user did not ask for must not stop the manifest
            logger.warning("%s table %s ignored: %s", key.replace("_", " "), path, exc)
    for column in CLINICAL_COLUMNS:
        if column not in df.columns:
            df[column] = pd.NA
    df["grade"] = df["grade"].fillna("") if "grade" in df.columns else ""
    _fill_cohort_columns(df, site_known=site_from is not None)
    fixed = (*BASE_COLUMNS, *COHORT_COLUMNS, *CLINICAL_COLUMNS, CHECKSUM_COLUMN, PROBLEM_COLUMN)
    label_cols = [c for c in df.columns if c not in fixed]
    df = df[
        [
            "case_id",
            *COHORT_COLUMNS,
            *BASE_COLUMNS[1:],
            *CLINICAL_COLUMNS,
            *label_cols,
            CHECKSUM_COLUMN,
            PROBLEM_COLUMN,
        ]
    ]
    bad = df.index[df[PROBLEM_COLUMN] != ""]
    if len(bad):
        logger.warning(
            "%d case(s) could not be read and have only a problem in the manifest: %s; "
            "run `radsurv check` for details",
            len(bad),
            _examples(bad),
        )
    df.attrs["root"] = str(base.resolve())
    logger.info("manifest: %d %s case(s) from %s", len(df), fmt, data)
    return df


def _fill_cohort_columns(df: pd.DataFrame, site_known: bool) -> None:
    """Defaults of the cohort columns, in place: subject = case id, no time point, site."""
    subject = df["subject_id"] if "subject_id" in df.columns else pd.Series(pd.NA, index=df.index)
    df["subject_id"] = subject.astype("string").fillna(df["case_id"].astype("string"))
    if "timepoint" in df.columns:
        df["timepoint"] = pd.to_numeric(df["timepoint"], errors="coerce").astype(float)
    else:
        df["timepoint"] = np.nan
    if site_known:
        df["site"] = df["site"].astype("string").fillna(UNKNOWN_SITE)
    else:
        df["site"] = ""
    check_cohort(df[list(COHORT_COLUMNS)], "manifest")
    n_subjects = df["subject_id"].nunique()
    if n_subjects < len(df):
        logger.info("manifest: %d scan(s) of %d subject(s)", len(df), n_subjects)
    if site_known:
        counts = df["site"].value_counts()
        logger.info("manifest: sites %s", ", ".join(f"{k} {v}" for k, v in counts.items()))


def _format_timepoint(value: Any) -> str:
    """Time points without a trailing ``.0`` (days are whole numbers); empty when NaN."""
    if value is None or pd.isna(value):
        return ""
    return f"{float(value):g}" if float(value).is_integer() else repr(float(value))


def write_manifest(df: pd.DataFrame, path: Path) -> Path:
    """Write a manifest CSV; source paths are re-based onto ``path``'s folder when needed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = df.copy()
    root = out.attrs.get("root")
    target = path.parent.resolve()
    if root is not None and Path(root) != target:
        out["source"] = [_rel(Path(root) / s, target) for s in out["source"]]
    if "timepoint" in out.columns:
        out["timepoint"] = [_format_timepoint(v) for v in out["timepoint"]]
    out.to_csv(path, index=False, lineterminator="\n")
    logger.info("wrote manifest %s (%d cases)", path, len(out))
    return path


# --------------------------------------------------------------------------------- Manifest


class Manifest:
    """A manifest read back: its table and the cases it points to.

    Attributes
    ----------
    path
        The manifest file (``None`` for one built in memory).
    root
        Folder the source paths are relative to (the manifest's folder).
    table
        The rows, indexed by ``case_id``.
    """

    def __init__(self, table: pd.DataFrame, root: Path, path: Path | None = None) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        where = path or "manifest"
        if missing:
            raise ManifestError(
                f"{where}: missing column(s) {missing}; rebuild it with `radsurv manifest`"
            )
        ids = table["case_id"].astype(str)
        dup = ids[ids.duplicated()]
        if len(dup):
            raise ManifestError(f"{where}: duplicate case ids {_examples(set(dup))}")
        bad = sorted(set(table["format"]) - set(FORMATS))
        if bad:
            raise ManifestError(f"{where}: unknown format value(s) {bad}; use kaggle or nifti")
        self.table = table.set_index(ids, drop=False).rename_axis(None)
        self.root = Path(root)
        self.path = path
        self._packs: dict[Path, dict[str, Any]] = {}

    @classmethod
    def read(cls, path: Path) -> Manifest:
        """Read a manifest CSV written by :func:`write_manifest` / ``radsurv manifest``."""
        path = Path(path)
        if not path.is_file():
            raise ManifestError(
                f"manifest {path} does not exist; build one with `radsurv manifest`"
            )
        try:
            table = pd.read_csv(
                path,
                dtype={
                    "case_id": str,
                    "subject_id": str,
                    "site": str,
                    "source": str,
                    "files": str,
                    "grade": str,
                },
                keep_default_na=False,
                na_values={"age": [""], "time": [""], "volume": [""], "timepoint": [""]},
            )
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise ManifestError(f"cannot read manifest {path}: {exc}") from exc
        return cls(table, path.parent, path)

    @classmethod
    def from_table(cls, table: pd.DataFrame) -> Manifest:
        """Wrap an in-memory :func:`build_manifest` result (paths relative to its ``root``)."""
        return cls(table, Path(table.attrs.get("root", Path.cwd())))

    def __len__(self) -> int:
        return len(self.table)

    def __repr__(self) -> str:
        return f"Manifest({self.path or self.root}, {len(self)} cases)"

    @property
    def case_ids(self) -> list[str]:
        """Case ids in manifest order."""
        return list(self.table.index)

    def row(self, case_id: str) -> pd.Series:
        """The manifest row of one case (ManifestError naming the id when absent)."""
        if case_id not in self.table.index:
            raise ManifestError(
                f"case {case_id!r} is not in {self.path or 'the manifest'} "
                f"(it has {len(self)} cases, e.g. {_examples(self.case_ids, 3)})"
            )
        return self.table.loc[case_id]

    def source_path(self, case_id: str) -> Path:
        """Absolute folder of a case's files (case folder or slice folder)."""
        return (self.root / str(self.row(case_id)["source"])).resolve()

    def load_case(self, case_id: str, cache_dir: Path | None = None) -> Case:
        """Load one case as recorded: Kaggle rows via the volume cache, NIfTI rows by file name.

        Parameters
        ----------
        case_id
            A case id of the manifest.
        cache_dir
            Volume cache folder for Kaggle rows (see :mod:`radsurv.data.cache`); ``None`` reads
            the slice files directly.
        """
        row = self.row(case_id)
        problem = str(row.get(PROBLEM_COLUMN, "") or "")
        if problem and problem != "nan":
            raise DataError(
                f"case {case_id}: {self.path or 'the manifest'} records a problem: {problem}; "
                "fix the files and rebuild the manifest"
            )
        source = self.source_path(case_id)
        if not source.exists():
            raise DataError(
                f"case {case_id}: source {source} (from {self.path or 'the manifest'}) does not "
                "exist; the data moved? Rebuild the manifest with `radsurv manifest`"
            )
        if row["format"] == "kaggle":
            return self._load_kaggle(case_id, row, source, cache_dir)
        return self._load_nifti(case_id, row, source)

    def _load_kaggle(self, case_id: str, row: pd.Series, source: Path, cache_dir: Path | None):
        from radsurv.data.hdf5 import DEFAULT_CHANNEL_ORDER, read_volume, scan_pack

        order_text = str(row.get("channel_order", "") or "")
        order = tuple(order_text.split(",")) if order_text else DEFAULT_CHANNEL_ORDER
        pack_volume = self._recorded_volume(row, source)
        if pack_volume is None:  # files renamed or moved since: list the folder
            if source not in self._packs:
                self._packs[source] = scan_pack(source)
            pack_volume = self._packs[source].get(case_id)
        if pack_volume is None:
            raise DataError(f"case {case_id}: no slice files for it under {source}")
        if cache_dir is not None:
            from radsurv.data.cache import read_volume_cached

            return read_volume_cached(pack_volume, Path(cache_dir), order)
        return read_volume(pack_volume, order)

    @staticmethod
    def _recorded_volume(row: pd.Series, source: Path) -> Any:
        """The PackVolume the row describes when all its files are there (no folder scan)."""
        from radsurv.data.hdf5 import PackVolume, slice_filename

        try:
            volume, n_slices = int(row["volume"]), int(row["n_slices"])
        except (KeyError, TypeError, ValueError):
            return None
        files = {z: source / slice_filename(volume, z) for z in range(n_slices)}
        if not all(f.is_file() for f in files.values()):
            return None
        return PackVolume(volume, files)

    def _load_nifti(self, case_id: str, row: pd.Series, source: Path) -> Case:
        from radsurv.data.nifti import read_nifti_case

        patterns: dict[str, str] = {}
        seg = None
        for entry in str(row.get("files", "") or "").split(";"):
            if "=" not in entry:
                continue
            key, name = entry.split("=", 1)
            if key == "seg":
                seg = glob.escape(name)
            else:
                patterns[key] = glob.escape(name)
        if not patterns:
            raise ManifestError(
                f"case {case_id}: NIfTI row of {self.path or 'the manifest'} lists no files; "
                "rebuild the manifest with `radsurv manifest`"
            )
        convention = str(row.get("label_convention", "") or "") or None
        case = read_nifti_case(source, case_id, patterns, seg, convention)
        if seg is not None and case.labels is None:
            raise DataError(f"case {case_id}: mask {seg} listed in the manifest is missing")
        return case

    def cohort(self) -> pd.DataFrame:
        """``subject_id``, ``timepoint``, ``site`` by case id (defaults for older manifests).

        ``subject_id`` is the case id where empty, ``timepoint`` a float (NaN for single
        scans), ``site`` a string (<NA> where the manifest records none).
        """
        table = self.table
        ids = table["case_id"].astype(str)
        out = pd.DataFrame(index=pd.Index(ids.to_numpy(dtype=object), name="case_id"))
        subject = table["subject_id"] if "subject_id" in table.columns else ids
        subject = subject.astype("string").replace("", pd.NA).fillna(ids.astype("string"))
        out["subject_id"] = subject.to_numpy()
        out["subject_id"] = out["subject_id"].astype("string")
        timepoint = table["timepoint"] if "timepoint" in table.columns else np.nan
        out["timepoint"] = pd.to_numeric(pd.Series(timepoint, index=table.index), errors="coerce")
        site = table["site"] if "site" in table.columns else pd.Series(pd.NA, index=table.index)
        out["site"] = site.astype("string").replace("", pd.NA).to_numpy()
        out["site"] = out["site"].astype("string")
        return out

    def clinical(self) -> pd.DataFrame:
        """The clinical columns (cohort columns, grade, age, time, event, resection, label
        columns) by case id."""
        fixed = set(BASE_COLUMNS) | {CHECKSUM_COLUMN, PROBLEM_COLUMN}
        columns = [c for c in self.table.columns if c not in fixed or c == "grade"]
        out = self.table[columns].copy()
        out.index.name = "case_id"
        for column in out.columns:
            if out[column].dtype == object:
                out[column] = out[column].replace("", pd.NA)
        if "event" in out.columns:
            out["event"] = out["event"].map(_parse_bool)
        return out


def _parse_bool(value: Any) -> Any:
    if isinstance(value, bool | np.bool_):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("true", "1", "1.0"):
        return True
    if text in ("false", "0", "0.0"):
        return False
    return pd.NA
