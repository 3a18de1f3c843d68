"""The pass-probability model: P(first attempt at a tier passes the gate | task, tier).

Estimators follow the scikit-learn API (`__init__` stores parameters, `fit` returns self,
learned attributes end in `_`), so scikit-learn's `CalibratedClassifierCV` can calibrate them
on held-out folds. They live here, in the serving package, because the saved artifact pickles
them: serving must be able to load a model without importing the training code.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from router_model.features import FeatureSpec


class LightGBMPassClassifier(ClassifierMixin, BaseEstimator):
    """LightGBM on the encoded feature matrix, categoricals handled natively."""

    def __init__(self, n_estimators: int = 300, learning_rate: float = 0.05,
                 num_leaves: int = 31, min_child_samples: int = 50,
                 subsample: float = 1.0, colsample_bytree: float = 1.0,
                 reg_lambda: float = 0.0, max_bin: int = 255,
                 categorical_features: tuple[int, ...] = (), n_jobs: int = 2,
                 random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.max_bin = max_bin
        self.categorical_features = categorical_features
        self.n_jobs = n_jobs
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray) -> LightGBMPassClassifier:
        import lightgbm as lgb

        model = lgb.LGBMClassifier(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate,
            num_leaves=self.num_leaves, min_child_samples=self.min_child_samples,
            subsample=self.subsample, subsample_freq=1 if self.subsample < 1 else 0,
            colsample_bytree=self.colsample_bytree, reg_lambda=self.reg_lambda,
            max_bin=self.max_bin, n_jobs=self.n_jobs, random_state=self.random_state,
            verbose=-1)
        model.fit(np.asarray(X, dtype=float), np.asarray(y),
                  categorical_feature=list(self.categorical_features) or "auto")
        self.booster_ = model.booster_
        self.classes_ = model.classes_
        self.n_features_in_ = model.n_features_in_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = predict_booster(self.booster_, np.asarray(X, dtype=float))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]

    @property
    def feature_importances_(self) -> np.ndarray:
        return self.booster_.feature_importance(importance_type="gain")


def logistic_baseline(categorical_features: Sequence[int], C: float = 1.0,
                      max_iter: int = 2000, random_state: int = 0) -> Any:
    """One-hot categoricals + scaled log numerics -> logistic regression, as a Pipeline.

    Every column that is not categorical is numeric (the transformer's remainder).
    """
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

    prep = ColumnTransformer([
        ("categorical", make_pipeline(
            SimpleImputer(strategy="constant", fill_value=-1.0),
            OneHotEncoder(handle_unknown="ignore")), list(categorical_features))],
        remainder=make_pipeline(
            SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
            FunctionTransformer(np.log1p), StandardScaler()))
    return Pipeline([("prep", prep), ("logreg", LogisticRegression(
        C=C, max_iter=max_iter, random_state=random_state))])


def predict_booster(booster: Any, X: np.ndarray) -> np.ndarray:
    """One thread for a few rows (thread start-up would dominate), all cores for many."""
    return booster.predict(X, num_threads=1 if len(X) <= 256 else 0)


def apply_calibrator(calibrator: Any, raw: np.ndarray) -> np.ndarray:
    """What `IsotonicRegression.predict` / `_SigmoidCalibration.predict` compute, unchecked."""
    if hasattr(calibrator, "X_thresholds_"):  # isotonic, out_of_bounds="clip"
        # np.interp holds the end values outside the thresholds: the same as clipping first
        return np.interp(raw, calibrator.X_thresholds_, calibrator.y_thresholds_)
    return 1.0 / (1.0 + np.exp(calibrator.a_ * raw + calibrator.b_))  # sigmoid (Platt)


@dataclass
class PassModel:
    """A fitted, calibrated estimator plus the feature spec it was trained with."""

    spec: FeatureSpec
    calibrated: Any  # sklearn CalibratedClassifierCV (ensemble=False): one model, one calibrator
    kind: str

    def predict_matrix(self, X: np.ndarray) -> np.ndarray:
        """Calibrated pass probabilities for encoded rows.

        For LightGBM this skips scikit-learn's per-call input validation (about 0.6 ms, most
        of a decision) and applies the fitted calibrator's own formula to the booster's
        output: the same numbers as `calibrated.predict_proba`, checked by the tests.
        """
        fitted = self.calibrated.calibrated_classifiers_[0]
        if isinstance(fitted.estimator, LightGBMPassClassifier):
            raw = predict_booster(fitted.estimator.booster_, X)
            return apply_calibrator(fitted.calibrators[0], raw)
        return self.calibrated.predict_proba(X)[:, 1]

    def predict_tiers(self, X_tasks: np.ndarray, tiers: list[str]) -> np.ndarray:
        """Encoded tasks -> (n, len(tiers)) pass probabilities.

        One row per (task, tier), differing only in the tier code, so each task is encoded
        once however many tiers are scored. A tier unseen in training scores as missing.
        """
        tier_col = self.spec.columns.index("tier")
        known = self.spec.categories_["tier"]
        codes = [known.index(t) if t in known else np.nan for t in tiers]
        X = np.repeat(X_tasks, len(tiers), axis=0)
        X[:, tier_col] = np.tile(codes, len(X_tasks))
        return self.predict_matrix(X).reshape(len(X_tasks), len(tiers))

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_matrix(self.spec.encode(frame))

    def raw_and_calibrated(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated and calibrated probabilities (for reliability reports)."""
        inner = self.calibrated.calibrated_classifiers_[0].estimator
        return inner.predict_proba(X)[:, 1], self.predict_matrix(X)

    def explain(self, X: np.ndarray, top: int = 5) -> list[dict[str, Any]]:
        """The largest per-feature contributions (log-odds, before calibration) for one row.

        LightGBM's TreeSHAP (`pred_contrib`); other estimators return an empty list.
        """
        inner = self.calibrated.calibrated_classifiers_[0].estimator
        if not isinstance(inner, LightGBMPassClassifier):
            return []
        contrib = inner.booster_.predict(np.asarray(X[:1], dtype=float), pred_contrib=True)[0]
        values = contrib[:-1]  # the last column is the bias
        order = np.argsort(-np.abs(values))[:top]
        return [{"feature": self.spec.columns[j], "value": _plain_value(X[0, j], self.spec, j),
                 "contribution": float(values[j])} for j in order]

    def feature_importance(self) -> dict[str, float]:
        inner = self.calibrated.calibrated_classifiers_[0].estimator
        if not hasattr(inner, "feature_importances_"):
            return {}
        gains = np.asarray(inner.feature_importances_, dtype=float)
        total = gains.sum() or 1.0
        return {c: float(g / total) for c, g in zip(self.spec.columns, gains, strict=True)}


def _plain_value(code: float, spec: FeatureSpec, j: int) -> Any:
    """A feature's value as the caller sent it: category name, number or None."""
    if np.isnan(code):
        return None
    if j < len(spec.categorical):
        return spec.categories_[spec.categorical[j]][int(code)]
    return float(code)
