"""Whole-volume inference on the model's device: slices batched for 2D, sliding window for 3D.

The fast path (:func:`segment_arrays`) keeps a case on the device from the raw images to the
uint8 labels: on a GPU each raw voxel crosses to the device once (one copy per modality
straight into the device stack, no host-side stack), normalisation
(:func:`~radsurv.segmentation.preprocess.normalise_tensor`), the network, the sigmoid, the
average over ensemble members and mirror flips (TTA), the thresholds and the labels all run
there, and only the uint8 labels of the head's box come back. On the CPU, numpy normalises
(faster there than torch; same result and errors). On CUDA the network runs under
bfloat16 autocast (:func:`~radsurv.segmentation.device.autocast`) on channels-last tensors;
on the CPU in float32, 2D slices channels-last as well.

Precision: bfloat16 rather than float16 because it keeps float32's exponent range, so
un-normalised activations and large logits cannot overflow and no loss scaling is needed; its
shorter mantissa moves sigmoid probabilities by ~1e-2 at most, which changes a label only for
voxels whose probability lies within that of the threshold (the bench reports the agreement
with float32). GPUs without bfloat16 fall back to float16.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Sequence

import numpy as np
import torch
from monai.inferers import SlidingWindowInferer

from radsurv.data.case import exact_float_dtype
from radsurv.segmentation.config import SegmentationConfig
from radsurv.segmentation.device import autocast, without_cudnn_autotuning
from radsurv.segmentation.preprocess import (
    bounding_box,
    check_values,
    foreground_mask,
    normalise_tensor,
    normalise_with_box,
    regions_to_labels_tensor,
)

logger = logging.getLogger(__name__)


def _pad_to_multiple(x: torch.Tensor, axes: tuple[int, ...], k: int) -> torch.Tensor:
    """Zero-pad ``x`` at the end of ``axes`` up to multiples of ``k``."""
    pad: list[int] = []
    for axis in reversed(range(x.ndim)):  # F.pad lists the last axis first
        extra = (-x.shape[axis]) % k if axis in axes else 0
        pad += [0, extra]
    return torch.nn.functional.pad(x, pad) if any(pad) else x


def tta_flips(dim: str) -> list[tuple[int, ...]]:
    """Spatial axes of a (N, C, z, y, x) tensor flipped by each TTA pass (``()`` = identity).

    2D models (axial slices) are mirrored in-plane: none, y, x, y+x (4 passes). 3D models are
    mirrored along every subset of z, y, x (8 passes).

    Examples
    --------
    >>> tta_flips("2d")
    [(), (3,), (4,), (3, 4)]
    >>> len(tta_flips("3d"))
    8
    """
    axes = (3, 4) if dim == "2d" else (2, 3, 4)
    return [c for r in range(len(axes) + 1) for c in itertools.combinations(axes, r)]


def default_batch_size(config: SegmentationConfig, device: torch.device) -> int:
    """Slices (2D) or patches (3D) per network call: 128/4 on CUDA, 16/1 on the CPU."""
    if config.dim == "2d":
        return 128 if device.type == "cuda" else 16
    return 4 if device.type == "cuda" else 1


class GuardedCompiled(torch.nn.Module):
    """A network run through ``torch.compile``, falling back to eager if compiling fails.

    Compilation happens at the first call (and again for new input shapes); any error there
    is logged as a warning and the eager network is used from then on, so a missing compiler
    or an unsupported backend never stops a prediction.
    """

    def __init__(self, network: torch.nn.Module, backend: str | Callable = "inductor") -> None:
        super().__init__()
        self.eager = network
        self.failed = False
        try:
            compiled = torch.compile(network, backend=backend, dynamic=None)
        except Exception as exc:  # an unknown backend fails here already
            logger.warning("torch.compile unavailable (%s); running uncompiled", exc)
            compiled, self.failed = None, True
        object.__setattr__(self, "_compiled", compiled)  # not a submodule: no second state

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.failed:
            try:
                return self._compiled(x)
            except Exception as exc:
                logger.warning(
                    "torch.compile failed (%s: %s); running the network uncompiled",
                    type(exc).__name__,
                    str(exc).splitlines()[0] if str(exc) else "",
                )
                self.failed = True
        return self.eager(x)


def _networks(network: torch.nn.Module | Sequence[torch.nn.Module]) -> list[torch.nn.Module]:
    if isinstance(network, torch.nn.Module):
        return [network]
    nets = list(network)
    if not nets:
        raise ValueError("inference needs at least one network")
    return nets


def _slice_batch(x: torch.Tensor, start: int, stop: int, context: int) -> torch.Tensor:
    """Network input (stop - start, C * (2K + 1), y, x) of axial slices start .. stop - 1 of
    (1, C, z + 2K, y, x) (``x`` zero-padded by K = ``context`` slices at both ends of z).

    Each slice comes with its K neighbours on either side, modality-major, as training
    samples are built (:meth:`RandomPatchDataset._patch`).
    """
    if context == 0:
        return x[0, :, start:stop].transpose(0, 1)
    views = [x[0, :, start + d : stop + d] for d in range(2 * context + 1)]  # each (C, b, y, x)
    stacked = torch.stack(views, dim=1)  # (C, D, b, y, x)
    return stacked.permute(2, 0, 1, 3, 4).reshape(stop - start, -1, *x.shape[3:])


def _slice_probabilities(
    net: torch.nn.Module,
    x: torch.Tensor,
    batch: int,
    device: torch.device,
    amp: bool,
    context: int = 0,
) -> torch.Tensor:
    """Sigmoid (1, 3, z, y, x) of a 2D network over the axial slices of (1, C, z, y, x), each
    seen with ``context`` neighbouring slices on either side (zero beyond the volume)."""
    n_slices = x.shape[2]
    if context:
        x = torch.nn.functional.pad(x, (0, 0, 0, 0, context, context))
    parts = []
    for start in range(0, n_slices, batch):
        slices = _slice_batch(x, start, min(start + batch, n_slices), context)
        # channels-last on the CPU too: 1.27x faster there (bench/bench_train_cpu.py)
        slices = slices.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            logits = net(slices)
        parts.append(torch.sigmoid(logits.float()))
    return torch.cat(parts).transpose(0, 1)[None]


@torch.no_grad()
def probabilities_tensor(
    network: torch.nn.Module | Sequence[torch.nn.Module],
    image: torch.Tensor,
    config: SegmentationConfig,
    device: torch.device,
    amp: bool = True,
    tta: bool = False,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Mean sigmoid probabilities (3, z, y, x) float32 of a normalised (C, z, y, x) tensor.

    Runs where ``image`` lives (move it to ``device`` first). 2D models see every axial slice
    (with ``config.context_slices`` neighbours on either side), ``batch_size`` slices per
    call; 3D models use :class:`monai.inferers.SlidingWindowInferer` over
    ``config.patch_size`` patches (overlap 0.5, Gaussian weighting). The spatial size is
    zero-padded at the end to multiples of the network's down-sampling.

    Parameters
    ----------
    network
        One network, or several (an ensemble): their probabilities are averaged.
    tta
        Also average over mirror flips of the input (:func:`tta_flips`): 4 passes per network
        for 2D, 8 for 3D.
    batch_size
        Slices (2D) or patches (3D) per network call; default :func:`default_batch_size`.
    """
    nets = _networks(network)
    for net in nets:
        net.eval()
    batch = batch_size or default_batch_size(config, device)
    x = image[None].float()
    inferer = None
    if config.dim == "3d":
        inferer = SlidingWindowInferer(
            roi_size=tuple(config.patch_size),
            sw_batch_size=batch,
            overlap=0.5,
            mode="gaussian",
            progress=False,
        )
    flips = tta_flips(config.dim) if tta else [()]
    total: torch.Tensor | None = None
    # head boxes differ from case to case: cuDNN autotuning (benchmark mode, which training
    # switches on) would re-tune every new shape and cost more than it saves
    with without_cudnn_autotuning():
        for flip in flips:
            total = _accumulate(total, nets, x, flip, config, inferer, batch, device, amp)
    assert total is not None
    return total[0].div_(len(flips) * len(nets))


