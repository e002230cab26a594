"""Train a segmentation model: DiceCE loss, augmentation, validation Dice, best/last checkpoints.

The same loop runs on CPU and CUDA. On CUDA it adds mixed precision (autocast only there),
channels-last memory, DataLoader workers with pinned memory and cuDNN autotuning; on CPU it sets
torch's thread count to the cores this process may use. Given the seed, CPU training is
deterministic, and resuming from the last checkpoint continues exactly where it stopped (samples
are drawn from generators seeded by (seed, epoch, index), not from a stream).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from torch.utils.data import DataLoader, Sampler

from radsurv.errors import ConfigError, RadsurvError, SegmentationError
from radsurv.segmentation.checkpoint import (
    CheckpointError,
    last_checkpoint_path,
    load_state,
    read_checkpoint,
    save_checkpoint,
)
from radsurv.segmentation.config import REGION_OUTPUTS, SegmentationConfig
from radsurv.segmentation.datasets import PreparedVolume, RandomPatchDataset, prepare_volume
from radsurv.segmentation.device import (
    autocast,
    configure_cpu_threads,
    needs_grad_scaler,
    resolve_device,
)
from radsurv.segmentation.inference import infer_probabilities
from radsurv.segmentation.networks import build_network
from radsurv.segmentation.preprocess import labels_to_regions, regions_to_labels
from radsurv.segmentation.sources import CaseSource, case_loaders

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
        One dict per epoch: loss, train Dice, validation Dice per region, seconds, lr.
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


class _EpochDataset(RandomPatchDataset):
    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.epoch, i = divmod(index, self.samples_per_epoch)
        return super().__getitem__(i)


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
        metric(torch.from_numpy(pred)[None].float(), torch.from_numpy(vol.regions)[None].float())
    scores = metric.aggregate().tolist()
    return dict(zip(REGION_OUTPUTS, (float(s) for s in scores), strict=True))


class _Progress:
    """A rich progress bar on a terminal, log lines otherwise."""

    def __init__(self, total: int, enabled: bool | None) -> None:
        self.bar = None
        if enabled is None:
            enabled = sys.stderr.isatty()
        if enabled:
            try:
                from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

                self.bar = Progress(
                    TextColumn("{task.description}"),
                    BarColumn(),
                    TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(),
                    transient=False,
                )
                self.task = self.bar.add_task("training", total=total)
                self.bar.start()
            except ImportError:  # rich is optional for radsurv.segmentation
                self.bar = None

    def step(self, completed: int, text: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, completed=completed, description=text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _defaults(config: SegmentationConfig, device: torch.device) -> tuple[int, int]:
    """(batch size, steps per epoch) for a config and device."""
    cuda = device.type == "cuda"
    if config.dim == "2d":
        return (32, 100) if cuda else (8, 50)
    return (2, 100) if cuda else (1, 20)


def train_segmentation(
    source: CaseSource,
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
    progress: bool | None = None,
) -> TrainResult:
    """Train a MONAI segmentation model on labelled cases and save its checkpoints.

    Parameters
    ----------
    source
        A manifest, its path, or a list of :class:`~radsurv.data.case.Case` /
        ``(case_id, loader)`` pairs; every case needs a label mask.
    out
        Best checkpoint path (e.g. ``model.pt``); the resumable last one is ``model.last.pt``.
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
        and the best model so far is kept.
    device
        ``auto``, ``cuda`` or ``cpu``.
    val_fraction
        Fraction of cases (rounded down) held out for per-epoch validation Dice. With none,
        the last epoch's model is kept as best.
    seed
        Seeds the split, the weights and every sample and augmentation.
    resume
        Continue from ``model.last.pt`` (same config, split and seed) up to ``epochs``.

    Returns
    -------
    TrainResult
    """
    t_start = time.monotonic()
    out = Path(out)
    if dim is not None and dim not in ("2d", "3d"):
        raise ConfigError(f"--dim {dim!r} unknown; choose 2d or 3d")
    if epochs < 1:
        raise ConfigError(f"--epochs {epochs} must be at least 1")
    last_path = last_checkpoint_path(out)
    dev = resolve_device(device)
    if dev.type == "cpu":
        n_threads = configure_cpu_threads()
        logger.info("training on CPU with %d threads", n_threads)
    else:
        torch.backends.cudnn.benchmark = True
        logger.info("training on %s (%s)", dev, torch.cuda.get_device_name(dev))
    resumed: dict[str, Any] | None = None
    if resume:
        if not last_path.is_file():
            raise CheckpointError(
                f"--resume: no last checkpoint {last_path} to resume from; train without --resume"
            )
        resumed, saved_config = read_checkpoint(last_path)
        requested = config or SegmentationConfig.default(
            dim or saved_config.dim, modalities or saved_config.modalities
        )
        if (
            (dim and dim != saved_config.dim)
            or (modalities and list(modalities) != saved_config.modalities)
            or (config and config != saved_config)
        ):
            raise CheckpointError(
                f"--resume: {last_path} was trained with dim {saved_config.dim}, modalities "
                f"{saved_config.modalities}; the options ask for dim {requested.dim}, modalities "
                f"{requested.modalities}. Drop the options or train a new model."
            )
        config = saved_config
        seed = int(resumed["seed"])

    loaders = case_loaders(source)
    if not loaders:
        raise SegmentationError("no cases to train on: the manifest/case list is empty")
    if resumed is not None:
        train_ids, val_ids = list(resumed["train_cases"]), list(resumed["val_cases"])
        known = {ld.case_id for ld in loaders}
        missing = sorted(set(train_ids + val_ids) - known)
        if missing:
            raise CheckpointError(
                f"--resume: cases {missing} of the interrupted run are not in the manifest; "
                "resume with the same manifest"
            )
    else:
        train_ids, val_ids = _split([ld.case_id for ld in loaders], val_fraction, seed)

    # load and normalise every case once; a case that fails is reported and skipped
    train_vols: list[PreparedVolume] = []
    val_vols: list[PreparedVolume] = []
    skipped: dict[str, str] = {}
    for ld in loaders:
        if ld.case_id not in train_ids and ld.case_id not in val_ids:
            continue
        try:
            case = ld.load()
            if config is None:  # modalities default to those of the first case
                mods = list(modalities) if modalities else case.modalities
                config = SegmentationConfig.default(dim or "2d", mods, dev.type)
            vol = prepare_volume(case, config, seed)
        except ConfigError:
            raise
        except RadsurvError as exc:
            skipped[ld.case_id] = str(exc)
            logger.warning("skipping case %s: %s", ld.case_id, exc)
            continue
        (val_vols if ld.case_id in val_ids else train_vols).append(vol)
    if not train_vols:
        raise SegmentationError(
            f"no usable training case ({len(skipped)} skipped: "
            + "; ".join(f"{k}: {v}" for k, v in list(skipped.items())[:3])
            + ")"
        )
    assert config is not None
    train_ids = [v.case_id for v in train_vols]
    val_ids = [v.case_id for v in val_vols]
    logger.info(
        "%d training and %d validation cases; modalities %s; dim %s",
        len(train_ids),
        len(val_ids),
        config.modalities,
        config.dim,
    )
    if not val_vols:
        logger.warning("no validation cases: the last epoch's model is kept as the best")

    d_batch, d_steps = _defaults(config, dev)
    batch_size = batch_size or d_batch
    steps_per_epoch = steps_per_epoch or d_steps
    torch.manual_seed(seed)
    network = build_network(config).to(dev)
    if dev.type == "cuda":
        network.to(
            memory_format=torch.channels_last_3d if config.dim == "3d" else torch.channels_last
        )
    optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=1e-5)
    loss_fn = RegionDiceCELoss()
    scaler = torch.amp.GradScaler("cuda") if needs_grad_scaler(dev, amp) else None

    history: list[dict[str, Any]] = []
    best_metric, best_epoch, start_epoch = -1.0, 0, 0
    if resumed is not None:
        load_state(network, resumed["state_dict"], last_path)
        optimizer.load_state_dict(resumed["optimizer"])
        history = list(resumed["history"])
        best_metric = float(resumed["best_metric"])
        best_epoch = int(resumed.get("best_epoch", 0))
        start_epoch = int(resumed["epoch"])
        logger.info("resuming after epoch %d (best Dice %.4f)", start_epoch, best_metric)

    dataset = _EpochDataset(train_vols, config, steps_per_epoch * batch_size, seed)
    sampler = EpochSampler(len(dataset))
    if num_workers is None:  # workers only pay off when a GPU waits; on CPU they compete
        num_workers = min(8, max(1, len(os.sched_getaffinity(0)) - 1)) if dev.type == "cuda" else 0
    workers = num_workers
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        persistent_workers=workers > 0,
        drop_last=True,
    )
    deadline = t_start + time_limit * 60 if time_limit else math.inf
    val_seconds = 0.0
    stopped_by_time = False
    bar = _Progress(total=(epochs - start_epoch) * steps_per_epoch, enabled=progress)
    done_steps = 0
    memory_format = torch.channels_last_3d if config.dim == "3d" else torch.channels_last

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
            "seed": seed,
        }
        if with_optimizer:
            payload["optimizer"] = optimizer.state_dict()
        save_checkpoint(path, payload)

    try:
        for epoch in range(start_epoch, epochs):
            # the first epoch of a run always takes at least one step, so a model is saved
            if history and epoch > start_epoch and time.monotonic() + val_seconds > deadline:
                stopped_by_time = True
                break
            t_epoch = time.monotonic()
            # polynomial decay towards the end of the epochs or of the time budget
            frac = epoch / epochs
            if time_limit:
                frac = max(frac, (time.monotonic() - t_start) / (time_limit * 60))
            lr_now = lr * (1 - min(frac, 0.99)) ** 0.9
            for group in optimizer.param_groups:
                group["lr"] = lr_now
            network.train()
            sampler.epoch = epoch
            train_dice = DiceMetric(
                include_background=True, reduction="mean_batch", ignore_empty=True
            )
            losses = []
            for x, y in loader:
                x = x.to(dev, non_blocking=True)
                y = y.to(dev, non_blocking=True)
                if dev.type == "cuda":
                    x = x.contiguous(memory_format=memory_format)
                with autocast(dev, amp):
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
                done_steps += 1
                bar.step(done_steps, f"epoch {epoch + 1}/{epochs} loss {np.mean(losses):.3f}")
                if time.monotonic() + val_seconds > deadline:
                    stopped_by_time = True
                    break
            tr = [float(v) for v in torch.nan_to_num(train_dice.aggregate(), nan=0.0).tolist()]
            record: dict[str, Any] = {
                "epoch": epoch + 1,
                "loss": float(np.mean(losses)) if losses else float("nan"),
                "train_dice": float(np.mean(tr)),
                "lr": lr_now,
            }
            if val_vols:
                t_val = time.monotonic()
                val = validate(network, val_vols, config, dev, amp)
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
                " val Dice "
                + " ".join(f"{r} {record[f'val_dice_{r}']:.3f}" for r in REGION_OUTPUTS)
                if val_vols
                else ""
            )
            msg = (
                f"epoch {epoch + 1}/{epochs} loss {record['loss']:.4f} train Dice "
                f"{record['train_dice']:.3f}{val_text} ({record['seconds']:.1f} s)"
            )
            bar.step(done_steps, msg)
            logger.info(msg)
            if stopped_by_time:
                break
    finally:
        bar.close()
    if stopped_by_time:
        logger.info("time limit of %.1f min reached; best epoch %d kept", time_limit, best_epoch)
    if not out.exists():
        raise SegmentationError(
            f"training stopped before the first epoch finished (time limit {time_limit} min); "
            "allow more time"
        )
    return TrainResult(
        best_path=out,
        last_path=last_path,
        best_metric=best_metric,
        best_epoch=best_epoch,
        history=history,
        stopped_by_time=stopped_by_time,
        train_cases=train_ids,
        val_cases=val_ids,
        skipped=skipped,
    )
