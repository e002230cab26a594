"""Train a segmentation model: DiceCE loss, augmentation, validation Dice, best/last checkpoints.

The same loop runs on CPU and CUDA. On CUDA it adds mixed precision, channels-last memory,
DataLoader workers with pinned memory and cuDNN autotuning; on CPU it sets torch's thread count
to the cores this process may use, trains channels-last (but for 3D in bfloat16), and trains
the 3D network under bfloat16 autocast where the CPU computes bfloat16 natively (see
:func:`~radsurv.segmentation.device.training_precision`; ``amp=False`` keeps float32). Given the
seed and the machine, CPU training is deterministic, and resuming from the last checkpoint
continues exactly where it stopped (samples are drawn from generators seeded by (seed, epoch,
index), not from a stream).
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from torch.utils.data import DataLoader, Dataset, Sampler

from radsurv.data.case import Case
from radsurv.errors import ConfigError, SegmentationError
from radsurv.segmentation.checkpoint import (
    CheckpointError,
    last_checkpoint_path,
    load_state,
    read_checkpoint,
    save_checkpoint,
)
from radsurv.segmentation.config import REGION_OUTPUTS, SegmentationConfig
from radsurv.segmentation.datasets import PreparedVolume, RandomPatchDataset
from radsurv.segmentation.device import (
    autocast_at,
    configure_cpu_threads,
    needs_grad_scaler,
    resolve_device,
    training_precision,
)
from radsurv.segmentation.ensemble import (
    check_folds,
    fold_assignment,
    member_path,
    write_ensemble_index,
)
from radsurv.segmentation.inference import infer_probabilities
from radsurv.segmentation.loading import (
    LOADERS,
    VolumeMaker,
    load_volumes,
    volume_makers,
    with_overrides,
)
from radsurv.segmentation.networks import build_network
from radsurv.segmentation.preprocess import labels_to_regions, regions_to_labels
from radsurv.segmentation.sources import Cases, case_loaders
from radsurv.segmentation.streaming import (
    StreamingSliceDataset,
    StreamVolume,
)

logger = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes
    ----------
    best_path, last_path
        Best checkpoint (highest validation Dice, or the last epoch without validation cases)
        and the resumable last checkpoint.
    best_metric, best_epoch
        Mean validation Dice over WT, TC, ET of the best checkpoint and its epoch (1-based).
    history
        One dict per epoch: loss, train Dice, validation Dice per region, seconds, lr, and the
        arithmetic of its steps (``precision``: ``"bf16"``, ``"fp16"`` or ``"fp32"``).
    stopped_by_time
        Whether ``time_limit`` ended training before ``epochs``.
    skipped
        Cases that could not be used, with the reason.
    """

    best_path: Path
    last_path: Path
    best_metric: float
    best_epoch: int
    history: list[dict[str, Any]]
    stopped_by_time: bool
    train_cases: list[str]
    val_cases: list[str]
    skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class EnsembleTrainResult:
    """What training a K-fold ensemble produced.

    Attributes
    ----------
    index_path
        The ensemble index file (``OUT``); :func:`~radsurv.segmentation.load_model` loads it.
    members
        One :class:`TrainResult` per fold, in fold order (member k validated on fold k).
    folds
        K.
    train_cases
        Every case the ensemble learnt from (the union of the folds).
    skipped
        Cases that could not be used, with the reason.
    """

    index_path: Path
    members: list[TrainResult]
    folds: int
    train_cases: list[str]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def member_paths(self) -> list[Path]:
        """The fold models' best checkpoints, ``model.fold1.pt`` ... ``model.foldK.pt``."""
        return [m.best_path for m in self.members]

    @property
    def best_path(self) -> Path:
        """The index file, so code written for a single model finds what to load."""
        return self.index_path

    @property
    def best_metric(self) -> float:
        """Mean over folds of each member's best validation Dice: a cross-validated estimate."""
        return float(np.mean([m.best_metric for m in self.members]))

    @property
    def stopped_by_time(self) -> bool:
        """Whether the time limit ended any member's training before its last epoch."""
        return any(m.stopped_by_time for m in self.members)


