"""Batch extraction: cases in parallel (processes or a Dask cluster), resumable, with a status.

Work per case: one *prepare* task (read once, preprocess, crop), then one *shape* task per
region and one *texture* task per modality (or per modality x region when only original images
are enabled). A finished case is written at once to ``OUT.parts/`` (see
:mod:`radsurv.features.store`); a rerun loads finished cases and computes only the others.

On Dask every piece of work is a task with lineage: the prepared case stays on the cluster as
the prepare task's result and the shape/texture tasks depend on it (nothing is scattered), so
the scheduler recomputes whatever a lost worker held. A lost scheduler, an unreachable one or
Ctrl-C end the run with :class:`RunInterrupted` (finished cases are saved). Progress goes to a
callback as :class:`ProgressEvent` (log lines by default); each task's peak memory is measured
(:class:`Timed`) and summarised in the provenance.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import logging
import math
import os
import platform
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from radsurv.atomic import atomic_write_bytes
from radsurv.data.case import Case
from radsurv.data.labels import MODALITIES
from radsurv.data.sources import CaseSource
from radsurv.errors import ConfigError, FeatureExtractionError, RadsurvError
from radsurv.features.extract import (
    ExtractionConfig,
    PreparedCase,
    crop_padding,
    feature_columns,
    merge_notes,
    modality_features,
    prepare_case,
    row_from_values,
    shape_features,
)
from radsurv.features.params import DEFAULT_PRESET
from radsurv.features.preprocessing import DEFAULT_INTENSITY
from radsurv.features.store import PartStore, parts_dir

logger = logging.getLogger(__name__)

STATUS_COLUMNS = ("case_id", "status", "seconds", "error", "notes", "resumed")


# ------------------------------------------------------------------------------- case sources


@dataclass
class CaseRef:
    """How a worker gets one case: an in-memory Case, or the data layer's
    :class:`~radsurv.data.sources.CaseSource` of a manifest row (+ optional mask file), with
    what the manifest records about it (problem, checksum, shape, modality count)."""

    case_id: str
    case: Case | None = None
    source: CaseSource | None = None
    mask_path: str | None = None
    labels: np.ndarray | None = None
    problem: str | None = None
    checksum: str | None = None  # the manifest's content checksum of the case's files
    shape: tuple[int, ...] | None = None  # (z, y, x) as the manifest records it
    n_stored: int | None = None  # modalities stored for the case (all are read)


def input_key(ref: CaseRef) -> str:
    """Fingerprint of what a case's features are computed from (images and mask).

    A stored part whose key differs is recomputed on resume, so re-segmented masks or changed
    images never leave stale rows. Manifest cases use the manifest's content checksum; mask
    files their size and modification time; in-memory arrays a hash of their bytes.
    """
    digest = hashlib.sha256()
    if ref.case is not None:
        for name in sorted(ref.case.images):
            digest.update(name.encode() + ref.case.images[name].tobytes())
        if ref.case.labels is not None:
            digest.update(ref.case.labels.tobytes())
    else:
        digest.update(f"manifest:{ref.checksum or ''}".encode())
    if ref.labels is not None:
        digest.update(b"labels" + np.ascontiguousarray(ref.labels).tobytes())
    if ref.mask_path is not None:
        path = Path(ref.mask_path)
        stat = path.stat() if path.is_file() else None
        digest.update(f"mask:{path}:{stat and (stat.st_size, stat.st_mtime_ns)}".encode())
    return digest.hexdigest()[:16]


def load_ref(ref: CaseRef) -> tuple[Case, np.ndarray | None]:
    """Read the case (and its mask override) a reference points to; runs inside the worker."""
    if ref.problem:
        raise FeatureExtractionError(f"case {ref.case_id}: {ref.problem}")
    if ref.case is not None:
        case = ref.case
    elif ref.source is not None:
        case = ref.source.load()
    else:
        raise FeatureExtractionError(f"case {ref.case_id}: no case data and no manifest")
    labels = ref.labels
    if ref.mask_path is not None:
        labels = read_mask_file(case, ref.mask_path)
    return case, labels


def read_mask_file(case: Case, mask: str | Path | np.ndarray) -> np.ndarray:
    """Canonical labels of a mask file (or array) for ``case``'s grid; errors name the case."""
    if isinstance(mask, np.ndarray):
        return mask
    from radsurv.data.nifti import read_mask_nifti

    path = Path(mask)
    if not path.is_file():
        raise FeatureExtractionError(
            f"case {case.case_id}: mask file {path} not found; --masks DIR needs "
            f"DIR/{case.case_id}.nii.gz for every case"
        )
    try:
        return read_mask_nifti(path, case)
    except RadsurvError:
        raise
    except Exception as exc:  # noqa: BLE001 - SimpleITK/IO errors of a user file
        raise FeatureExtractionError(
            f"case {case.case_id}: cannot read mask {path}: {exc}"
        ) from exc


def _mask_for(case_id: str, masks: Any, manifest_row: Any = None, root: Path | None = None):
    """(mask_path, labels) for one case from the ``masks`` option."""
    if masks is None or (isinstance(masks, str) and masks == "ground-truth"):
        if manifest_row is not None and root is not None:
            value = str(manifest_row.get("mask", "") or "")
            if value:
                return str((root / value).resolve()), None
        return None, None
    if isinstance(masks, dict):
        if case_id not in masks:
            return None, None
        value = masks[case_id]
        if isinstance(value, np.ndarray):
            return None, value
        return str(value), None
    folder = Path(masks)
    return str(folder / f"{case_id}.nii.gz"), None


def _mask_source(masks: Any) -> str:
    if masks is None or (isinstance(masks, str) and masks == "ground-truth"):
        return "ground-truth"
    if isinstance(masks, dict):
        return "dict"
    return str(Path(masks).resolve())


