"""PyRadiomics features of one case, per subregion x modality, computed once and on a crop.

The work of one case splits into three kinds of pure functions, so a process pool or a Dask
cluster can run them:

1. :func:`prepare_case` (once per case): validate, preprocess every modality on the whole image
   (z-score statistics use the whole brain), then crop images and labels to the tumour's bounding
   box widened by the padding the enabled filters need (:func:`crop_padding`).
2. :func:`shape_features` (once per case): shape of each subregion, not once per modality.
3. :func:`modality_features` (per modality, optionally per region): every non-shape class on every
   enabled image type; derived images (LoG, wavelet) are computed once per modality and shared by
   the regions.

Each step follows ``RadiomicsFeatureExtractor.execute`` with PyRadiomics' own functions
(``loadImage``, ``checkMask``, ``resegmentMask``, the ``get*Image`` filters, ``cropToTumorMask``,
``computeShape``, ``computeFeatures``) on SimpleITK images made in memory, so values equal what
``execute`` returns on the uncropped image. Settings that read the whole image (``normalize``) are
applied in step 1 before cropping; settings and filters that cannot be cropped exactly (resampling,
Square/SquareRoot/Logarithm/Exponential/LBP) switch cropping off.

Exactness across environments: PyRadiomics 3.0.1 computes the lower bin edge as
``minimum - (minimum % binWidth)``. Under NumPy 1.26 a float32 minimum is promoted to float64
there; under NumPy 2 (NEP 50) it stays float32, the bin edges move and voxels change bins (up
to 9 % on GLCM features of a real BraTS case). radsurv therefore hands PyRadiomics only float64
images: the preprocessed image is float64 (:mod:`radsurv.features.preprocessing`), and every
derived image a filter returns as float32 is cast to float64 (:func:`as_float64`). SimpleITK's
LaplacianRecursiveGaussian (PyRadiomics' LoG) computes and returns float32 whatever the input
type, so LoG images are float32 in every environment; NumPy 1.26 bins them in float64, NumPy 2
in float32, which is why LoG features moved under NumPy 2 even for float64 input. The cast is
exact, so the values equal PyRadiomics under NumPy 1.26 (``tests/reference``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from radsurv.data.case import Case
from radsurv.data.labels import MODALITIES, REGIONS
from radsurv.errors import ConfigError, DataError, FeatureExtractionError
from radsurv.features.params import DEFAULT_PRESET, load_params
from radsurv.features.preprocessing import DEFAULT_INTENSITY, INTENSITY_MODES, preprocess
from radsurv.features.regions import padded_box, region_masks

logger = logging.getLogger(__name__)

# Bump when a change of this module changes feature values: it is part of the settings hash.
PIPELINE_VERSION = "2"  # 2: float64 images and filter outputs (NumPy-independent bins)
# LoG is a recursive (IIR) Gaussian: a crop edge perturbs values by ~exp(-d / (0.8 sigma)); at
# 20 sigma the change is far below float32 resolution (measured on real BraTS: 0 at 15 sigma).
LOG_PAD_SIGMAS = 20.0
CROP_SAFE_TYPES = ("Original", "LoG", "Wavelet", "Gradient")


class MaskError(DataError):
    """A case's mask is missing, unreadable or does not match the image grid."""


