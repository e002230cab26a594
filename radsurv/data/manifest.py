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

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsurv.data import formats
from radsurv.data.case import Case
from radsurv.data.cohort import COHORT_COLUMNS, UNKNOWN_SITE, check_cohort, read_cohort_columns
from radsurv.data.formats import CaseEntry, DataFormat, ReadOptions, canonical_name, get_format
from radsurv.data.formats.nifti import dataset_convention as dataset_convention
from radsurv.data.labels import LABEL_CONVENTIONS
from radsurv.data.listing import FolderListing
from radsurv.data.parallel import check_jobs, map_ordered
from radsurv.errors import ClinicalTableError, DataError, ManifestError

logger = logging.getLogger(__name__)

#: Canonical format names (``kaggle_hdf5`` is read as ``kaggle``): see radsurv.data.formats.
FORMATS: tuple[str, ...] = tuple(formats.FORMATS)

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


# ------------------------------------------------------------------------- formats, checksums


def content_checksum(files: Sequence[Path], kind: str) -> str:
    """Deterministic sha256 of a case's content (never of mtimes or absolute paths).

    ``kind='nifti'`` hashes each file's decompressed bytes; ``kind='kaggle'`` hashes the decoded
    datasets of each slice file, in the order given, so that the value is the same on any
    machine and with any HDF5 / zlib build. Returns ``"sha256:<hex>"``.
    """
    return _format(kind).checksum([Path(f) for f in files])


def _format(name: str) -> DataFormat:
    try:
        return get_format(name)
    except KeyError:
        raise ManifestError(f"unknown format {name!r}; choose from {', '.join(FORMATS)}") from None


def detect_format(data: Path, listing: FolderListing | None = None) -> str:
    """``kaggle`` when ``data`` holds (or leads to) Kaggle slice files, else ``nifti``."""
    data = Path(data)
    if not data.exists():
        raise ManifestError(f"data folder {data} does not exist")
    name = formats.detect_format(data, listing)
    if name is None:
        raise ManifestError(
            f"{data} holds neither Kaggle slice files (volume_V_slice_S.h5) nor NIfTI files; "
            "give the pack's root, the folder of slices or a folder of NIfTI case folders"
        )
    return name


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


def _row_task(task: tuple[str, CaseEntry, str, bool, ReadOptions]) -> dict[str, Any]:
    """One case's manifest row, or its identity plus the problem (runs in a worker too)."""
    name, entry, source, checksum, options = task
    try:
        return get_format(name).manifest_row(entry, source, checksum, options)
    except DataError as exc:  # nothing invented: the row says why the case cannot be read
        return {
            "case_id": entry.case_id,
            "format": name,
            "source": source,
            PROBLEM_COLUMN: str(exc),
        }


def _case_rows(
    data: Path,
    fmt: str,
    base: Path,
    checksum: bool,
    options: ReadOptions,
    listing: FolderListing,
    jobs: int,
    on_progress: Callable[[int, int, str], None] | None,
) -> list[dict[str, Any]]:
    """The rows of every case of ``data``, sorted by case id, ``jobs`` cases at a time."""
    layout = get_format(fmt)
    entries = sorted(layout.list_cases(data, options, listing), key=lambda e: e.case_id)
    tasks = [(layout.name, e, _rel(e.folder, base), checksum, options) for e in entries]
    rows = []
    for done, row in enumerate(map_ordered(_row_task, tasks, jobs), start=1):
        if row.get(PROBLEM_COLUMN):
            logger.warning("case %s: %s", row["case_id"], row[PROBLEM_COLUMN])
        rows.append(row)
        if on_progress is not None:
            on_progress(done, len(tasks), "cases")
    return layout.finish_rows(rows, options)


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
    jobs: int = 1,
    on_progress: Callable[[int, int, str], None] | None = None,
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
    jobs
        Worker processes that describe (and checksum) the cases; the rows are identical to
        ``jobs=1`` and in the same order.
    on_progress
        Called as ``on_progress(done, total, "cases")`` after each case.

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
    check_jobs(jobs)
    listing = FolderListing()  # one listing of each folder for detection, listing, reading
    fmt = _format(fmt or detect_format(data, listing)).name
    if label_convention is not None and label_convention not in LABEL_CONVENTIONS:
        raise ManifestError(
            f"unknown label convention {label_convention!r}; "
            f"choose from {', '.join(LABEL_CONVENTIONS)}"
        )
    options = ReadOptions(
        modality_patterns=modality_patterns,
        seg_pattern=seg_pattern,
        label_convention=label_convention,
    )
    rows = _case_rows(data, fmt, base, checksum, options, listing, jobs, on_progress)
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
        names = {value: canonical_name(value) for value in set(table["format"].astype(str))}
        bad = sorted(value for value, name in names.items() if name is None)
        if bad:
            raise ManifestError(f"{where}: unknown format value(s) {bad}; use kaggle or nifti")
        if any(name != value for value, name in names.items()):  # an alias (kaggle_hdf5)
            table = table.assign(format=table["format"].astype(str).map(names))
        self.table = table.set_index(ids, drop=False).rename_axis(None)
        self.root = Path(root)
        self.path = path
        self._state: dict[str, Any] = {}  # per-format scratch (e.g. folder listings)

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
        """Load one case as recorded, through its format (:mod:`radsurv.data.formats`): Kaggle
        rows via the volume cache, NIfTI rows by file name.

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
        return get_format(row["format"]).read_row(
            row,
            source,
            where=str(self.path or "the manifest"),
            state=self._state,
            cache_dir=Path(cache_dir) if cache_dir is not None else None,
        )

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
