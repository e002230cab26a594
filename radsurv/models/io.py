"""The one model-file format: skops (no pickle), one list of trusted type prefixes.

Every fitted pipeline radsurv writes (survival models, classifiers, baselines, locked models)
goes through :func:`save_estimator` and is read back by :func:`load_estimator`, which refuses
any type outside :data:`TRUSTED_PREFIXES` before building an object.

Example
-------
>>> save_estimator(pipeline, "models/cox.skops")          # doctest: +SKIP
>>> pipeline = load_estimator("models/cox.skops")         # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from radsurv.errors import ModelError

#: Module prefixes whose types a radsurv model file may hold.
TRUSTED_PREFIXES: tuple[str, ...] = (
    "radsurv.",
    "sklearn.",
    "sksurv.",
    "xgboost.",
    "numpy.",
    "builtins.",
)


def save_estimator(model: Any, path: str | Path) -> Path:
    """Save a fitted model or pipeline with ``skops.io``; parent folders are created."""
    import skops.io as sio

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sio.dump(model, path)
    return path


def load_estimator(path: str | Path, error: type[Exception] = ModelError) -> Any:
    """Load a file written by :func:`save_estimator`, trusting only :data:`TRUSTED_PREFIXES`.

    Raises
    ------
    ModelError (or ``error``)
        The file is missing, or references any other type (it is not loaded then).
    """
    import skops.io as sio

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: model file not found")
    untrusted = sio.get_untrusted_types(file=path)
    bad = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
    if bad:
        raise error(
            f"{path}: holds types outside radsurv/scikit-learn/scikit-survival/xgboost/numpy "
            f"({bad}); refusing to load"
        )
    return sio.load(path, trusted=untrusted)