def _accumulate(
    total: torch.Tensor | None,
    nets: list[torch.nn.Module],
    x: torch.Tensor,
    flip: tuple[int, ...],
    config: SegmentationConfig,
    inferer: SlidingWindowInferer | None,
    batch: int,
    device: torch.device,
    amp: bool,
) -> torch.Tensor:
    """Add every network's probabilities for one mirror flip of ``x`` to ``total``."""
    spatial = (slice(None), slice(None), *(slice(0, n) for n in x.shape[2:]))
    xf = torch.flip(x, flip) if flip else x
    xf = _pad_to_multiple(xf, (3, 4) if config.dim == "2d" else (2, 3, 4), config.divisor)
    for net in nets:
        if inferer is None:
            probs = _slice_probabilities(net, xf, batch, device, amp, config.context_slices)
        else:
            with autocast(device, amp):
                probs = torch.sigmoid(inferer(xf, net).float())
        probs = probs[spatial]
        probs = torch.flip(probs, flip) if flip else probs
        total = probs.clone() if total is None else total.add_(probs)
    assert total is not None
    return total


@torch.no_grad()
def infer_probabilities(
    network: torch.nn.Module | Sequence[torch.nn.Module],
    image: np.ndarray,
    config: SegmentationConfig,
    device: torch.device,
    amp: bool = True,
    sw_batch_size: int | None = None,
    tta: bool = False,
) -> np.ndarray:
    """Sigmoid probabilities (3, z, y, x) float32 of a normalised (C, z, y, x) numpy image.

    Only the head's bounding box (+2 voxels) is run through the network (the rest is
    background, probability 0). See :func:`probabilities_tensor` for the rest; this is the
    numpy-in, numpy-out form validation during training uses.
    """
    out = np.zeros((config.out_channels, *image.shape[1:]), dtype=np.float32)
    box = bounding_box(foreground_mask(image), margin=2)
    crop = torch.from_numpy(np.ascontiguousarray(image[(slice(None), *box)], dtype=np.float32))
    probs = probabilities_tensor(
        network, crop.to(device), config, device, amp, tta=tta, batch_size=sw_batch_size
    )
    out[(slice(None), *box)] = probs.cpu().numpy()
    return out


