"""PyRadiomics parameter presets: find, load and validate them against PyRadiomics' own schema."""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import yaml

from radsurv.errors import ConfigError

logger = logging.getLogger(__name__)

PARAMS_DIR = Path(__file__).resolve().parent / "params"
PRESETS: tuple[str, ...] = ("brats-original", "brats-filters")
DEFAULT_PRESET = "brats-original"


class ParamsError(ConfigError):
    """A PyRadiomics parameter file is missing or does not follow PyRadiomics' schema."""


def preset_path(name: str) -> Path:
    """Path of a shipped preset, e.g. ``preset_path("brats-filters")``."""
    if name not in PRESETS:
        raise ParamsError(f"unknown preset {name!r}; choose from {', '.join(PRESETS)} or a .yaml")
    return PARAMS_DIR / f"{name}.yaml"


def validate_params(params: dict[str, Any], source: str = "parameters") -> dict[str, Any]:
    """Validate a parameter dictionary with PyRadiomics' own pykwalify schema.

    Returns the validated dictionary (PyRadiomics' schema fills nothing in, so it is the input).
    Raises :class:`ParamsError` naming ``source`` and PyRadiomics' complaint.
    """
    import pykwalify.core
    from pykwalify.errors import PyKwalifyException
    from radiomics import getParameterValidationFiles

    schema_file, schema_funcs = getParameterValidationFiles()
    core = pykwalify.core.Core(
        source_data=copy.deepcopy(params), schema_files=[schema_file], extensions=[schema_funcs]
    )
    try:
        return core.validate(raise_exception=True)
    except (PyKwalifyException, ValueError, TypeError) as exc:
        raise ParamsError(
            f"{source}: not a valid PyRadiomics parameter file ({exc}); "
            "see https://pyradiomics.readthedocs.io/en/latest/customization.html"
        ) from exc


def load_params(spec: str | Path | dict[str, Any] = DEFAULT_PRESET) -> tuple[str, dict[str, Any]]:
    """Load a preset name, a PyRadiomics YAML/JSON file or a parameter dict; validate it.

    Parameters
    ----------
    spec
        ``"brats-original"``, ``"brats-filters"``, a path to a PyRadiomics parameter file, or an
        already parsed dictionary with ``imageType`` / ``featureClass`` / ``setting``.

    Returns
    -------
    (name, params)
        A display name (preset name or file path) and the validated parameter dictionary.
    """
    if isinstance(spec, dict):
        return "dict", validate_params(spec, "parameter dict")
    text = str(spec)
    if text in PRESETS:
        path = preset_path(text)
        name = text
    else:
        path = Path(text)
        name = str(path)
        if not path.is_file():
            raise ParamsError(
                f"parameter file {path} not found; give an existing PyRadiomics .yaml or a "
                f"preset ({', '.join(PRESETS)})"
            )
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"parameter file {path}: cannot be read as YAML ({exc})") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ParamsError(f"parameter file {path}: expected a mapping at the top level")
    return name, validate_params(data, f"parameter file {path}")
