"""Small synthetic cases for the reference features, identical under any NumPy version.

The reference environment (NumPy 1.26) and the environment under test (NumPy 2) must build the
very same voxels, so nothing here uses a random generator whose stream may change between
versions: noise comes from a splitmix64 hash of the voxel index, in explicit uint64 arithmetic,
and textures from closed-form sines. Only NumPy is imported.

Each case is ``(images, labels, spacing)``: ``images`` maps modality -> (z, y, x) array in its
storage dtype, ``labels`` holds the canonical BraTS labels 0/1/2/4, ``spacing`` is (x, y, z) mm.
"""

from __future__ import annotations

import numpy as np

SHAPE = (28, 44, 44)  # (z, y, x)
SPACING = (1.0, 1.0, 2.0)  # (x, y, z), anisotropic on purpose
MODALITIES = ("flair", "t1gd")

_U = np.uint64


def hash_uniform(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Uniform [0, 1) values from a splitmix64 hash of (voxel index, seed)."""
    with np.errstate(over="ignore"):  # uint64 arithmetic wraps modulo 2**64 by design
        x = np.arange(int(np.prod(shape)), dtype=np.uint64) + _U(seed) * _U(0x9E3779B97F4A7C15)
        x = x ^ (x >> _U(30))
        x = x * _U(0xBF58476D1CE4E5B9)
        x = x ^ (x >> _U(27))
        x = x * _U(0x94D049BB133111EB)
        x = x ^ (x >> _U(31))
    return ((x >> _U(11)).astype(np.float64) * 2.0**-53).reshape(shape)


def _labels() -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in SHAPE), indexing="ij")
    # physical distances (mm) from the tumour centre; z voxels are 2 mm
    dz, dy, dx = (z - 13.0) * 2.0, y - 20.0, x - 24.0
    r = np.sqrt(dz**2 + dy**2 + dx**2)
    lobe = 1.5 * np.sin(0.45 * dx) * np.cos(0.35 * dy)  # irregular borders
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[r < 15.0 + lobe] = 2  # oedema
    labels[r < 9.0 + lobe] = 4  # enhancing rim
    labels[r < 5.5 + 0.5 * lobe] = 1  # necrotic core
    return labels


def _brain() -> np.ndarray:
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in SHAPE), indexing="ij")
    return ((z - 13.5) / 13.0) ** 2 + ((y - 21.5) / 20.5) ** 2 + ((x - 21.5) / 20.5) ** 2 < 1.0


# mean intensity per label (0 = normal brain, 1 NCR, 2 ED, 4 ET) for each modality
_TISSUE = {"flair": {0: 1.0, 1: 1.3, 2: 2.4, 4: 1.9}, "t1gd": {0: 1.0, 1: 0.6, 2: 0.9, 4: 2.6}}


def _intensity(modality: str, seed: int) -> np.ndarray:
    labels = _labels()
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float64) for n in SHAPE), indexing="ij")
    value = np.zeros(SHAPE)
    for label, mean in _TISSUE[modality].items():
        value[labels == label] = mean
    texture = 0.15 * np.sin(0.9 * x + 0.3 * z) * np.sin(0.7 * y - 0.2 * x)
    noise = 0.25 * (hash_uniform(SHAPE, seed) - 0.5)
    value = value * (1.0 + texture) + noise
    value[~_brain()] = 0.0
    return value


def float32_lattice_case() -> tuple[dict[str, np.ndarray], np.ndarray, tuple[float, ...]]:
    """float32 values on a 0.1 lattice: many voxels sit exactly on PyRadiomics' bin edges
    (bin width 0.1), where float32 and float64 bin edges disagree."""
    images = {}
    for i, modality in enumerate(MODALITIES):
        value = np.round(_intensity(modality, 11 + i) * 10.0) / 10.0
        images[modality] = value.astype(np.float32)
    return images, _labels(), SPACING


def int16_case() -> tuple[dict[str, np.ndarray], np.ndarray, tuple[float, ...]]:
    """int16 values in an MRI-like range (0..~1500), as scanners and TCIA files store them."""
    images = {}
    for i, modality in enumerate(MODALITIES):
        images[modality] = np.round(_intensity(modality, 21 + i) * 400.0).astype(np.int16)
    return images, _labels(), SPACING


CASES = {"synthetic-float32-lattice": float32_lattice_case, "synthetic-int16": int16_case}