class RegionDiceCELoss(torch.nn.Module):
    """MONAI's DiceCELoss applied to each sigmoid output channel (WT, TC, ET) and averaged.

    Applied per channel so its cross-entropy term is the binary (sigmoid) one: given several
    channels DiceCELoss would use a softmax cross-entropy, wrong for nested regions.
    """

    def __init__(self) -> None:
        super().__init__()
        self.loss = DiceCELoss(sigmoid=True, batch=True)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        n = logits.shape[1]
        return sum(self.loss(logits[:, c : c + 1], target[:, c : c + 1]) for c in range(n)) / n


class EpochSampler(Sampler[int]):
    """Yields ``epoch * n + i`` so persistent DataLoader workers know the epoch of each sample."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.epoch = 0

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.epoch * self.n, (self.epoch + 1) * self.n))

    def __len__(self) -> int:
        return self.n


class _EpochIndexed:
    """Decodes ``epoch * n + i`` (see :class:`EpochSampler`) into the epoch and the index."""

    samples_per_epoch: int
    epoch: int

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.epoch, i = divmod(index, self.samples_per_epoch)
        return super().__getitem__(i)  # type: ignore[misc]


class _EpochDataset(_EpochIndexed, RandomPatchDataset):
    pass


class _EpochStream(_EpochIndexed, StreamingSliceDataset):
    pass


def _training_dataset(
    volumes: list[Any], config: SegmentationConfig, samples: int, seed: int
) -> Dataset:
    """Epoch-indexed samples over prepared (memory) or streamed volumes."""
    if volumes and isinstance(volumes[0], StreamVolume):
        return _EpochStream(volumes, config, samples, seed)
    return _EpochDataset(volumes, config, samples, seed)


def _split(ids: list[str], val_fraction: float, seed: int) -> tuple[list[str], list[str]]:
    """Random train/validation split; ``floor(val_fraction * n)`` validation cases."""
    if not 0.0 <= val_fraction < 1.0:
        raise SegmentationError(f"--val-fraction {val_fraction} must lie in [0, 1)")
    n_val = int(math.floor(val_fraction * len(ids)))
    order = np.random.default_rng(seed).permutation(len(ids))
    val = sorted(ids[i] for i in order[:n_val])
    return [i for i in ids if i not in val], val


def validate(
    network: torch.nn.Module,
    volumes: list[PreparedVolume],
    config: SegmentationConfig,
    device: torch.device,
    amp: bool = True,
) -> dict[str, float]:
    """Mean Dice per region (WT, TC, ET) over whole validation volumes (BraTS empty rule)."""
    metric = DiceMetric(include_background=True, reduction="mean_batch", ignore_empty=False)
    for vol in volumes:
        probs = infer_probabilities(network, vol.image.astype(np.float32), config, device, amp)
        pred = labels_to_regions(regions_to_labels(probs > config.threshold))
        target = torch.from_numpy(np.asarray(vol.regions, dtype=np.float32))  # memmaps too
        metric(torch.from_numpy(pred)[None].float(), target[None])
    scores = metric.aggregate().tolist()
    return dict(zip(REGION_OUTPUTS, (float(s) for s in scores), strict=True))


ProgressCallback = Callable[[int, int, str], None]


class _Progress:
    """Counts training steps and reports them as ``callback(done, total, phase)``.

    The library draws nothing: the CLI turns the callback into a bar (or log lines).
    """

    def __init__(self, total: int, callback: ProgressCallback | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback

    def advance(self, phase: str, steps: int = 1) -> None:
        self.done += steps
        if self.callback is not None and steps:
            self.callback(self.done, self.total, phase)

    def close(self) -> None:
        pass


def _defaults(config: SegmentationConfig, device: torch.device) -> tuple[int, int]:
    """(batch size, steps per epoch) for a config and device."""
    cuda = device.type == "cuda"
    if config.dim == "2d":
        return (32, 100) if cuda else (8, 50)
    return (2, 100) if cuda else (2, 20)


def _training_memory_format(
    config: SegmentationConfig, dev: torch.device, precision: str
) -> torch.memory_format:
    """Channels-last wherever it is faster: on CUDA, and on the CPU but for 3D in bfloat16.

    Measured on the CPU (``bench/bench_train_cpu.py``, one training step): channels-last made
    a 2D UNet step 1.13x and a float32 3D SegResNet step 1.96x faster, but a bfloat16 3D step
    2.0x slower than contiguous.
    """
    if config.dim == "2d":
        return torch.channels_last
    if dev.type == "cpu" and precision == "bf16":
        return torch.contiguous_format
    return torch.channels_last_3d


def _resumed_config(
    last_path: Path,
    config: SegmentationConfig | None,
    dim: str | None,
    modalities: list[str] | None,
    overrides: Mapping[str, Any],
) -> tuple[dict[str, Any], SegmentationConfig]:
    """Read a last checkpoint to resume from; refuse options that contradict it."""
    resumed, saved = read_checkpoint(last_path)
    if "optimizer" not in resumed:
        raise CheckpointError(
            f"--resume: {last_path} is not a resumable last checkpoint (no optimizer state)"
        )
    requested = config or SegmentationConfig.default(
        dim or saved.dim, modalities or saved.modalities
    )
    if (
        (dim and dim != saved.dim)
        or (modalities and list(modalities) != saved.modalities)
        or (config and config != saved)
    ):
        raise CheckpointError(
            f"--resume: {last_path} was trained with dim {saved.dim}, modalities "
            f"{saved.modalities}; the options ask for dim {requested.dim}, modalities "
            f"{requested.modalities}. Drop the options or train a new model."
        )
    for name, value in overrides.items():
        if value is not None and value != getattr(saved, name):
            what = name.replace("_", " ")
            raise CheckpointError(
                f"--resume: {last_path} was trained with {what} {getattr(saved, name)}; "
                f"the options ask for {value}. Drop the option or train a new model."
            )
    return resumed, saved


def _configure_device(device: str | torch.device) -> torch.device:
    dev = resolve_device(device)
    if dev.type == "cpu":
        n_threads = configure_cpu_threads()
        logger.info("training on CPU with %d threads", n_threads)
    else:
        torch.backends.cudnn.benchmark = True
        logger.info("training on %s (%s)", dev, torch.cuda.get_device_name(dev))
    return dev


@dataclass
class _Run:
    """The options every model of a run shares."""

    config: SegmentationConfig
    dev: torch.device
    epochs: int
    batch_size: int
    steps_per_epoch: int
    lr: float
    num_workers: int
    amp: bool
    seed: int
    time_limit: float | None
    bar: _Progress


def _fit(
    run: _Run,
    dataset: Dataset,
    val_vols: list[PreparedVolume],
    out: Path,
    *,
    train_ids: list[str],
    val_ids: list[str],
    skipped: dict[str, str],
    resumed: dict[str, Any] | None,
    t_begin: float,
    deadline: float,
    label: str = "",
) -> TrainResult:
    """Train one model on ``dataset`` (epoch-indexed samples), validating on ``val_vols``.

    The learning rate decays towards the end of the epochs or, with a time limit, towards
    ``deadline`` (seconds on the monotonic clock, measured from ``t_begin``).
    """
    config, dev, epochs = run.config, run.dev, run.epochs
    last_path = last_checkpoint_path(out)
    logger.info(
        "%s%d training and %d validation cases; modalities %s; dim %s",
        label,
        len(train_ids),
        len(val_ids),
        config.modalities,
        config.dim,
    )
    if not val_vols:
        logger.warning("no validation cases: the last epoch's model is kept as the best")
    torch.manual_seed(run.seed)
    network = build_network(config).to(dev)
    precision = training_precision(dev, run.amp, config.dim)
    memory_format = _training_memory_format(config, dev, precision)
    network.to(memory_format=memory_format)
    logger.info("%straining arithmetic: %s", label, precision)
    optimizer = torch.optim.AdamW(network.parameters(), lr=run.lr, weight_decay=1e-5)
    loss_fn = RegionDiceCELoss()
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(dev, run.amp) else None

    history: list[dict[str, Any]] = []
    best_metric, best_epoch, start_epoch = -1.0, 0, 0
    if resumed is not None:
        load_state(network, resumed["state_dict"], last_path)
        optimizer.load_state_dict(resumed["optimizer"])
        history = list(resumed["history"])
        best_metric = float(resumed["best_metric"])
        best_epoch = int(resumed.get("best_epoch", 0))
        start_epoch = int(resumed["epoch"])
        logger.info("%sresuming after epoch %d (best Dice %.4f)", label, start_epoch, best_metric)

    sampler = EpochSampler(len(dataset))
    workers = run.num_workers
    loader = DataLoader(
        dataset,
        batch_size=run.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        persistent_workers=workers > 0,
        drop_last=True,
    )
    val_seconds = 0.0
    stopped_by_time = False
    bar = run.bar

    def save(path: Path, epoch: int, with_optimizer: bool) -> None:
        payload = {
            "config": config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
            "epoch": epoch,
            "best_metric": best_metric,
            "best_epoch": best_epoch,
            "history": history,
            "train_cases": train_ids,
            "val_cases": val_ids,
            "seed": run.seed,
        }
        if with_optimizer:
            payload["optimizer"] = optimizer.state_dict()
        save_checkpoint(path, payload)

    for epoch in range(start_epoch, epochs):
        # the first epoch of a run always takes at least one step, so a model is saved
        if history and epoch > start_epoch and time.monotonic() + val_seconds > deadline:
            stopped_by_time = True
            break
        t_epoch = time.monotonic()
        # polynomial decay towards the end of the epochs or of the time budget
        frac = epoch / epochs
        if math.isfinite(deadline):
            frac = max(frac, (time.monotonic() - t_begin) / max(deadline - t_begin, 1e-9))
        lr_now = run.lr * (1 - min(frac, 0.99)) ** 0.9
        for group in optimizer.param_groups:
            group["lr"] = lr_now
        network.train()
        sampler.epoch = epoch
        train_dice = DiceMetric(include_background=True, reduction="mean_batch", ignore_empty=True)
        losses = []
        for x, y in loader:
            x = x.to(dev, non_blocking=True)
            y = y.to(dev, non_blocking=True)
            x = x.contiguous(memory_format=memory_format)
            with autocast_at(dev, precision):
                logits = network(x)
            loss = loss_fn(logits.float(), y)
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            losses.append(float(loss.detach()))
            train_dice((logits.detach() > 0).float(), y)
            bar.advance(label.rstrip(": ") or "steps")
            if time.monotonic() + val_seconds > deadline:
                stopped_by_time = True
                break
        tr = [float(v) for v in torch.nan_to_num(train_dice.aggregate(), nan=0.0).tolist()]
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": float(np.mean(losses)) if losses else float("nan"),
            "train_dice": float(np.mean(tr)),
            "lr": lr_now,
            "precision": precision,
        }
        if val_vols:
            t_val = time.monotonic()
            val = validate(network, val_vols, config, dev, run.amp)
            val_seconds = time.monotonic() - t_val
            record.update({f"val_dice_{r}": v for r, v in val.items()})
            metric = float(np.mean(list(val.values())))
        else:
            metric = record["train_dice"]
        record["val_dice"] = metric if val_vols else float("nan")
        record["seconds"] = round(time.monotonic() - t_epoch, 2)
        history.append(record)
        if not val_vols or metric > best_metric:
            best_metric, best_epoch = metric, epoch + 1
            save(out, epoch + 1, with_optimizer=False)
        save(last_path, epoch + 1, with_optimizer=True)
        val_text = (
            " val Dice " + " ".join(f"{r} {record[f'val_dice_{r}']:.3f}" for r in REGION_OUTPUTS)
            if val_vols
            else ""
        )
        msg = (
            f"{label}epoch {epoch + 1}/{epochs} loss {record['loss']:.4f} train Dice "
            f"{record['train_dice']:.3f}{val_text} ({record['seconds']:.1f} s)"
        )
        logger.info(msg)
        if stopped_by_time:
            break
    if stopped_by_time:
        logger.info("%stime limit reached; best epoch %d kept", label, best_epoch)
    if not out.exists():
        raise SegmentationError(
            f"training stopped before the first epoch finished (time limit {run.time_limit} "
            "min); allow more time"
        )
    return TrainResult(
        best_path=out,
        last_path=last_path,
        best_metric=best_metric,
        best_epoch=best_epoch,
        history=history,
        stopped_by_time=stopped_by_time,
        train_cases=list(train_ids),
        val_cases=list(val_ids),
        skipped=dict(skipped),
    )


def _finished_result(out: Path, payload: dict[str, Any], skipped: dict[str, str]) -> TrainResult:
    """The result of a fold that a previous run already trained to its last epoch."""
    return TrainResult(
        best_path=out,
        last_path=last_checkpoint_path(out),
        best_metric=float(payload["best_metric"]),
        best_epoch=int(payload.get("best_epoch", 0)),
        history=list(payload["history"]),
        stopped_by_time=False,
        train_cases=list(payload["train_cases"]),
        val_cases=list(payload["val_cases"]),
        skipped=dict(skipped),
    )


def train_segmentation(
    source: Cases,
    out: str | Path,
    *,
    config: SegmentationConfig | None = None,
    dim: str | None = None,
    modalities: list[str] | None = None,
    epochs: int = 100,
    time_limit: float | None = None,
    device: str | torch.device = "auto",
    val_fraction: float = 0.2,
    seed: int = 0,
    resume: bool = False,
    batch_size: int | None = None,
    steps_per_epoch: int | None = None,
    lr: float = 3e-3,
    num_workers: int | None = None,
    amp: bool = True,
    progress: ProgressCallback | bool | None = None,
    folds: int | None = None,
    modality_dropout: float | None = None,
    loader: str = "memory",
    context_slices: int | None = None,
    ncr_intensity_aug: float | None = None,
    spatial_aug: float | None = None,
) -> TrainResult | EnsembleTrainResult:
    """Train a MONAI segmentation model (or a K-fold ensemble) and save its checkpoints.

    Parameters
    ----------
    source
        A manifest, its path, or a list of :class:`~radsurv.data.case.Case` /
        ``(case_id, loader)`` pairs; every case needs a label mask.
    out
        Best checkpoint path (e.g. ``model.pt``); the resumable last one is ``model.last.pt``.
        With ``folds``, the ensemble index (see :mod:`radsurv.segmentation.ensemble`).
    config
        Full model configuration; default :meth:`SegmentationConfig.default` for ``dim`` and
        ``modalities``.
    dim
        ``"2d"`` (default) or ``"3d"``.
    modalities
        Input channels in order; default the first loaded case's modalities (a case lacking one
        is skipped and reported).
    epochs
        Number of epochs (``steps_per_epoch`` batches each).
    time_limit
        Minutes; training stops cleanly when spent (the learning rate decays towards the limit)
        and the best model so far is kept. With ``folds``, the budget of the whole ensemble:
        what is left of it is split evenly over the models still to train.
    device
        ``auto``, ``cuda`` or ``cpu``.
    val_fraction
        Fraction of cases (rounded down) held out for per-epoch validation Dice. With none,
        the last epoch's model is kept as best. Unused with ``folds``.
    seed
        Seeds the split (or the folds), the weights and every sample and augmentation.
    resume
        Continue from ``model.last.pt`` (same config, split and seed) up to ``epochs``. With
        ``folds``, continue each unfinished fold and train the folds not started yet.
    amp
        Mixed precision for the training steps: bfloat16 (float16 where bfloat16 is missing)
        autocast on CUDA; on the CPU bfloat16 autocast for 3D where the CPU computes it
        natively, else float32 (:func:`~radsurv.segmentation.device.training_precision`).
        Each epoch's history records the arithmetic used. ``False``: float32 throughout.
    progress
        Called as ``progress(done_steps, total_steps, phase)`` after each training step
        (``phase``: ``"steps"``, or ``"fold k/K"`` for an ensemble); the CLI draws a bar with
        it. The library itself draws nothing (``True``/``False``/``None``: no callback); each
        epoch's summary is logged.
    folds
        Train a K-fold ensemble (K >= 2, at most the number of usable cases): model k learns
        from every fold but k and is validated on fold k; the folds are assigned
        deterministically from ``seed``. Writes ``model.fold1.pt`` ... ``model.foldK.pt``
        (each with its ``.last.pt``) and the ensemble index at ``out``.
    modality_dropout
        Probability of zeroing each normalised input channel of a training sample (never all
        of them), so the model tolerates missing modalities; stored in the config. Default the
        config's value (0).
    loader
        ``"memory"`` (default): every training case is loaded, normalised and held in memory
        before the first step. ``"stream"``: 2D training on Kaggle-pack cases reads each
        sample's patch from its slice file inside the DataLoader workers, keeping only
        per-volume statistics in memory; validation cases are still held in memory.
        ``"mmap"``: the prepared cases are written to a temporary folder (~25 MB per case,
        removed afterwards) and memory-mapped; any format, 2D or 3D, the memory loader's
        samples exactly. See :mod:`radsurv.segmentation.streaming`.
    context_slices
        2D only: neighbouring axial slices on each side that enter with each slice (2.5D);
        stored in the config. Default the config's value (0, plain 2D, for a default config).
    ncr_intensity_aug
        Share of training samples whose necrotic / non-enhancing core gets a random mean
        intensity and contrast on each modality
        (:func:`~radsurv.segmentation.datasets.randomise_ncr_intensity`); stored in the config.
        Default the config's value.
    spatial_aug
        Share of training samples rotated in the axial plane and zoomed
        (:func:`~radsurv.segmentation.datasets.rotate_scale`); stored in the config. Default
        the config's value.

    Returns
    -------
    TrainResult or EnsembleTrainResult
        An :class:`EnsembleTrainResult` (whose ``member_paths`` list the fold models) when
        ``folds`` is given.

    Examples
    --------
    >>> result = train_segmentation("data_manifest.csv", "model.pt", folds=5)  # doctest: +SKIP
    >>> result.member_paths[0].name  # doctest: +SKIP
    'model.fold1.pt'
    """
    t_start = time.monotonic()
    out = Path(out)
    if dim is not None and dim not in ("2d", "3d"):
        raise ConfigError(f"--dim {dim!r} unknown; choose 2d or 3d")
    if epochs < 1:
        raise ConfigError(f"--epochs {epochs} must be at least 1")
    if folds is not None:
        check_folds(folds, max(folds, 2))  # the count of cases is checked once they are known
    if loader not in LOADERS:
        raise ConfigError(
            f"--loader {loader!r} unknown; choose {', '.join(LOADERS[:-1])} or {LOADERS[-1]}"
        )
    if loader == "stream" and "3d" in (dim, config.dim if config else None):
        raise ConfigError(
            "--loader stream draws 2D slices; a 3d model needs --loader memory or mmap"
        )
    overrides = {
        "modality_dropout": modality_dropout,
        "context_slices": context_slices,
        "ncr_intensity_aug": ncr_intensity_aug,
        "spatial_aug": spatial_aug,
    }
    if config is not None:
        config = with_overrides(config, overrides)
    dev = _configure_device(device)
    if num_workers is None:  # workers only pay off when a GPU waits; on CPU they compete
        num_workers = min(8, max(1, len(os.sched_getaffinity(0)) - 1)) if dev.type == "cuda" else 0
    deadline = t_start + time_limit * 60 if time_limit else math.inf

    def make_run(config: SegmentationConfig, seed: int, n_models: int) -> _Run:
        d_batch, d_steps = _defaults(config, dev)
        steps = steps_per_epoch or d_steps
        return _Run(
            config=config,
            dev=dev,
            epochs=epochs,
            batch_size=batch_size or d_batch,
            steps_per_epoch=steps,
            lr=lr,
            num_workers=num_workers,
            amp=amp,
            seed=seed,
            time_limit=time_limit,
            bar=_Progress(n_models * epochs * steps, progress if callable(progress) else None),
        )

    with ExitStack() as stack:
        makers = volume_makers(loader, stack)
        if folds is not None:
            return _train_folds(
                source,
                out,
                folds,
                config=config,
                dim=dim,
                modalities=modalities,
                overrides=overrides,
                seed=seed,
                resume=resume,
                makers=makers,
                workers=num_workers,
                make_run=make_run,
                dev=dev,
                epochs=epochs,
                deadline=deadline,
            )

        last_path = last_checkpoint_path(out)
        resumed: dict[str, Any] | None = None
        if resume:
            if not last_path.is_file():
                raise CheckpointError(
                    f"--resume: no last checkpoint {last_path} to resume from; "
                    "train without --resume"
                )
            resumed, config = _resumed_config(last_path, config, dim, modalities, overrides)
            seed = int(resumed["seed"])

        loaders = case_loaders(source)
        if not loaders:
            raise SegmentationError("no cases to train on: the manifest/case list is empty")
        if resumed is not None:
            train_ids, val_ids = list(resumed["train_cases"]), list(resumed["val_cases"])
            _check_known(train_ids + val_ids, {ld.case_id for ld in loaders})
        else:
            train_ids, val_ids = _split([ld.case_id for ld in loaders], val_fraction, seed)

        def make(case: Case, config: SegmentationConfig, seed: int) -> Any:
            return (makers[1] if case.case_id in val_ids else makers[0])(case, config, seed)

        # load and check every case once; a case that fails is reported and skipped
        volumes, skipped, config = load_volumes(
            loaders,
            set(train_ids + val_ids),
            config,
            dim,
            modalities,
            overrides,
            dev.type,
            seed,
            make,
            workers=num_workers,
        )
        train_vols = [v for cid, v in volumes.items() if cid not in val_ids]
        val_vols = [v for cid, v in volumes.items() if cid in val_ids]
        if not train_vols:
            raise SegmentationError(
                f"no usable training case ({len(skipped)} skipped: "
                + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
                + ")"
            )
        run = make_run(config, seed, 1)
        if resumed is not None:
            run.bar.advance("steps", steps=int(resumed["epoch"]) * run.steps_per_epoch)
        dataset = _training_dataset(train_vols, config, run.steps_per_epoch * run.batch_size, seed)
        try:
            return _fit(
                run,
                dataset,
                val_vols,
                out,
                train_ids=[v.case_id for v in train_vols],
                val_ids=[v.case_id for v in val_vols],
                skipped=skipped,
                resumed=resumed,
                t_begin=t_start,
                deadline=deadline,
            )
        finally:
            run.bar.close()


def _check_known(ids: list[str], known: set[str]) -> None:
    missing = sorted(set(ids) - known)
    if missing:
        raise CheckpointError(
            f"--resume: cases {missing} of the interrupted run are not in the manifest; "
            "resume with the same manifest"
        )


def _train_folds(
    source: Cases,
    out: Path,
    folds: int,
    *,
    config: SegmentationConfig | None,
    dim: str | None,
    modalities: list[str] | None,
    overrides: Mapping[str, Any],
    seed: int,
    resume: bool,
    makers: tuple[VolumeMaker, VolumeMaker],
    workers: int,
    make_run: Callable[[SegmentationConfig, int, int], _Run],
    dev: torch.device,
    epochs: int,
    deadline: float,
) -> EnsembleTrainResult:
    """Train (or resume) the K models of a fold ensemble and write its index at ``out``."""
    members = [member_path(out, k + 1) for k in range(folds)]
    resumed: dict[int, dict[str, Any]] = {}
    if resume:
        for k, member in enumerate(members):
            last = last_checkpoint_path(member)
            if not last.is_file():
                continue
            payload, saved = _resumed_config(last, config, dim, modalities, overrides)
            if resumed and saved != config:
                raise CheckpointError(
                    f"--resume: {last} has another config than the ensemble's other folds; "
                    "train the ensemble anew without --resume"
                )
            config, seed = saved, int(payload["seed"])
            resumed[k] = payload
        if not resumed:
            raise CheckpointError(
                f"--resume: no fold checkpoint {last_checkpoint_path(members[0]).name} ... "
                f"{last_checkpoint_path(members[-1]).name} in {out.parent} to resume from; "
                "train without --resume"
            )

    loaders = case_loaders(source)
    if not loaders:
        raise SegmentationError("no cases to train on: the manifest/case list is empty")
    check_folds(folds, len(loaders))
    for payload in resumed.values():
        _check_known(payload["train_cases"] + payload["val_cases"], {ld.case_id for ld in loaders})
    volumes, skipped, config = load_volumes(
        loaders,
        None,
        config,
        dim,
        modalities,
        overrides,
        dev.type,
        seed,
        makers[0],
        workers=workers,
    )
    usable = list(volumes)
    check_folds(folds, len(usable))
    assignment = fold_assignment(usable, folds, seed)
    finished = {
        k
        for k, payload in resumed.items()
        if int(payload["epoch"]) >= epochs and members[k].is_file()
    }
    run = make_run(config, seed, folds - len(finished))
    results: list[TrainResult] = []
    try:
        for k, member in enumerate(members):
            label = f"fold {k + 1}/{folds}: "
            payload = resumed.get(k)
            if k in finished:
                logger.info("%salready trained to its last epoch; kept", label)
                results.append(_finished_result(member, payload, skipped))
                continue
            if payload is not None:
                val_ids = [c for c in payload["val_cases"] if c in volumes]
                train_ids = [c for c in payload["train_cases"] if c in volumes]
                done = int(payload["epoch"]) * run.steps_per_epoch
                run.bar.advance(label.rstrip(": "), steps=done)
            else:
                val_ids = assignment[k]
                train_ids = [c for c in usable if c not in val_ids]
            # what is left of the budget, split evenly over the models still to train
            now = time.monotonic()
            to_train = sum(1 for j in range(k, folds) if j not in finished)
            fold_deadline = deadline
            if math.isfinite(deadline):
                fold_deadline = now + (deadline - now) / to_train
            dataset = _training_dataset(
                [volumes[c] for c in train_ids],
                config,
                run.steps_per_epoch * run.batch_size,
                seed,
            )
            if makers[1] is not makers[0]:  # streamed volumes hold no image: load the cases
                val_vols = list(
                    load_volumes(
                        loaders,
                        set(val_ids),
                        config,
                        dim,
                        modalities,
                        None,
                        dev.type,
                        seed,
                        makers[1],
                        workers=workers,
                    )[0].values()
                )
            else:
                val_vols = [volumes[c] for c in val_ids]
            results.append(
                _fit(
                    run,
                    dataset,
                    val_vols,
                    member,
                    train_ids=train_ids,
                    val_ids=val_ids,
                    skipped=skipped,
                    resumed=payload,
                    t_begin=now,
                    deadline=fold_deadline,
                    label=label,
                )
            )
    finally:
        run.bar.close()
    write_ensemble_index(out, members, config, usable, seed)
    logger.info(
        "wrote the %d-fold ensemble index %s (mean fold validation Dice %.4f)",
        folds,
        out,
        float(np.mean([r.best_metric for r in results])),
    )
    return EnsembleTrainResult(
        index_path=out, members=results, folds=folds, train_cases=usable, skipped=skipped
    )