def upload(arrays: Sequence[np.ndarray], device: torch.device) -> torch.Tensor:
    """Stack same-shape (z, y, x) arrays into one (C, z, y, x) tensor on ``device``.

    Each array is copied straight into its channel of the device tensor (one transfer of the
    raw voxels, no host-side stack), in its own float type (float32 for float32 and for
    integers of up to 16 bits, float64 otherwise; :func:`exact_float_dtype`).
    """
    dtype = exact_float_dtype(np.result_type(*arrays))
    out = torch.empty(
        (len(arrays), *arrays[0].shape), dtype=getattr(torch, dtype.name), device=device
    )
    for c, arr in enumerate(arrays):
        host = np.asarray(arr)
        if host.dtype != dtype or not host.flags.c_contiguous:
            host = np.ascontiguousarray(host, dtype=dtype)
        out[c].copy_(torch.from_numpy(host))
    return out


def normalise_arrays(
    arrays: Sequence[np.ndarray], names: list[str], case_id: str, device: torch.device
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Normalised (C, z, y, x) float32 tensor on ``device`` and the head's box (+2 voxels).

    On CUDA the raw images are uploaded (:func:`upload`) and checked and normalised there
    (:func:`~radsurv.segmentation.preprocess.normalise_tensor`); on the CPU numpy does the
    same work (:func:`~radsurv.segmentation.preprocess.normalise_with_box`), several times
    faster there than torch's elementwise kernels over float64, and the result is wrapped
    without a copy. Both raise the same errors and agree within float32 rounding.
    """
    if device.type != "cpu":
        return normalise_tensor(upload(arrays, device), case_id, names)
    check_values(case_id, names, list(arrays))
    image, box = normalise_with_box(np.stack(arrays), case_id, names)
    return torch.from_numpy(image).to(device), box


@torch.no_grad()
def box_probabilities(
    network: torch.nn.Module | Sequence[torch.nn.Module],
    arrays: Sequence[np.ndarray],
    config: SegmentationConfig,
    device: torch.device,
    amp: bool = True,
    tta: bool = False,
    names: Sequence[str] | None = None,
    case_id: str = "?",
    batch_size: int | None = None,
) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Sigmoid probabilities (3, z, y, x) float32 of the head's box (+2 voxels) and the box.

    The raw images are normalised on ``device`` (:func:`normalise_arrays`), cropped to the
    box, and a modality of ``config.modalities`` not in ``names`` becomes an all-zero
    normalised channel; the tensor stays on ``device``. Parameters as :func:`segment_arrays`.
    """
    names = list(names) if names is not None else list(config.modalities)
    present, box = normalise_arrays(arrays, names, case_id, device)
    present = present[(slice(None), *box)]
    if len(names) == len(config.modalities):
        image = present
    else:
        image = torch.zeros((len(config.modalities), *present.shape[1:]), device=device)
        for c, name in enumerate(names):
            image[config.modalities.index(name)] = present[c]
    return probabilities_tensor(network, image, config, device, amp, tta, batch_size), box


@torch.no_grad()
def segment_box(
    network: torch.nn.Module | Sequence[torch.nn.Module],
    arrays: Sequence[np.ndarray],
    config: SegmentationConfig,
    device: torch.device,
    amp: bool = True,
    tta: bool = False,
    names: Sequence[str] | None = None,
    case_id: str = "?",
    batch_size: int | None = None,
) -> tuple[np.ndarray, tuple[slice, ...]]:
    """Canonical labels of the head's box (+2 voxels) and the box; everything outside is 0.

    The work of :func:`segment_arrays`, without pasting the box into a whole volume (so
    post-processing can stay inside the box too): :func:`box_probabilities` thresholded at
    ``config.threshold``.
    """
    probs, box = box_probabilities(
        network, arrays, config, device, amp, tta, names, case_id, batch_size
    )
    labels = regions_to_labels_tensor(probs > config.threshold).cpu().numpy()  # one D2H copy
    return labels, box


def segment_arrays(
    network: torch.nn.Module | Sequence[torch.nn.Module],
    arrays: Sequence[np.ndarray],
    config: SegmentationConfig,
    device: torch.device,
    amp: bool = True,
    tta: bool = False,
    names: Sequence[str] | None = None,
    case_id: str = "?",
    batch_size: int | None = None,
) -> np.ndarray:
    """Canonical labels (uint8 (z, y, x), 0/1/2/4, before post-processing) of raw images.

    Parameters
    ----------
    network
        One network or an ensemble's members.
    arrays
        The raw (z, y, x) images of the modalities present, as stored (not normalised).
    config, device, amp
        The model's config, where it runs, and autocast on CUDA.
    tta
        Average over mirror flips (:func:`tta_flips`).
    names
        Their modality names; a modality of ``config.modalities`` not in ``names`` becomes an
        all-zero normalised channel (default: all present, in ``config.modalities`` order).
    case_id
        Named in the errors of bad volumes (:class:`BadVolumeError`).
    batch_size
        Slices (2D) or patches (3D) per network call (:func:`default_batch_size`).
    """
    labels, box = segment_box(network, arrays, config, device, amp, tta, names, case_id, batch_size)
    out = np.zeros(arrays[0].shape, dtype=np.uint8)
    out[box] = labels
    return out
