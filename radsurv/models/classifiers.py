"""Binary classifiers for pseudoprogression (or any 0/1 endpoint), scikit-learn API.

Three models, each with class-imbalance handling learnt from the training data it is fitted on
(so inside cross-validation the weights come from the training fold only):

- ``logreg``: elastic-net logistic regression (saga), ``class_weight="balanced"``;
- ``xgb``: :class:`BalancedXGBClassifier`, XGBoost with ``scale_pos_weight = negatives /
  positives`` of the training labels;
- ``rf``: random forest with ``class_weight="balanced"``.

:func:`make_classifier_pipeline` puts the shared in-fold preprocessing
(:func:`radsurv.models.preprocessing.make_preprocessor`: imputation, near-constant removal,
scaling, correlation filter, k-best selection by the ANOVA F score, forced-in covariates) in
front of the model, optionally inside a nested :class:`~sklearn.model_selection.GridSearchCV`.
Baselines: :func:`make_baseline_pipeline` (logistic regression on the covariates alone, or the
training prevalence when there are none).

Fitted pipelines are saved with :func:`save_classifier` as a skops file (no pickle: loading runs
no code from the file and accepts only the types in :data:`TRUSTED_TYPE_PREFIXES`).

Example
-------
>>> pipe = make_classifier_pipeline("logreg", seed=0, k=20)
>>> pipe.fit(X_train, y_train).predict_proba(X_test)[:, 1]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.utils.multiclass import unique_labels
from sklearn.utils.validation import check_is_fitted, validate_data

from radsurv.errors import ConfigError, ModelError
from radsurv.models.io import TRUSTED_PREFIXES
from radsurv.models.preprocessing import make_preprocessor

logger = logging.getLogger(__name__)

MODEL_NAMES: tuple[str, ...] = ("logreg", "xgb", "rf")

#: Hyper-parameter grids searched by the nested inner CV (keys address the pipeline's model).
PARAM_GRIDS: dict[str, dict[str, list[Any]]] = {
    "logreg": {"model__C": [0.05, 0.2, 1.0], "model__l1_ratio": [0.2, 0.8]},
    "xgb": {"model__max_depth": [2, 3], "model__n_estimators": [100, 300]},
    "rf": {"model__min_samples_leaf": [1, 4], "model__max_features": ["sqrt", 0.3]},
}

#: The one trusted-type list of every radsurv model file (:mod:`radsurv.models.io`).
TRUSTED_TYPE_PREFIXES = TRUSTED_PREFIXES


class ClassifierError(ModelError):
    """A classifier could not be built, fitted, saved or loaded."""


class BalancedXGBClassifier(ClassifierMixin, BaseEstimator):
    """XGBoost binary classifier that sets ``scale_pos_weight`` from its training labels.

    Parameters
    ----------
    n_estimators, max_depth, learning_rate, subsample, colsample_bytree, min_child_weight,
    reg_lambda
        Passed to :class:`xgboost.XGBClassifier`.
    balance
        Weight positives by ``negatives / positives`` of the labels passed to :meth:`fit`.
    random_state
        Seed of XGBoost's row/column sampling.
    n_jobs
        XGBoost threads (1 by default: parallelism comes from the folds).

    Attributes
    ----------
    model_
        The fitted :class:`xgboost.XGBClassifier`.
    scale_pos_weight_
        The weight used.
    feature_importances_
        Gain-based importances of the fitted booster.
    """

    def __init__(
        self,
        n_estimators: int = 200,
        max_depth: int = 3,
        learning_rate: float = 0.05,
        subsample: float = 0.8,
        colsample_bytree: float = 0.8,
        min_child_weight: float = 1.0,
        reg_lambda: float = 1.0,
        balance: bool = True,
        random_state: int = 0,
        n_jobs: int = 1,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.reg_lambda = reg_lambda
        self.balance = balance
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any) -> BalancedXGBClassifier:
        """Fit on 0/1 labels (other label values are encoded in sorted order)."""
        from xgboost import XGBClassifier

        X, y = validate_data(self, X, y, dtype=np.float64, ensure_all_finite="allow-nan")
        self.classes_ = unique_labels(y)
        if len(self.classes_) != 2:
            raise ClassifierError(
                f"BalancedXGBClassifier needs two classes in the training labels, got "
                f"{list(self.classes_)}"
            )
        y01 = (y == self.classes_[1]).astype(int)
        pos = int(y01.sum())
        self.scale_pos_weight_ = float((len(y01) - pos) / pos) if self.balance else 1.0
        self.model_ = XGBClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            learning_rate=self.learning_rate,
            subsample=self.subsample,
            colsample_bytree=self.colsample_bytree,
            min_child_weight=self.min_child_weight,
            reg_lambda=self.reg_lambda,
            scale_pos_weight=self.scale_pos_weight_,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
            objective="binary:logistic",
            eval_metric="logloss",
            tree_method="hist",
        )
        self.model_.fit(X, y01)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        check_is_fitted(self, "model_")
        X = validate_data(self, X, reset=False, dtype=np.float64, ensure_all_finite="allow-nan")
        return self.model_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        """The class with probability >= 0.5."""
        proba = self.predict_proba(X)
        return self.classes_[(proba[:, 1] >= 0.5).astype(int)]

    @property
    def feature_importances_(self) -> np.ndarray:
        """Gain importances of the booster (normalised to sum 1)."""
        check_is_fitted(self, "model_")
        return self.model_.feature_importances_

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags


def make_estimator(name: str, *, seed: int = 0) -> BaseEstimator:
    """The bare classifier called ``name`` (``logreg``, ``xgb`` or ``rf``), imbalance-aware.

    Parameters
    ----------
    name
        One of :data:`MODEL_NAMES`.
    seed
        Random state of the estimator.
    """
    if name == "logreg":
        return LogisticRegression(
            solver="saga",
            l1_ratio=0.5,
            C=0.1,  # strong shrinkage: radiomics has many more features than cases
            class_weight="balanced",
            max_iter=5000,
            random_state=seed,
        )
    if name == "xgb":
        return BalancedXGBClassifier(random_state=seed)
    if name == "rf":
        return RandomForestClassifier(
            n_estimators=200,
            min_samples_leaf=2,
            max_features="sqrt",
            class_weight="balanced",  # per-tree reweighting costs ~2x the fit time
            random_state=seed,
            n_jobs=1,
        )
    raise ConfigError(f"unknown classifier {name!r}; choose from {', '.join(MODEL_NAMES)}")


def make_classifier_pipeline(
    name: str,
    *,
    seed: int = 0,
    k: int | None = 20,
    corr_threshold: float | None = 0.95,
    forced: Sequence[str] = (),
    nested: bool = False,
    inner_folds: int = 3,
) -> BaseEstimator:
    """In-fold preprocessing + the classifier ``name``, optionally tuned by a nested inner CV.

    Parameters
    ----------
    name
        One of :data:`MODEL_NAMES`.
    seed
        Seeds the model and the inner folds.
    k
        Features kept by the ANOVA-F k-best selection (forced covariates come on top);
        ``None`` keeps all.
    corr_threshold
        |r| above which correlated features are dropped; ``None`` keeps them.
    forced
        Covariate column names kept by every filter (e.g. ``age``).
    nested
        Wrap the pipeline in a :class:`~sklearn.model_selection.GridSearchCV` over
        :data:`PARAM_GRIDS` scored by ROC AUC on ``inner_folds`` stratified folds of the
        training data.
    inner_folds
        Folds of the inner CV.

    Returns
    -------
    sklearn estimator
        A :class:`~sklearn.pipeline.Pipeline` (or a GridSearchCV around one).
    """
    pipe = Pipeline(
        [
            (
                "prep",
                make_preprocessor(
                    k=k, scorer=f_classif, corr_threshold=corr_threshold, forced=list(forced)
                ),
            ),
            ("model", make_estimator(name, seed=seed)),
        ]
    )
    if not nested:
        return pipe
    inner = StratifiedKFold(n_splits=inner_folds, shuffle=True, random_state=seed)
    return GridSearchCV(pipe, PARAM_GRIDS[name], scoring="roc_auc", cv=inner, n_jobs=1)


def make_baseline_pipeline(covariates: Sequence[str] = ()) -> Pipeline:
    """The clinical-only baseline: logistic regression on ``covariates``, or the prevalence.

    The caller passes the covariate columns alone. Without covariates the model predicts the
    training prevalence for everyone (ROC AUC 0.5 by construction; Brier score and calibration
    are the reference a model must beat).
    """
    if not covariates:
        return Pipeline([("model", DummyClassifier(strategy="prior"))])
    return Pipeline(
        [
            ("prep", make_preprocessor(corr_threshold=None, k=None, forced=list(covariates))),
            ("model", LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)),
        ]
    )


def fit_quietly(estimator: BaseEstimator, X: Any, y: Any, where: str = "") -> BaseEstimator:
    """Fit ``estimator``; convergence warnings are logged once, errors get context.

    Parameters
    ----------
    where
        Context for messages, e.g. ``"logreg repeat 2 fold 3"``.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        warnings.filterwarnings("ignore", category=RuntimeWarning)  # f_classif on flat columns
        warnings.filterwarnings("ignore", message=".*constant.*", category=UserWarning)
        try:
            estimator.fit(X, y)
        except (ValueError, np.linalg.LinAlgError) as exc:
            raise ClassifierError(f"{where}: fitting failed: {exc}") from exc
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        logger.debug("%s: the solver did not fully converge", where)
    return estimator