def _shape(value: Any) -> tuple[int, ...] | None:
    try:
        shape = tuple(int(n) for n in str(value).split("x"))
    except ValueError:
        return None
    return shape if len(shape) == 3 else None


def case_refs(source: Any, masks: Any = "ground-truth") -> tuple[list[CaseRef], list[str] | None]:
    """Case references and the modalities every case has (None when unknown) from any source.

    ``source``: a manifest path, a :class:`~radsurv.data.manifest.Manifest`, a Case or a list of
    Cases.
    """
    if not isinstance(masks, str | dict) and masks is not None:
        masks = Path(masks)
    if isinstance(masks, Path) and not masks.is_dir():
        raise ConfigError(f"--masks {masks}: not a folder (give ground-truth or a folder)")
    if isinstance(source, str | Path):
        from radsurv.data.manifest import Manifest

        manifest = Manifest.read(Path(source))
    elif isinstance(source, Case):
        return case_refs([source], masks)
    elif hasattr(source, "load_case") and hasattr(source, "table"):
        manifest = source
        if manifest.path is None:
            raise ConfigError("an in-memory Manifest cannot be sent to workers; write it first")
    else:
        cases = list(source)
        if not all(isinstance(c, Case) for c in cases):
            raise ConfigError("cases must be a manifest path, a Manifest, a Case or Cases")
        refs = []
        for case in cases:
            mask_path, labels = _mask_for(case.case_id, masks)
            refs.append(CaseRef(case.case_id, case=case, mask_path=mask_path, labels=labels))
        common = [m for m in MODALITIES if all(m in c.images for c in cases)]
        return refs, common or None
    from radsurv.data.sources import manifest_sources

    refs = []
    sets = []
    for case_source in manifest_sources(manifest):  # picklable: workers read the file once
        case_id = case_source.case_id
        row = manifest.row(case_id)
        mask_path, labels = _mask_for(case_id, masks, row, manifest.root)
        problem = str(row.get("problem", "") or "") or None
        checksum = str(row.get("checksum", "") or "") or None
        mods = str(row.get("modalities", "") or "")
        shape = _shape(row.get("shape"))
        refs.append(
            CaseRef(
                case_id,
                source=case_source,
                mask_path=mask_path,
                labels=labels,
                problem=problem,
                checksum=checksum,
                shape=shape,
                n_stored=len(mods.split(",")) if mods else None,
            )
        )
        if mods and not problem:
            sets.append(set(mods.split(",")))
    common = [m for m in MODALITIES if sets and all(m in s for s in sets)]
    return refs, common or None


# ------------------------------------------------------------------------------ worker tasks


class Timed(tuple):
    """``(result, seconds)`` of a task, plus ``peak_rss``: the process's peak resident memory
    during the task in bytes (None where the platform cannot tell).

    A plain 2-tuple for unpacking (``result, seconds = timed``); the peak rides along as an
    attribute (pickles with it).
    """

    peak_rss: int | None = None


def _reset_peak_rss() -> bool:
    """Reset the process's resident-memory high-water mark (Linux ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def _peak_rss() -> int | None:
    """The process's peak resident memory (bytes) since the last reset (Linux VmHWM)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _timed(fn: Callable, *args: Any) -> Timed:
    """Run ``fn(*args)``; returns ``(result, seconds)`` with the peak memory (:class:`Timed`)."""
    reset = _reset_peak_rss()
    t0 = time.perf_counter()
    out = fn(*args)
    timed = Timed((out, time.perf_counter() - t0))
    timed.peak_rss = _peak_rss() if reset else None
    return timed


def _unwrap(prep: Any) -> PreparedCase:
    # on Dask a task receives task_prepare's own output, (PreparedCase, seconds)
    return prep[0] if isinstance(prep, tuple) else prep


def task_prepare(ref: CaseRef, config: ExtractionConfig) -> Timed:
    """Worker task: read one case, preprocess it and crop it to the tumour."""

    def run() -> PreparedCase:
        if ref.case is None and ref.shape is not None:  # before reading anything
            n_read = max(ref.n_stored or 0, len(config.modalities))
            check_memory(ref.case_id, ref.shape, n_read, config)
        case, labels = load_ref(ref)
        if ref.case is not None:  # in memory already
            check_memory(case.case_id, case.shape, 0, config)
        return prepare_case(case, config, labels)

    return _timed(run)


# Memory the prepare step needs on top of the loaded case, per voxel: per modality the float64
# preprocessed image and its temporaries; per case the region masks, their union and the labels.
# Measured on a 240x240x155 case with four modalities: 283 MiB above the loaded case (8.3 bytes
# per voxel and modality); the estimate (403 MiB there) keeps a margin. Reading a modality holds
# the file's image and its array (float32 NIfTI: 8 bytes per voxel; the Kaggle pack's float64
# slices are stacked into one array).
PREPARE_BYTES_PER_VOXEL_MODALITY = 10
PREPARE_BYTES_PER_VOXEL = 8
READ_BYTES_PER_VOXEL_MODALITY = 8
MiB = 2**20


class MemoryLimitError(FeatureExtractionError):
    """A case needs more memory than a worker's memory limit allows."""


