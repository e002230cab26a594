"""Radiomic features per tumour subregion x MRI modality with PyRadiomics.

``extract_features(cases, ...) -> FeatureResult`` is the entry point (also ``radsurv
extract-features``); PyRadiomics is imported only when features are computed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from radsurv.features.extract import ExtractionConfig, extract_case, feature_columns
    from radsurv.features.params import PRESETS, load_params
    from radsurv.features.robustness import RobustnessResult, compute_robustness
    from radsurv.features.runner import FeatureResult, extract_features

__all__ = [
    "PRESETS",
    "ExtractionConfig",
    "FeatureResult",
    "RobustnessResult",
    "compute_robustness",
    "extract_case",
    "extract_features",
    "feature_columns",
    "load_params",
]

_WHERE = {
    "ExtractionConfig": "radsurv.features.extract",
    "extract_case": "radsurv.features.extract",
    "feature_columns": "radsurv.features.extract",
    "PRESETS": "radsurv.features.params",
    "load_params": "radsurv.features.params",
    "FeatureResult": "radsurv.features.runner",
    "extract_features": "radsurv.features.runner",
    "RobustnessResult": "radsurv.features.robustness",
    "compute_robustness": "radsurv.features.robustness",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'radsurv.features' has no attribute {name!r}")
