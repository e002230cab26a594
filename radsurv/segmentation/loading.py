"""Loading the training cases once: checked, prepared (memory / stream / mmap), in parallel.

Every case is loaded and checked once before training, whatever the loader; a case that fails
is reported and skipped, a configuration error stops training. With DataLoader workers (the
default on CUDA) the cases are loaded by worker processes in parallel, in case order, so the
result does not depend on the worker count.
"""

from __future__ import annotations

import functools
import logging
import multiprocessing
import tempfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

from torch.utils.data import DataLoader, Dataset

from radsurv.data.case import Case
from radsurv.errors import ConfigError, RadsurvError, SegmentationError
from radsurv.segmentation.config import SegmentationConfig
from radsurv.segmentation.datasets import prepare_volume
from radsurv.segmentation.sources import CaseLoader
from radsurv.segmentation.streaming import map_volume, stream_volume

logger = logging.getLogger(__name__)

LOADERS: tuple[str, ...] = ("memory", "stream", "mmap")
VolumeMaker = Callable[[Case, SegmentationConfig, int], Any]


def volume_makers(loader: str, stack: ExitStack) -> tuple[VolumeMaker, VolumeMaker]:
    """How training and validation cases are kept for ``loader``.

    ``memory``: prepared in memory. ``stream``: training cases as :class:`StreamVolume`
    (statistics only), validation cases in memory. ``mmap``: both written to a temporary
    folder (removed when ``stack`` closes) and memory-mapped.
    """
    if loader == "stream":
        return stream_volume, prepare_volume
    if loader == "mmap":
        folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="radsurv-train-")))
        logger.info("memory-mapped training copies in %s", folder)
        mapped = functools.partial(map_volume, folder=folder)
        return mapped, mapped
    return prepare_volume, prepare_volume


# Config fields a training option may set over the default (or a given) config.
OVERRIDABLE: tuple[str, ...] = (
    "modality_dropout",
    "context_slices",
    "ncr_intensity_aug",
    "spatial_aug",
)


def with_overrides(
    config: SegmentationConfig, overrides: Mapping[str, Any] | None
) -> SegmentationConfig:
    """``config`` with the :data:`OVERRIDABLE` fields of ``overrides`` that are not None."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    unknown = sorted(set(given) - set(OVERRIDABLE))
    if unknown:
        raise ConfigError(f"training options {unknown} cannot override the model config")
    changed = {k: v for k, v in given.items() if v != getattr(config, k)}
    return replace(config, **changed).validate() if changed else config


class _CaseJobs(Dataset):
    """Item i: (case id, ``make(case)`` or None, the error text or None) of loader i."""

    def __init__(
        self, loaders: list[CaseLoader], config: SegmentationConfig, seed: int, make: VolumeMaker
    ) -> None:
        self.loaders, self.config, self.seed, self.make = loaders, config, seed, make

    def __len__(self) -> int:
        return len(self.loaders)

    def __getitem__(self, i: int) -> tuple[str, Any, str | None, bool]:
        ld = self.loaders[i]
        try:
            return ld.case_id, self.make(ld.load(), self.config, self.seed), None, False
        except ConfigError as exc:  # stops training: raised again in the main process
            return ld.case_id, None, str(exc), True
        except RadsurvError as exc:
            return ld.case_id, None, str(exc), False


def _identity(item: Any) -> Any:
    return item


def load_volumes(
    loaders: list[CaseLoader],
    wanted: set[str] | None,
    config: SegmentationConfig | None,
    dim: str | None,
    modalities: list[str] | None,
    overrides: Mapping[str, Any] | None,
    device_type: str,
    seed: int,
    make: VolumeMaker = prepare_volume,
    workers: int = 0,
) -> tuple[dict[str, Any], dict[str, str], SegmentationConfig]:
    """Load and check the ``wanted`` cases (all when None) once; report those that fail.

    Parameters
    ----------
    loaders
        The cases.
    wanted
        Case ids to load; all when None.
    config
        The model config; None builds the default for ``dim`` and ``modalities`` (default the
        first loaded case's).
    overrides
        Training options that replace config fields (:func:`with_overrides`), e.g.
        ``{"modality_dropout": 0.25, "context_slices": 1}``; None values are ignored.
    make
        What is kept of each case: :func:`prepare_volume` (default), :func:`stream_volume`,
        or a :func:`map_volume` partial.
    workers
        Worker processes that load the cases in parallel (0: in this process). Needs the
        ``fork`` start method (Linux); elsewhere the cases load in this process.

    Returns
    -------
    (volumes, skipped, config)
        ``make(case, config, seed)`` of each usable case by case id, in loader order; the
        skipped cases with their reasons; the config.
    """
    todo = [ld for ld in loaders if wanted is None or ld.case_id in wanted]
    results: list[tuple[str, Any, str | None, bool]] = []
    while config is None and todo:  # the config needs the first loadable case
        ld = todo.pop(0)
        try:
            case = ld.load()
            mods = list(modalities) if modalities else case.modalities
            config = with_overrides(
                SegmentationConfig.default(dim or "2d", mods, device_type), overrides
            )
            results.append((ld.case_id, make(case, config, seed), None, False))
        except ConfigError:
            raise
        except RadsurvError as exc:
            results.append((ld.case_id, None, str(exc), False))
    if config is not None and todo:
        jobs = _CaseJobs(todo, config, seed, make)
        if workers > 0 and multiprocessing.get_start_method() == "fork" and len(todo) > 1:
            loader = DataLoader(
                jobs, batch_size=None, num_workers=min(workers, len(todo)), collate_fn=_identity
            )
            results.extend(loader)
        else:
            results.extend(jobs[i] for i in range(len(jobs)))
    volumes: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for case_id, volume, error, fatal in results:
        if fatal:
            raise ConfigError(error)
        if error is not None:
            skipped[case_id] = error
            logger.warning("skipping case %s: %s", case_id, error)
        else:
            volumes[case_id] = volume
    if not volumes or config is None:
        raise SegmentationError(
            f"no usable training case ({len(skipped)} skipped: "
            + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
            + ")"
        )
    return volumes, skipped, config
