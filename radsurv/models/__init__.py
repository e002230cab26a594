"""Models: scikit-learn-API survival estimators and the in-fold preprocessing transformers.

- :mod:`radsurv.models.preprocessing`: imputation, near-constant and correlation filters, k-best
  selection with a pluggable scorer, forced-in covariates (generic: survival or classification).
- :mod:`radsurv.models.survival`: Cox (lifelines, elastic net), XGBoost Cox + Breslow,
  XGBoost AFT, random survival forest; model factory and safe saving.
"""