def worker_memory_limit() -> int | None:
    """The memory limit (bytes) of the Dask worker running the calling task, else None."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):
        return None
    limit = getattr(getattr(worker, "memory_manager", None), "memory_limit", None)
    return int(limit) if limit else None


def _rss() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def prepare_bytes(shape: Sequence[int], n_modalities: int, n_read: int = 0) -> int:
    """Estimated memory (bytes) that reading ``n_read`` modalities of a case of ``shape``
    (z, y, x) and preparing ``n_modalities`` of them needs."""
    voxels = math.prod(int(n) for n in shape)
    per_voxel = (
        READ_BYTES_PER_VOXEL_MODALITY * n_read
        + PREPARE_BYTES_PER_VOXEL_MODALITY * n_modalities
        + PREPARE_BYTES_PER_VOXEL
    )
    return voxels * per_voxel


def check_memory(case_id: str, shape: Sequence[int], n_read: int, config: ExtractionConfig) -> None:
    """Fail a case clearly, before the worker runs out, when it cannot fit the memory limit.

    Only on a Dask worker with a memory limit, whose nanny restarts the worker once it uses the
    ``distributed.worker.memory.terminate`` fraction (default 95 %) of the limit. Manifest
    cases are checked before anything is read (the manifest records the shape); ``n_read``:
    modalities still to read.
    """
    limit = worker_memory_limit()
    if limit is None:
        return
    import dask

    fraction = dask.config.get("distributed.worker.memory.terminate", 0.95) or 1.0
    in_use = _rss()
    n = len(config.modalities)
    need = prepare_bytes(shape, n, n_read)
    if in_use + need > limit * fraction:
        size = "x".join(str(k) for k in shape)
        raise MemoryLimitError(
            f"case {case_id}: needs about {(in_use + need) / MiB:.0f} MiB ({size} voxels, "
            f"{n} modalities prepared in float64, on top of the {in_use / MiB:.0f} MiB the "
            f"worker holds), more than the worker memory limit of {limit / MiB:.0f} MiB allows "
            f"({fraction:.0%} of it); start the workers with a larger --memory-limit, or "
            "extract this case locally with --jobs"
        )


def task_summary(prepared: Timed) -> Timed:
    """Worker task: what the client needs of a prepared case (regions, notes), without images.

    On Dask the prepared case stays on the cluster as the result of its prepare task, where the
    shape and texture tasks take it from (and where it is recomputed if a worker is lost).
    """
    prep, seconds = prepared
    light = replace(prep, images={}, labels=np.zeros((0, 0, 0), dtype=np.uint8))
    out = Timed((light, seconds))
    out.peak_rss = getattr(prepared, "peak_rss", None)
    return out


def task_shape(prep: PreparedCase, config: ExtractionConfig, regions: Sequence[str]):
    """Worker task: shape features of some regions of a prepared case."""
    return _timed(shape_features, _unwrap(prep), config, regions)


def task_texture(
    prep: PreparedCase, config: ExtractionConfig, modality: str, regions: Sequence[str]
):
    """Worker task: non-shape features of one modality for some regions."""
    return _timed(modality_features, _unwrap(prep), config, modality, regions)


# ---------------------------------------------------------------------------------- backends


def _done_future(fn: Callable, *args: Any) -> cf.Future:
    future: cf.Future = cf.Future()
    try:
        future.set_result(fn(*args))
    except BaseException as exc:  # noqa: BLE001 - delivered through the future like a pool does
        if isinstance(exc, KeyboardInterrupt):
            raise
        future.set_exception(exc)
    return future


class ClusterLost(FeatureExtractionError):
    """The Dask scheduler went away or cannot be reached."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"Dask scheduler {address}: {reason}")
        self.address = address
        self.reason = reason


@dataclass(frozen=True)
class WorkerEvent:
    """A worker left (``lost``) or joined the cluster; ``keys``: tasks it ran or held."""

    kind: str
    worker: str
    keys: frozenset = frozenset()


class InlineBackend:
    """Runs each task at once in this process (``jobs=1``): no pickling, easy debugging."""

    workers = 1
    keeps_results = False

    def submit(self, fn: Callable, *args: Any, key: str | None = None) -> cf.Future:
        return _done_future(fn, *args)

    def share(self, obj: Any) -> Any:
        return obj

    def wait_any(self, futures: list) -> list:
        return [f for f in futures if f.done()]

    def events(self) -> list[WorkerEvent]:
        return []

    def close(self, abort: bool = False) -> None:
        pass