@dataclass(frozen=True)
class ExtractionConfig:
    """Everything that determines the feature values and columns of a run.

    Build it with :meth:`create`; :meth:`settings` and :meth:`settings_hash` describe it.
    """

    params: dict[str, Any]
    params_name: str = DEFAULT_PRESET
    intensity: str = DEFAULT_INTENSITY
    regions: tuple[str, ...] = REGIONS
    modalities: tuple[str, ...] = MODALITIES
    mask_source: str = "ground-truth"

    @classmethod
    def create(
        cls,
        params: str | dict[str, Any] = DEFAULT_PRESET,
        intensity: str = DEFAULT_INTENSITY,
        regions: Sequence[str] | None = None,
        modalities: Sequence[str] | None = None,
        mask_source: str = "ground-truth",
    ) -> ExtractionConfig:
        """Validate options and load the PyRadiomics parameters (preset name, file or dict)."""
        name, validated = load_params(params)
        if intensity not in INTENSITY_MODES:
            raise ConfigError(
                f"unknown --intensity {intensity!r}; choose from {', '.join(INTENSITY_MODES)}"
            )
        regions = tuple(regions) if regions else REGIONS
        bad = [r for r in regions if r not in REGIONS]
        if bad:
            raise ConfigError(f"unknown region(s) {bad}; choose from {', '.join(REGIONS)}")
        modalities = tuple(modalities) if modalities else MODALITIES
        setting = validated.get("setting") or {}
        if setting.get("resegmentShape"):
            raise ConfigError(
                f"{name}: resegmentShape makes shape depend on the modality; radsurv computes "
                "shape once per region, so remove resegmentShape"
            )
        return cls(validated, name, intensity, regions, modalities, mask_source)

    def settings(self) -> dict[str, Any]:
        """JSON-able description of the run's settings (goes to provenance and the hash)."""
        from radiomics import __version__ as radiomics_version

        return {
            "pyradiomics_params": self.params,
            "params_source": self.params_name,
            "intensity": self.intensity,
            "regions": list(self.regions),
            "modalities": list(self.modalities),
            "mask_source": self.mask_source,
            "pyradiomics_version": radiomics_version,
            "pipeline_version": PIPELINE_VERSION,
        }

    def settings_hash(self) -> str:
        """Short SHA-256 of :meth:`settings`; any change of settings changes it."""
        text = json.dumps(self.settings(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def key(self) -> str:
        """Cache key of the PyRadiomics part (parameters only)."""
        return json.dumps(self.params, sort_keys=True, default=str)


@dataclass
class PreparedCase:
    """A preprocessed, cropped case: what the feature tasks of one case need, and no more."""

    case_id: str
    images: dict[str, np.ndarray]
    labels: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...]
    region_voxels: dict[str, int]
    crop: tuple[tuple[int, int], ...] | None
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def sitk(self, array: np.ndarray) -> Any:
        """Wrap a (z, y, x) array of this (cropped) case as a SimpleITK image with its geometry."""
        import SimpleITK as sitk

        image = sitk.GetImageFromArray(array)
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(self.direction)
        return image

    def region_sitk(self, region: str) -> Any:
        """Binary (label 1) mask of one subregion as a SimpleITK image."""
        from radsurv.data.labels import region_mask

        return self.sitk(region_mask(self.labels, region).astype(np.uint8))


def _image_types(params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    types = params.get("imageType") or {"Original": {}}
    return {name: dict(kwargs or {}) for name, kwargs in types.items()}


def _settings(params: dict[str, Any]) -> dict[str, Any]:
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    settings = RadiomicsFeatureExtractor._getDefaultSettings()
    settings.update(params.get("setting") or {})
    settings.update(params.get("voxelSetting") or {})
    return settings


def crop_padding(
    params: dict[str, Any], spacing: Sequence[float]
) -> tuple[tuple[int, int, int], bool] | None:
    """Voxels of padding (z, y, x) a crop needs so that features equal the uncropped ones.

    Parameters
    ----------
    params
        Validated PyRadiomics parameters.
    spacing
        Voxel spacing in SimpleITK order (x, y, z), mm.

    Returns
    -------
    ((pad_z, pad_y, pad_x), full_when_clipped) or None
        None when these settings cannot be cropped exactly (resampling, or an image type whose
        values depend on the whole image); ``full_when_clipped`` is True for the wavelet, whose
        periodic boundary needs the whole axis once the crop reaches the image border.
    """
    settings = _settings(params)
    if settings.get("resampledPixelSpacing") is not None:
        return None
    spacing_zyx = np.asarray(spacing, dtype=float)[::-1]
    pad = np.ones(3, dtype=int)
    full_when_clipped = False
    if settings.get("preCrop"):
        pad = np.maximum(pad, int(settings.get("padDistance", 5)) + 1)
    for name, custom in _image_types(params).items():
        kwargs = {**settings, **custom}
        if name not in CROP_SAFE_TYPES:
            return None
        if name == "LoG":
            sigmas = [float(s) for s in kwargs.get("sigma", []) if float(s) > 0]
            if sigmas:
                need = np.ceil(LOG_PAD_SIGMAS * max(sigmas) / spacing_zyx).astype(int) + 1
                pad = np.maximum(pad, need)
        elif name == "Wavelet":
            import pywt

            wavelet = pywt.Wavelet(kwargs.get("wavelet", "coif1"))
            levels = int(kwargs.get("start_level", 0)) + int(kwargs.get("level", 1))
            # stationary wavelet: level j dilates the filter by 2**j; +2 for PyRadiomics' odd pad
            pad = np.maximum(pad, (wavelet.dec_len - 1) * (2**levels - 1) + 2)
            full_when_clipped = True
        elif name == "Gradient":
            pad = np.maximum(pad, 2)
    return (int(pad[0]), int(pad[1]), int(pad[2])), full_when_clipped


_EXTRACTORS: dict[str, tuple[Any, Any, dict[str, Any]]] = {}


class _DropSymmetricalGLCM(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("GLCM is symmetrical")


def _extractors(config: ExtractionConfig) -> tuple[Any, Any, dict[str, Any]]:
    """(texture extractor, shape extractor, settings), built once per process and reused."""
    key = config.key()
    if key not in _EXTRACTORS:
        import radiomics
        from radiomics.featureextractor import RadiomicsFeatureExtractor

        # PyRadiomics warns on every GLCM call; keep its stderr handler to errors and drop
        # that one message before it reaches the application's handlers
        radiomics.setVerbosity(logging.ERROR)
        logging.getLogger("radiomics").setLevel(logging.WARNING)  # no per-call INFO lines
        glcm_logger = logging.getLogger("radiomics.glcm")
        if not any(isinstance(f, _DropSymmetricalGLCM) for f in glcm_logger.filters):
            glcm_logger.addFilter(_DropSymmetricalGLCM())

        texture = RadiomicsFeatureExtractor(copy.deepcopy(config.params))
        # one binary mask per region (label 1); diagnostics are not features; normalize is
        # applied to the whole image in prepare_case, before cropping
        texture.settings.update(label=1, additionalInfo=False, normalize=False)
        shape = RadiomicsFeatureExtractor(copy.deepcopy(config.params))
        shape.settings.update(texture.settings)
        classes = texture.enabledFeatures
        texture.enabledFeatures = {k: v for k, v in classes.items() if not k.startswith("shape")}
        shape.enabledFeatures = {k: v for k, v in classes.items() if k.startswith("shape")}
        _EXTRACTORS[key] = (texture, shape, dict(texture.settings))
    return _EXTRACTORS[key]


def _case_with(case: Case, labels: np.ndarray, modalities: Sequence[str]) -> Case:
    return Case(
        case_id=case.case_id,
        images={m: case.images[m] for m in modalities},
        labels=labels,
        spacing=case.spacing,
        origin=case.origin,
        direction=case.direction,
    )


def prepare_case(
    case: Case, config: ExtractionConfig, labels: np.ndarray | None = None
) -> PreparedCase:
    """Validate one case, preprocess each modality on the whole image, crop to the tumour.

    Parameters
    ----------
    case
        The case (images (z, y, x), ground-truth labels when present, geometry).
    config
        The run's settings.
    labels
        A canonical label mask to use instead of the case's ground truth (predicted masks).

    Raises
    ------
    MaskError, DataError
        Missing or mismatching mask, missing modality, NaN voxels, non-canonical labels.
    """
    t0 = time.perf_counter()
    cid = case.case_id
    if labels is None:
        labels = case.labels
        if labels is None:
            raise MaskError(
                f"case {cid}: has no ground-truth label mask; pass --masks DIR with "
                f"DIR/{cid}.nii.gz or a manifest mask column"
            )
    labels = np.asarray(labels)
    missing = [m for m in config.modalities if m not in case.images]
    if missing:
        raise DataError(
            f"case {cid}: modality(ies) {missing} missing (has {case.modalities}); "
            "choose --modalities from those every case has"
        )
    if labels.shape != case.shape:
        raise MaskError(
            f"case {cid}: mask shape {labels.shape} does not match image shape {case.shape} "
            "(z, y, x); use masks made on this case's image grid"
        )
    _case_with(case, labels, config.modalities).validate()

    settings = _settings(config.params)
    images: dict[str, np.ndarray] = {}
    for modality in config.modalities:
        arr = preprocess(case.images[modality], config.intensity, f"case {cid} modality {modality}")
        if settings.get("normalize"):
            from radiomics import imageoperations

            normalized = imageoperations.normalizeImage(case.to_sitk(arr), **settings)
            arr = _array(normalized).astype(np.float64, copy=False)
        images[modality] = arr

    masks = region_masks(labels, config.regions)
    voxels = {region: int(np.count_nonzero(m)) for region, m in masks.items()}
    notes = [f"{r}: empty region (0 voxels)" for r, n in voxels.items() if n == 0]
    union = np.zeros(labels.shape, dtype=bool)
    for m in masks.values():
        union |= m
    padding = crop_padding(config.params, case.spacing)
    box = None
    if padding is None:
        notes.append("not cropped: these settings need the whole image")
    elif union.any():
        box = padded_box(union, padding[0], full_when_clipped=padding[1])
    else:
        box = (slice(0, 1),) * 3  # nothing to compute; keep the payload tiny
    origin = tuple(float(o) for o in case.origin)
    if box is not None:
        images = {m: np.ascontiguousarray(a[box]) for m, a in images.items()}
        labels = np.ascontiguousarray(labels[box])
        # physical position of the crop's first voxel: origin + direction @ (index * spacing)
        index_xyz = np.array([box[2].start, box[1].start, box[0].start], dtype=float)
        direction = np.asarray(case.direction, dtype=float).reshape(3, 3)
        shift = direction @ (index_xyz * np.asarray(case.spacing, dtype=float))
        origin = tuple(float(o) for o in np.asarray(origin) + shift)
    return PreparedCase(
        case_id=cid,
        images=images,
        labels=labels.astype(np.uint8, copy=False),
        spacing=tuple(float(s) for s in case.spacing),  # type: ignore[arg-type]
        origin=origin,  # type: ignore[arg-type]
        direction=tuple(float(d) for d in case.direction),
        region_voxels=voxels,
        crop=None if box is None else tuple((s.start, s.stop) for s in box),
        notes=notes,
        seconds=time.perf_counter() - t0,
    )


def _array(image: Any) -> np.ndarray:
    import SimpleITK as sitk

    return sitk.GetArrayFromImage(image)


def _value(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _load_and_check(extractor: Any, settings: dict[str, Any], image: Any, mask: Any) -> tuple:
    """PyRadiomics' execute() steps 1-2 (+ resegmentation): (image, mask, bbox, shape mask)."""
    from radiomics import imageoperations

    image, mask = extractor.loadImage(image, mask, None, **settings)
    bbox, corrected = imageoperations.checkMask(image, mask, **settings)
    if corrected is not None:
        mask = corrected
    shape_mask = mask
    if settings.get("resegmentRange") is not None:
        reseg = imageoperations.resegmentMask(image, mask, **settings)
        bbox, _ = imageoperations.checkMask(image, reseg, **settings)
        mask = reseg
    return image, mask, bbox, shape_mask


def as_float64(image: Any) -> Any:
    """A SimpleITK image as float64 (exact); float64 images are returned as they are.

    PyRadiomics bins a float32 image in float32 under NumPy 2 but in float64 under NumPy 1.26;
    in float64 both agree.
    """
    import SimpleITK as sitk

    if image.GetPixelID() == sitk.sitkFloat64:
        return image
    return sitk.Cast(image, sitk.sitkFloat64)


def _derived_images(extractor: Any, settings: dict[str, Any], image: Any, mask: Any) -> list:
    """Every enabled (derived image, type name, kwargs) of one image, as execute() makes them,
    each as float64 (:func:`as_float64`)."""
    from radiomics import imageoperations

    out = []
    for image_type, custom in extractor.enabledImagetypes.items():
        args = settings.copy()
        args.update(custom or {})
        generator = getattr(imageoperations, f"get{image_type}Image")
        out.extend((as_float64(d), name, kw) for d, name, kw in generator(image, mask, **args))
    return out


def _per_region_filters(settings: dict[str, Any], extractor: Any) -> bool:
    # these make the filtered image depend on the region's mask
    return bool(
        settings.get("resampledPixelSpacing") is not None
        or settings.get("preCrop")
        or "LBP3D" in extractor.enabledImagetypes
    )


def _texture(
    extractor: Any, settings: dict[str, Any], image: Any, masks: dict[str, Any], prefix: str
) -> tuple[dict[str, float], list[str]]:
    """Non-shape features of one image for several region masks, sharing the derived images."""
    from radiomics import imageoperations

    out: dict[str, float] = {}
    notes: list[str] = []
    if not extractor.enabledFeatures:
        return out, notes
    per_region = _per_region_filters(settings, extractor)
    shared: list | None = None
    for region, mask in masks.items():
        try:
            img, msk, bbox, _ = _load_and_check(extractor, settings, image, mask)
        except ValueError as exc:
            notes.append(f"{region}: {exc}")
            continue
        if per_region or shared is None:
            derived = _derived_images(extractor, settings, img, msk)
            if not per_region:
                shared = derived
        else:
            derived = shared
        for derived_image, type_name, kwargs in derived:
            d_img, d_msk = imageoperations.cropToTumorMask(derived_image, msk, bbox)
            feats = extractor.computeFeatures(d_img, d_msk, type_name, **kwargs)
            for key, value in feats.items():
                out[f"{prefix}{region}_{key}"] = _value(value)
    return out, notes


def _shape(
    extractor: Any, settings: dict[str, Any], image: Any, masks: dict[str, Any]
) -> tuple[dict[str, float], list[str]]:
    out: dict[str, float] = {}
    notes: list[str] = []
    if not extractor.enabledFeatures:
        return out, notes
    for region, mask in masks.items():
        try:
            img, _, bbox, shape_mask = _load_and_check(extractor, settings, image, mask)
        except ValueError as exc:
            notes.append(f"{region}: {exc}")
            continue
        for key, value in extractor.computeShape(img, shape_mask, bbox, **settings).items():
            out[f"{region}_{key}"] = _value(value)
    return out, notes


def _present_masks(prep: PreparedCase, regions: Sequence[str]) -> dict[str, Any]:
    return {r: prep.region_sitk(r) for r in regions if prep.region_voxels.get(r, 0) > 0}


def shape_features(
    prep: PreparedCase, config: ExtractionConfig, regions: Sequence[str] | None = None
) -> tuple[dict[str, float], list[str]]:
    """Shape features of non-empty regions, once per region: ``{region}_{key}`` -> value.

    Shape depends on the mask alone; the first modality only supplies the grid.
    """
    _, extractor, settings = _extractors(config)
    image = prep.sitk(prep.images[config.modalities[0]])
    return _shape(extractor, settings, image, _present_masks(prep, regions or config.regions))


def modality_features(
    prep: PreparedCase,
    config: ExtractionConfig,
    modality: str,
    regions: Sequence[str] | None = None,
) -> tuple[dict[str, float], list[str]]:
    """Every non-shape feature of one modality: ``{modality}_{region}_{key}`` -> value."""
    extractor, _, settings = _extractors(config)
    image = prep.sitk(prep.images[modality])
    masks = _present_masks(prep, regions or config.regions)
    return _texture(extractor, settings, image, masks, f"{modality}_")


_COLUMNS: dict[str, list[str]] = {}


def feature_columns(config: ExtractionConfig) -> list[str]:
    """The feature columns of a run, in order, derived once from the settings alone.

    PyRadiomics is run on a fixed synthetic probe (a textured 40^3 volume with a ball ROI, size
    limits lifted) to learn the exact keys these settings produce; the columns are then
    ``{region}_{shape key}`` for every region, then ``{modality}_{region}_{key}``.
    """
    key = json.dumps(config.settings(), sort_keys=True, default=str)
    if key not in _COLUMNS:
        texture, shape, settings = _extractors(config)
        probe_settings = {**settings, "minimumROIDimensions": 1, "minimumROISize": None}
        rng = np.random.default_rng(0)
        n = 40
        zz, yy, xx = np.mgrid[:n, :n, :n]
        ball = ((zz - n / 2) ** 2 + (yy - n / 2) ** 2 + (xx - n / 2) ** 2) <= 8**2
        array = (rng.normal(0.0, 1.0, (n, n, n)) + 2.0 * ball).astype(np.float32)
        case = Case("probe", {"probe": array})
        image = case.to_sitk(array)
        masks = {"R": case.to_sitk(ball.astype(np.uint8))}
        try:
            shape_keys, _ = _shape(shape, probe_settings, image, masks)
            texture_keys, _ = _texture(texture, probe_settings, image, masks, "")
        except Exception as exc:  # noqa: BLE001 - any PyRadiomics failure means bad settings
            raise ConfigError(
                f"{config.params_name}: PyRadiomics cannot run these settings ({exc})"
            ) from exc
        shape_names = [k[len("R_") :] for k in shape_keys]
        texture_names = [k[len("R_") :] for k in texture_keys]
        columns = [f"{r}_{k}" for r in config.regions for k in shape_names]
        columns += [
            f"{m}_{r}_{k}" for m in config.modalities for r in config.regions for k in texture_names
        ]
        _COLUMNS[key] = columns
    return list(_COLUMNS[key])


@dataclass
class CaseFeatures:
    """Features of one case (row without case_id), notes on regions, and seconds spent."""

    case_id: str
    values: dict[str, float]
    notes: list[str]
    seconds: float


def merge_notes(*groups: Sequence[str]) -> list[str]:
    """Concatenate note lists, dropping repeats (the same region note comes from many tasks)."""
    seen: dict[str, None] = {}
    for group in groups:
        for note in group:
            seen.setdefault(note, None)
    return list(seen)


def extract_case(
    case: Case, config: ExtractionConfig, labels: np.ndarray | None = None
) -> CaseFeatures:
    """All features of one case in this process (prepare, shape, then each modality)."""
    t0 = time.perf_counter()
    prep = prepare_case(case, config, labels)
    values, notes = shape_features(prep, config)
    all_notes = [prep.notes, notes]
    for modality in config.modalities:
        feats, mnotes = modality_features(prep, config, modality)
        values.update(feats)
        all_notes.append(mnotes)
    return CaseFeatures(case.case_id, values, merge_notes(*all_notes), time.perf_counter() - t0)


def row_from_values(case_id: str, values: dict[str, float], columns: Sequence[str]) -> dict:
    """One output row: ``case_id`` then every column (NaN where a region gave no value)."""
    extra = set(values) - set(columns)
    if extra:
        raise FeatureExtractionError(
            f"case {case_id}: PyRadiomics returned keys outside the column set, e.g. "
            f"{sorted(extra)[:3]}; report this with your parameter file"
        )
    return {"case_id": case_id, **{c: values.get(c, math.nan) for c in columns}}
