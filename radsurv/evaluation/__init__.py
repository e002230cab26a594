"""Evaluation: cross-validation plans, metrics and self-contained reports.

- :mod:`radsurv.evaluation.cv`: repeated stratified K-fold plans (``--cv 5x5``), parallel folds.
- :mod:`radsurv.evaluation.report`: HTML report rendering, embedded figures, metrics.json,
  bootstrap metric summaries (shared by survival and classification reports).
- :mod:`radsurv.evaluation.browser`: open a report in headless Chromium and check it.
- :mod:`radsurv.evaluation.survival_metrics`, :mod:`radsurv.evaluation.survival_report`:
  survival-specific metrics and the ``radsurv survival`` report.
"""