def _init_worker() -> None:
    """One BLAS/OpenMP thread per worker process: the pool already uses every core."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - comes with scikit-learn
        pass


class PoolBackend:
    """A local process pool.

    Workers come from a forkserver that has imported PyRadiomics once: cheap to start, and never
    forked from a parent whose ITK thread pool already ran (fork-unsafe). As with any
    non-fork start method, a calling *script* needs the ``if __name__ == "__main__":`` guard.
    """

    keeps_results = False

    def __init__(self, jobs: int) -> None:
        import multiprocessing as mp

        self.workers = jobs
        methods = mp.get_all_start_methods()
        method = "forkserver" if "forkserver" in methods else "spawn"
        ctx = mp.get_context(method)
        if method == "forkserver":
            preload = ["radiomics.featureextractor", "radsurv.features.runner"]
            ctx.set_forkserver_preload(preload)
        self.pool = cf.ProcessPoolExecutor(
            max_workers=jobs, mp_context=ctx, initializer=_init_worker
        )

    def submit(self, fn: Callable, *args: Any, key: str | None = None) -> cf.Future:
        return self.pool.submit(fn, *args)

    def share(self, obj: Any) -> Any:
        return obj

    def wait_any(self, futures: list) -> list:
        done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
        return list(done)

    def events(self) -> list[WorkerEvent]:
        return []

    def close(self, abort: bool = False) -> None:
        if abort:  # Ctrl-C: do not wait for running tasks; their cases are recomputed on rerun
            for proc in list(getattr(self.pool, "_processes", {}).values()):
                with contextlib.suppress(Exception):
                    proc.terminate()
        self.pool.shutdown(wait=not abort, cancel_futures=True)


class DaskBackend:
    """Tasks on a Dask distributed cluster: ``address`` (``tcp://host:8786``) or a Client.

    Every piece of work is a task with lineage (prepare, then shape and texture tasks that take
    the prepare task's result on the cluster); nothing is scattered, so the scheduler recomputes
    whatever a lost worker held. Workers leaving and joining are reported by :meth:`events`.
    """

    keeps_results = True
    poll_seconds = 0.5  # how often wait_any returns to report worker events (not a deadline)

    def __init__(self, address: Any) -> None:
        from distributed import Client

        if isinstance(address, Client):
            self.client, self.own = address, False
        else:
            try:
                self.client, self.own = Client(address, timeout="20s"), True
            except (OSError, TimeoutError) as exc:
                raise ClusterLost(str(address), f"unreachable ({exc})") from exc
        self.address = str(self.client.scheduler.address)
        self._events: deque[WorkerEvent] = deque()
        self.client.subscribe_topic("all", self._on_event)
        self.workers = 1
        self.memory_limits: dict[str, int] = {}
        self._refresh()

    def _refresh(self) -> None:
        try:
            info = self.client.scheduler_info(n_workers=-1)["workers"]
        except Exception:  # noqa: BLE001 - keep the last known figures
            return
        self.workers = max(1, sum(int(w.get("nthreads", 1)) for w in info.values()))
        self.memory_limits.update(
            {a: int(w["memory_limit"]) for a, w in info.items() if w.get("memory_limit")}
        )

    def _on_event(self, event: Any) -> None:
        # runs on the client's event loop, in the order of the scheduler's messages: a lost
        # worker's event arrives before the results of the tasks recomputed after it
        _, msg = event
        if not isinstance(msg, dict):
            return
        action = msg.get("action")
        if action == "remove-worker":
            keys = set(msg.get("processing-tasks", ())) | set(msg.get("lost-computed-tasks", ()))
            self._events.append(WorkerEvent("lost", str(msg.get("worker")), frozenset(keys)))
        elif action == "add-worker":
            self._events.append(WorkerEvent("joined", str(msg.get("worker"))))

    def events(self) -> list[WorkerEvent]:
        out = []
        while self._events:
            out.append(self._events.popleft())
        if out:
            self._refresh()
        return out

    def memory_limit(self) -> int | None:
        """The smallest worker memory limit seen (bytes), None when the workers have none."""
        return min(self.memory_limits.values()) if self.memory_limits else None

    def submit(self, fn: Callable, *args: Any, key: str | None = None) -> Any:
        if key is not None:
            return self.client.submit(fn, *args, key=key)
        return self.client.submit(fn, *args, pure=False)

    def share(self, obj: Any) -> Any:
        return obj  # never scatter: data on the cluster must come from tasks

    def wait_any(self, futures: list) -> list:
        from distributed import wait

        if self.client.status not in ("running", "newly-created"):
            raise ClusterLost(self.address, f"lost the connection (client {self.client.status})")
        try:
            done = list(
                wait(futures, timeout=self.poll_seconds, return_when="FIRST_COMPLETED").done
            )
        except TimeoutError:
            return []
        except Exception as exc:  # noqa: BLE001 - FuturesCancelledError, CommClosedError, ...
            if self.is_lost(exc):
                raise ClusterLost(self.address, "lost the connection") from exc
            raise
        # the runner cancels nothing it still waits for: a cancelled future means the client
        # lost the scheduler (Dask cancels every future then)
        if any(f.status == "cancelled" for f in done):
            raise ClusterLost(self.address, "lost the connection")
        return done

    def is_lost(self, exc: BaseException) -> bool:
        """Whether a task's or wait's error means the connection to the scheduler is gone.

        A task's own errors come back with their own type; Dask's cancellations and comm
        errors mean the client lost the scheduler (the runner cancels nothing it waits for).
        """
        from distributed.client import FuturesCancelledError
        from distributed.comm import CommClosedError

        lost = (FuturesCancelledError, CommClosedError, cf.CancelledError)
        return isinstance(exc, lost) or self.client.status not in ("running", "newly-created")

    def close(self, abort: bool = False) -> None:
        if self.own:
            with contextlib.suppress(Exception):
                self.client.close(timeout=5 if abort else 20)


def make_backend(jobs: int | None, dask: Any = None) -> Any:
    """The backend for ``--jobs`` / ``--dask``; jobs ``None`` means all cores."""
    if dask is not None:
        return DaskBackend(dask)
    jobs = jobs or os.cpu_count() or 1
    if jobs < 1:
        raise ConfigError(f"--jobs {jobs}: give a positive number of processes")
    return InlineBackend() if jobs == 1 else PoolBackend(jobs)


# ---------------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class ProgressEvent:
    """What the runner reports to a progress callback (``extract_features(progress=fn)``).

    ``kind``: ``"start"``, ``"case"`` (a case finished: ``case_id``, ``status``),
    ``"worker-lost"`` (``worker``; ``cases``: the cases whose tasks it ran or held, recomputed
    elsewhere), ``"worker-joined"`` (``worker``; ``rejoined``: it replaces a lost worker of the
    same host) or ``"end"``. Counts are over the cases this run computes (not resumed ones).
    """

    kind: str
    total: int
    done: int
    failed: int
    in_flight: int
    elapsed: float
    case_id: str | None = None
    status: str | None = None
    worker: str | None = None
    cases: tuple[str, ...] = ()
    rejoined: bool = False
    workers: int = 0
    lost: tuple[str, ...] = ()  # every worker lost so far
    joined: tuple[str, ...] = ()  # every worker that rejoined so far

    @property
    def rate(self) -> float:
        """Cases per minute so far."""
        return self.done / self.elapsed * 60 if self.elapsed > 0 else 0.0

    @property
    def eta(self) -> float:
        """Seconds left at the current rate (NaN before the first case)."""
        return (self.total - self.done) / self.rate * 60 if self.rate > 0 else math.nan

    def describe(self) -> str:
        """One log line."""
        counts = f"{self.done}/{self.total} done, {self.in_flight} in flight, {self.failed} failed"
        if self.kind == "case":
            return (
                f"case {self.case_id} {self.status} ({counts}; {self.rate:.1f} cases/min, "
                f"ETA {self.eta:.0f} s)"
            )
        if self.kind == "worker-lost":
            again = f"; recomputing {', '.join(self.cases)}" if self.cases else ""
            return f"lost worker {self.worker}{again} ({self.workers} threads left; {counts})"
        if self.kind == "worker-joined":
            how = "rejoined" if self.rejoined else "joined"
            return f"worker {self.worker} {how} ({self.workers} threads; {counts})"
        return f"{self.kind}: {counts}"


def log_progress(event: ProgressEvent) -> None:
    """The default progress report: one log line per finished case and per worker change."""
    if event.kind == "worker-lost":
        logger.warning("%s", event.describe())
    elif event.kind in ("case", "worker-joined"):
        logger.info("%s", event.describe())


class _Progress:
    """Counts of a run, reported as :class:`ProgressEvent` to a callback (or log lines)."""

    def __init__(self, total: int, callback: Callable[[ProgressEvent], None] | None) -> None:
        self.total = total
        self.done = 0
        self.failed = 0
        self.in_flight = 0
        self.workers = 0
        self.lost: list[str] = []
        self.joined: list[str] = []
        self.t0 = time.perf_counter()
        self.callback = callback or log_progress

    def emit(self, kind: str, **kw: Any) -> None:
        self.callback(
            ProgressEvent(
                kind,
                self.total,
                self.done,
                self.failed,
                self.in_flight,
                time.perf_counter() - self.t0,
                workers=self.workers,
                lost=tuple(self.lost),
                joined=tuple(self.joined),
                **kw,
            )
        )

    def advance(self, case_id: str, status: str) -> None:
        self.done += 1
        self.failed += status != "ok"
        self.emit("case", case_id=case_id, status=status)

    def worker(self, event: WorkerEvent, cases: Sequence[str]) -> None:
        if event.kind == "lost":
            self.lost.append(event.worker)
            self.emit("worker-lost", worker=event.worker, cases=tuple(cases))
            return
        host = _host(event.worker)
        rejoined = any(_host(w) == host for w in self.lost[len(self.joined) :])
        if rejoined:
            self.joined.append(event.worker)
        self.emit("worker-joined", worker=event.worker, rejoined=rejoined)

    def close(self) -> None:
        self.emit("end")


def _host(address: str) -> str:
    return address.rsplit(":", 1)[0]


# ------------------------------------------------------------------------------------ runner


@dataclass
class _Job:
    ref: CaseRef
    values: dict[str, float] = field(default_factory=dict)
    notes: list[list[str]] = field(default_factory=list)
    seconds: float = 0.0
    remaining: int = 0
    futures: list = field(default_factory=list)
    prepared: Any = None  # on Dask: the prepare task's future, which the other tasks take
    peaks: dict[str, int] = field(default_factory=dict)  # task kind -> peak RSS (bytes)
    lost: list[str] = field(default_factory=list)  # workers lost while they held its tasks


def _plan(prep: PreparedCase, config: ExtractionConfig) -> list[tuple[str, tuple]]:
    """Tasks of a prepared case: shape per region; texture per modality (x region if original)."""
    present = [r for r in config.regions if prep.region_voxels.get(r, 0) > 0]
    if not present:
        return []
    tasks: list[tuple[str, tuple]] = [("shape", (r,)) for r in present]
    image_types = set((config.params.get("imageType") or {"Original": {}}).keys())
    # derived images are shared by a modality's regions; original ones are cheap to split
    split = image_types <= {"Original"}
    for modality in config.modalities:
        if split:
            tasks += [("texture", (modality, (r,))) for r in present]
        else:
            tasks.append(("texture", (modality, tuple(present))))
    return tasks


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, RadsurvError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _killed_worker_text(cid: str, kind: str, exc: BaseException, limit: int | None) -> str:
    """The error of a case whose task kept killing workers (KilledWorker)."""
    tries = getattr(exc, "allowed_failures", None)
    worker = getattr(getattr(exc, "last_worker", None), "address", None)
    times = f"{tries + 1} workers" if isinstance(tries, int) else "workers"
    where = f" (last {worker})" if worker else ""
    limit_text = (
        f"the worker memory limit is {limit / MiB:.0f} MiB"
        if limit
        else "the workers have no memory limit"
    )
    return (
        f"case {cid}: {times} died while running its {kind} task{where}; {limit_text}, and "
        "a case larger than it kills its worker: start the workers with a larger "
        "--memory-limit (see the provenance's peak memory per task), or extract this case "
        "locally with --jobs"
    )


class RunInterrupted(FeatureExtractionError):
    """The run stopped before every case was done (Ctrl-C, lost or unreachable scheduler).

    Every finished case is already saved; rerunning the same command resumes. ``exit_code``:
    130 after Ctrl-C, 3 when the Dask scheduler was lost or unreachable.
    """

    def __init__(self, message: str, exit_code: int, saved: int, total: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.saved = saved
        self.total = total

    @classmethod
    def after(
        cls, exc: BaseException, saved: int, total: int, store: PartStore | None
    ) -> RunInterrupted:
        if isinstance(exc, _Interrupted):
            reason, code = exc.reason, exc.exit_code
        elif isinstance(exc, ClusterLost):
            reason, code = str(exc), 3
        else:
            reason, code = "interrupted", 130
        if store is None:
            tail = f"{saved}/{total} cases done, none saved (no output file given)"
        else:
            tail = (
                f"{saved}/{total} cases saved in {store.folder}; rerun the same command "
                "(on any cluster, or without --dask) to resume"
            )
        return cls(f"{reason}: {tail}", code, saved, total)


class _Interrupted(Exception):
    """Internal: the run stopped (Ctrl-C, lost scheduler) before every case was done."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


def run_cases(
    refs: Sequence[CaseRef],
    config: ExtractionConfig,
    columns: Sequence[str],
    backend: Any,
    store: PartStore | None,
    strict: bool = False,
    progress: bool | None | Callable[[ProgressEvent], None] = None,
    input_keys: dict[str, str] | None = None,
    sink: dict[str, dict[str, Any]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Compute every case of ``refs`` (none already stored); returns case_id -> record.

    A record holds ``case_id``, ``settings_hash``, ``status`` (ok/failed), ``seconds`` (task
    time summed), ``error``, ``notes``, ``peak_rss_mib`` (task kind -> the largest peak of the
    worker process during the case's tasks) and, for ok cases, ``values`` (column -> float).
    ``sink``, when given, receives each record as its case finishes (so a caller still has
    them when the run is interrupted).
    """
    records: dict[str, dict[str, Any]] = {} if sink is None else sink
    todo = deque(refs)
    jobs: dict[str, _Job] = {}
    futures: dict[Any, tuple[str, str]] = {}
    key_case: dict[str, str] = {}
    bar = _Progress(len(refs), progress if callable(progress) else None)
    bar.workers = backend.workers
    bar.emit("start")
    token = os.urandom(4).hex()
    remote = getattr(backend, "keeps_results", False)

    def submit(cid: str, kind: str, fn: Callable, *args: Any) -> Any:
        key = f"{kind}-{cid}-{token}-{len(key_case)}" if remote else None
        future = backend.submit(fn, *args, key=key)
        if key is not None:
            key_case[key] = cid
        return future

    def finish(cid: str, error: BaseException | None = None, text: str | None = None) -> None:
        job = jobs.pop(cid)
        notes = merge_notes(*job.notes)
        if job.lost:
            notes.append(f"recomputed after losing worker(s) {', '.join(job.lost)}")
        record: dict[str, Any] = {
            "case_id": cid,
            "settings_hash": config.settings_hash(),
            "input_key": (input_keys or {}).get(cid, ""),
            "status": "ok" if error is None else "failed",
            "seconds": round(job.seconds, 3),
            "error": "" if error is None else (text or _error_text(error)),
            "notes": notes,
            "peak_rss_mib": {k: round(v / MiB, 1) for k, v in job.peaks.items()},
        }
        if error is None:
            record["values"] = row_from_values(cid, job.values, columns)
            record["values"].pop("case_id")
            if store is not None:
                store.save(record)
        else:
            logger.error("case %s failed: %s", cid, record["error"])
            for f in job.futures:
                futures.pop(f, None)
                f.cancel()
        records[cid] = record
        bar.in_flight = len(jobs)
        bar.advance(cid, record["status"])
        if error is not None and strict:
            raise FeatureExtractionError(
                f"stopped at the first failure (--strict): {record['error']}"
            ) from error

    def on_worker_event(event: WorkerEvent) -> None:
        hit: list[str] = []
        if event.kind == "lost":
            hit = sorted({key_case[k] for k in event.keys if k in key_case} & set(jobs))
            for cid in hit:
                if event.worker not in jobs[cid].lost:
                    jobs[cid].lost.append(event.worker)
        bar.workers = backend.workers
        bar.in_flight = len(jobs)
        bar.worker(event, hit)

    try:
        while todo or futures:
            while todo and len(jobs) < backend.workers + 1:  # bounds memory: a few cases only
                ref = todo.popleft()
                cid = ref.case_id
                job = jobs[cid] = _Job(ref)
                first = submit(cid, "prepare", task_prepare, ref, config)
                if remote:  # the prepared case stays on the cluster; fetch a summary only
                    job.prepared = first
                    first = submit(cid, "summary", task_summary, first)
                futures[first] = (cid, "prepare")
                job.futures.append(first)
                bar.in_flight = len(jobs)
            done = backend.wait_any(list(futures))
            for event in backend.events():
                on_worker_event(event)
            for future in done:
                if future not in futures:  # its case failed meanwhile
                    continue
                cid, kind = futures.pop(future)
                job = jobs.get(cid)
                if job is None:  # the case already failed
                    continue
                try:
                    result = future.result()
                except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
                    if remote and backend.is_lost(exc):
                        raise ClusterLost(backend.address, "lost the connection") from exc
                    if type(exc).__name__ == "KilledWorker":
                        limit = getattr(backend, "memory_limit", lambda: None)()
                        finish(cid, exc, _killed_worker_text(cid, kind, exc, limit))
                    else:
                        finish(cid, exc)
                    continue
                payload, seconds = result
                job.seconds += seconds
                peak = getattr(result, "peak_rss", None)
                if peak is not None:
                    job.peaks[kind] = max(job.peaks.get(kind, 0), peak)
                if kind == "prepare":
                    prep: PreparedCase = payload
                    job.notes.append(prep.notes)
                    plan = _plan(prep, config)
                    if not plan:
                        finish(cid)
                        continue
                    shared = job.prepared if remote else backend.share(prep)
                    for task_kind, args in plan:
                        if task_kind == "shape":
                            f = submit(cid, "shape", task_shape, shared, config, args)
                        else:
                            f = submit(cid, "texture", task_texture, shared, config, *args)
                        futures[f] = (cid, task_kind)
                        job.futures.append(f)
                    job.remaining = len(plan)
                else:
                    values, notes = payload
                    job.values.update(values)
                    job.notes.append(notes)
                    job.remaining -= 1
                    if job.remaining == 0:
                        finish(cid)
    except KeyboardInterrupt as exc:
        raise _Interrupted("interrupted", 130) from exc
    except ClusterLost as exc:
        raise _Interrupted(str(exc), 3) from exc
    finally:
        for future in futures:
            future.cancel()
        bar.close()
    return records


# -------------------------------------------------------------------------------- public API


@dataclass
class FeatureResult:
    """What :func:`extract_features` returns.

    Attributes
    ----------
    features
        One row per successfully processed case: ``case_id``, then the feature columns.
    status
        One row per case: ``case_id``, ``status`` (ok/failed), ``seconds``, ``error``, ``notes``
        (e.g. empty regions), ``resumed`` (read from a previous run's parts).
    provenance
        Versions, full settings and their hash, column count, output paths.
    """

    features: pd.DataFrame
    status: pd.DataFrame
    provenance: dict[str, Any]

    @property
    def failed(self) -> list[str]:
        """Ids of the cases that failed."""
        return self.status.loc[self.status["status"] == "failed", "case_id"].tolist()

    def _repr_html_(self) -> str:
        n_ok = int((self.status["status"] == "ok").sum())
        head = (
            f"<p><b>FeatureResult</b>: {n_ok} case(s) ok, {len(self.failed)} failed, "
            f"{self.features.shape[1] - 1} feature columns, settings "
            f"<code>{self.provenance.get('settings_hash')}</code></p>"
        )
        return head + self.status.to_html(index=False)


def _versions() -> dict[str, str]:
    import SimpleITK as sitk
    from radiomics import __version__ as radiomics_version

    import radsurv

    out = {
        "radsurv": getattr(radsurv, "__version__", "unknown"),
        "pyradiomics": radiomics_version,
        "numpy": np.__version__,
        "SimpleITK": sitk.Version.VersionString(),
        "pandas": pd.__version__,
        "python": platform.python_version(),
    }
    try:
        import pywt

        out["PyWavelets"] = pywt.__version__
    except ImportError:  # pragma: no cover - a PyRadiomics dependency
        pass
    return out


@contextlib.contextmanager
def _performance_report(path: str | Path | None):
    """Dask's performance report of the block, written when it ends normally (needs bokeh)."""
    if path is None:
        yield
        return
    from distributed import performance_report

    report = performance_report(filename=str(path))
    report.__enter__()
    yield  # on an error or interruption the report is not written
    try:
        report.__exit__(None, None, None)
    except Exception as exc:  # noqa: BLE001 - the features are done; the report is extra
        logger.warning(
            "could not write Dask's performance report %s (%s: %s); it needs bokeh on the "
            "scheduler",
            path,
            type(exc).__name__,
            exc,
        )
    else:
        logger.info("Dask performance report: %s", path)


def _memory_summary(records: Any, limit: int | None) -> dict[str, Any]:
    """Peak memory per task kind over the cases computed in this run (for the provenance)."""
    peaks: dict[str, list[float]] = {}
    for record in records:
        for kind, mib in (record.get("peak_rss_mib") or {}).items():
            peaks.setdefault(kind, []).append(float(mib))
    return {
        "peak_rss_mib": {
            kind: {
                "max": max(values),
                "median": round(float(np.median(values)), 1),
                "cases": len(values),
            }
            for kind, values in sorted(peaks.items())
        },
        "worker_memory_limit_mib": None if limit is None else round(limit / MiB),
        "what": "peak resident memory of the worker process while a task of the case ran "
        "(Linux VmHWM, reset at each task start; empty where the platform cannot tell)",
    }


def sidecar_paths(output: Path) -> tuple[Path, Path]:
    """(status table, provenance JSON) beside an output: ``x.csv`` -> ``x.status.csv``, ..."""
    name = output.name
    for suffix in (".csv.gz", ".csv", ".parquet", ".pq"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return output.with_name(f"{name}.status.csv"), output.with_name(f"{name}.provenance.json")


def write_table(df: pd.DataFrame, path: Path) -> None:
    """CSV or Parquet by extension, atomically (floats written at full precision)."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")):
        import io

        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(path, buf.getvalue())
    elif name.endswith((".csv", ".csv.gz")):
        compression = "gzip" if name.endswith(".gz") else None
        data = df.to_csv(index=False, compression=None).encode()
        if compression:
            import gzip

            data = gzip.compress(data, mtime=0)
        atomic_write_bytes(path, data)
    else:
        raise ConfigError(f"output {path}: use a .csv, .csv.gz, .parquet or .pq file name")


def extract_features(
    cases: Any,
    *,
    params: str | dict[str, Any] = DEFAULT_PRESET,
    intensity: str = DEFAULT_INTENSITY,
    regions: Sequence[str] | None = None,
    modalities: Sequence[str] | None = None,
    masks: Any = "ground-truth",
    jobs: int | None = None,
    dask: Any = None,
    output: str | Path | None = None,
    force: bool = False,
    strict: bool = False,
    progress: bool | None | Callable[[ProgressEvent], None] = None,
    dask_report: str | Path | None = None,
) -> FeatureResult:
    """Radiomic features per case x subregion x modality, equal to PyRadiomics' own values.

    Parameters
    ----------
    cases
        A manifest path (``data_manifest.csv``), a Manifest read from a file, a Case or Cases.
    params
        ``"brats-original"`` (default), ``"brats-filters"``, a PyRadiomics YAML path or dict.
    intensity
        ``"zscore-brain"`` (z-score inside the non-zero voxels) or ``"as-is"``.
    regions, modalities
        Subsets of NCR, ED, ET, TC, WT and of flair, t1, t1gd, t2 (default: all regions; the
        modalities every case has).
    masks
        ``"ground-truth"``, a folder with ``<case_id>.nii.gz`` per case, or a dict case_id ->
        label array / file. With a manifest, a ``mask`` column (paths relative to the manifest)
        overrides the ground truth.
    jobs
        Worker processes (default: all cores; 1 runs in this process).
    dask
        A Dask scheduler address or ``distributed.Client``: run the tasks there instead.
    output
        Features file (.csv or .parquet). Enables resuming: finished cases go to
        ``OUT.parts/``; status and provenance are written beside it.
    force
        Recompute cases already stored for these settings.
    strict
        Stop at the first failing case (raises FeatureExtractionError).
    progress
        A callback that receives a :class:`ProgressEvent` at the start, after each case and
        when a worker is lost or joins (the CLI draws its bar from them); otherwise (True,
        False, None) one log line per case and per worker change (``logging``, INFO).
    dask_report
        With ``dask``: write Dask's own performance report (HTML) there.

    Examples
    --------
    >>> res = extract_features("data_manifest.csv", regions=["ET", "WT"], jobs=2,
    ...                        output="features.csv")  # doctest: +SKIP
    >>> res.features.filter(like="WT_original_shape").head()  # doctest: +SKIP
    """
    t0 = time.perf_counter()
    if dask_report is not None and dask is None:
        raise ConfigError("--dask-report FILE needs --dask ADDRESS (a Dask cluster to report on)")
    refs, common = case_refs(cases, masks)
    config = ExtractionConfig.create(
        params, intensity, regions, modalities or common or MODALITIES, _mask_source(masks)
    )
    columns = feature_columns(config)
    settings_hash = config.settings_hash()
    store = None
    out_path = None
    if output is not None:
        out_path = Path(output)
        if not out_path.name.lower().endswith((".csv", ".csv.gz", ".parquet", ".pq")):
            raise ConfigError(f"output {out_path}: use a .csv, .csv.gz, .parquet or .pq file name")
        store = PartStore(parts_dir(out_path), settings_hash)
        others = store.other_settings()
        if others:
            logger.info(
                "%d part(s) of other settings in %s are ignored (settings hash now %s)",
                len(others),
                store.folder,
                settings_hash,
            )
    records: dict[str, dict[str, Any]] = {}
    resumed: set[str] = set()
    input_keys: dict[str, str] = {}
    if store is not None:
        input_keys = {ref.case_id: input_key(ref) for ref in refs}
        for ref in refs:
            if force:
                store.remove(ref.case_id)
                continue
            record = store.load(ref.case_id)
            if record is not None and record.get("input_key") != input_keys[ref.case_id]:
                logger.info("case %s: its images or mask changed; recomputing", ref.case_id)
                record = None
            if record is not None:
                records[ref.case_id] = record
                resumed.add(ref.case_id)
    todo = [ref for ref in refs if ref.case_id not in records]
    new: dict[str, dict[str, Any]] = {}
    memory_limit = None
    logger.info(
        "extracting %d case(s) (%d already done), %d columns, settings %s",
        len(todo),
        len(resumed),
        len(columns),
        settings_hash,
    )
    if todo:
        backend = None
        try:
            backend = make_backend(jobs, dask)
            with _performance_report(dask_report):
                run_cases(todo, config, columns, backend, store, strict, progress, input_keys, new)
            memory_limit = getattr(backend, "memory_limit", lambda: None)()
        except (_Interrupted, ClusterLost, KeyboardInterrupt) as exc:
            if backend is not None:
                backend.close(abort=True)
                backend = None
            saved = len(resumed) + sum(r["status"] == "ok" for r in new.values())
            raise RunInterrupted.after(exc, saved, len(refs), store) from exc
        finally:
            if backend is not None:
                backend.close()
        records.update(new)
    memory = _memory_summary(new.values(), memory_limit)

    rows = []
    status_rows = []
    for ref in refs:
        record = records[ref.case_id]
        if record["status"] == "ok":
            rows.append({"case_id": ref.case_id, **record["values"]})
        status_rows.append(
            {
                "case_id": ref.case_id,
                "status": record["status"],
                "seconds": record["seconds"],
                "error": record["error"],
                "notes": "; ".join(record["notes"]),
                "resumed": ref.case_id in resumed,
            }
        )
    features = pd.DataFrame(rows, columns=["case_id", *columns])
    features[columns] = features[columns].astype(np.float64)
    status = pd.DataFrame(status_rows, columns=list(STATUS_COLUMNS))
    padding = crop_padding(config.params, (1.0, 1.0, 1.0))
    provenance: dict[str, Any] = {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "versions": _versions(),
        "settings": config.settings(),
        "settings_hash": settings_hash,
        "n_columns": len(columns),
        "n_cases": len(refs),
        "n_ok": int((status["status"] == "ok").sum()),
        "n_failed": int((status["status"] == "failed").sum()),
        "cropping": "off (settings need the whole image)"
        if padding is None
        else f"tumour bounding box + padding {padding[0]} voxels (z, y, x) at 1 mm",
        "wall_seconds": round(time.perf_counter() - t0, 3),
        "backend": "dask" if dask is not None else f"processes={jobs or os.cpu_count()}",
        "memory": memory,
    }
    if out_path is not None:
        status_path, prov_path = sidecar_paths(out_path)
        provenance["output"] = str(out_path)
        provenance["status"] = str(status_path)
        provenance["parts"] = str(parts_dir(out_path))
        write_table(features, out_path)
        write_table(status, status_path)
        atomic_write_bytes(prov_path, json.dumps(provenance, indent=2, default=str).encode())
    return FeatureResult(features, status, provenance)
