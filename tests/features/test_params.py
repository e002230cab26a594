"""Shipped presets follow PyRadiomics' own schema; bad parameter files are reported clearly."""

from __future__ import annotations

from pathlib import Path

import pykwalify.core
import pytest
import yaml
from radiomics import getParameterValidationFiles

from radsurv.features.params import PRESETS, ParamsError, load_params, preset_path


@pytest.mark.parametrize("name", PRESETS)
def test_preset_validates_against_pyradiomics_schema(name: str) -> None:
    schema_file, schema_funcs = getParameterValidationFiles()
    core = pykwalify.core.Core(
        source_file=str(preset_path(name)), schema_files=[schema_file], extensions=[schema_funcs]
    )
    params = core.validate(raise_exception=True)
    assert "Original" in params["imageType"]
    assert set(params["featureClass"]) >= {"shape", "firstorder", "glcm", "glrlm", "glszm"}
    assert params["setting"]["binWidth"] > 0


def test_filters_preset_adds_log_and_wavelet() -> None:
    data = yaml.safe_load(preset_path("brats-filters").read_text())
    assert data["imageType"]["LoG"]["sigma"] == [1.0, 2.0, 3.0]
    assert "Wavelet" in data["imageType"]
    original = yaml.safe_load(preset_path("brats-original").read_text())
    assert list(original["imageType"]) == ["Original"]


def test_user_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("setting:\n  binWidth: wide\n")
    with pytest.raises(ParamsError, match="bad.yaml"):
        load_params(bad)
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "missing.yaml")
    with pytest.raises(ParamsError, match="unknown preset"):
        preset_path("brats-nothing")
