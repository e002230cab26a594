"""One study engine for survival and binary endpoints, and locked models for new patients.

- :mod:`radsurv.study.design`: clinical tables of any shape, covariate types and the one
  encoder, features (CSV or Parquet), the design matrix (and the feature-filter hook);
- :mod:`radsurv.study.engine`: fold plans, the fit/predict unit, baselines on the same folds,
  permutation tests, the paired comparison with a baseline, final refits;
- :mod:`radsurv.study.endpoints`: the survival and the binary endpoint definitions;
- :mod:`radsurv.study.study`: :class:`SurvivalStudy`, :class:`BinaryStudy`,
  :class:`StudyResult`;
- :mod:`radsurv.study.locked`: locked models (fit / predict / evaluate) and the one model-file
  format (:mod:`radsurv.study.model_io`).

Example
-------
>>> from radsurv.study import SurvivalStudy
>>> result = SurvivalStudy("survival_info.csv", covariates="age").run()   # doctest: +SKIP
>>> result.summary                                                       # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "BinaryStudy",
    "StudyResult",
    "SurvivalStudy",
    "evaluate_locked",
    "load_locked",
    "predict_locked",
]


def __getattr__(name: str) -> Any:  # lazy: `import radsurv.study` stays light
    if name in ("BinaryStudy", "StudyResult", "SurvivalStudy"):
        from radsurv.study import study

        return getattr(study, name)
    if name in ("evaluate_locked", "load_locked", "predict_locked"):
        from radsurv.study import locked

        return getattr(locked, name)
    raise AttributeError(f"module 'radsurv.study' has no attribute {name!r}")