def final_estimator(fitted: BaseEstimator) -> Pipeline:
    """The fitted pipeline inside ``fitted`` (unwraps a GridSearchCV)."""
    return getattr(fitted, "best_estimator_", fitted)


def feature_weights(fitted: BaseEstimator) -> dict[str, float]:
    """Signed coefficients (logistic) or importances (trees) by feature name after selection.

    Coefficients refer to standardised features (the pipeline scales before the model).
    """
    pipe = final_estimator(fitted)
    model = pipe.named_steps["model"]
    if "prep" in pipe.named_steps:
        names = list(pipe.named_steps["prep"].get_feature_names_out())
    else:
        names = list(getattr(model, "feature_names_in_", []))
    if hasattr(model, "coef_"):
        values = np.asarray(model.coef_).reshape(-1)
    elif hasattr(model, "feature_importances_"):
        values = np.asarray(model.feature_importances_).reshape(-1)
    else:
        return {}
    if len(names) != len(values):
        names = [f"x{i}" for i in range(len(values))]
    return {str(n): float(v) for n, v in zip(names, values, strict=True)}


def save_classifier(fitted: BaseEstimator, path: str | Path) -> Path:
    """Save a fitted pipeline as a skops file (:func:`radsurv.models.io.save_estimator`)."""
    from radsurv.models.io import save_estimator

    return save_estimator(fitted, path)


def load_classifier(path: str | Path) -> BaseEstimator:
    """Load a pipeline saved by :func:`save_classifier`.

    Only types of :data:`radsurv.models.io.TRUSTED_PREFIXES` are accepted; anything else in the
    file raises :class:`ClassifierError` before an object is built.
    """
    from radsurv.models.io import load_estimator

    return load_estimator(path, error=ClassifierError)
