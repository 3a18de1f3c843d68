"""The pass-probability model: P(first attempt at a tier passes the gate | task, tier).

Estimators follow the scikit-learn API (`__init__` stores parameters, `fit` returns self,
learned attributes end in `_`), so scikit-learn's `CalibratedClassifierCV` can calibrate them
on held-out folds.

A fitted `PassModel` is saved as data, never as a pickle (`to_data` / `from_data`, used by
`router_model.model.artifact`): LightGBM's own text model, the calibrator's arrays (isotonic
thresholds or sigmoid a, b), the logistic baseline's coefficients and preprocessing
parameters, and the feature spec, all plain JSON. Loading rebuilds a model that predicts the
same probabilities (to 1e-9, tested) without running any code from the artifact.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from router_model.model.booster_text import BoosterTextError, checked_model_text
from router_model.model.compiled import SMALL_BATCH, compile_booster
from router_model.model.features import FeatureSpec


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

    def lgbm_params(self) -> dict[str, Any]:
        """LightGBM's own settings for these parameters (shared with the Dask engine)."""
        return dict(
            n_estimators=self.n_estimators, learning_rate=self.learning_rate,
            num_leaves=self.num_leaves, min_child_samples=self.min_child_samples,
            subsample=self.subsample, subsample_freq=1 if self.subsample < 1 else 0,
            colsample_bytree=self.colsample_bytree, reg_lambda=self.reg_lambda,
            max_bin=self.max_bin, n_jobs=self.n_jobs, random_state=self.random_state,
            verbose=-1)

    def fit(self, X: np.ndarray, y: np.ndarray) -> LightGBMPassClassifier:
        import lightgbm as lgb

        model = lgb.LGBMClassifier(**self.lgbm_params())
        model.fit(np.asarray(X, dtype=float), np.asarray(y),
                  categorical_feature=list(self.categorical_features) or "auto")
        return self.use_booster(model.booster_, model.classes_)

    def use_booster(self, booster: Any, classes: np.ndarray) -> LightGBMPassClassifier:
        """Take a booster trained elsewhere (e.g. by the Dask engine) as this model's fit."""
        self.booster_ = booster
        self.classes_ = np.asarray(classes)
        self.n_features_in_ = booster.num_feature()
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
    return booster.predict(X, num_threads=1 if len(X) <= SMALL_BATCH else 0)


class ModelDataError(ValueError):
    """A model that cannot be written as data, or data that does not describe a model."""


@dataclass
class IsotonicCalibrator:
    """Isotonic regression as its thresholds (what `IsotonicRegression.predict` interpolates)."""

    X_thresholds_: np.ndarray
    y_thresholds_: np.ndarray


@dataclass
class SigmoidCalibrator:
    """Platt scaling: p = 1 / (1 + exp(a * raw + b))."""

    a_: float
    b_: float


def calibrator_to_data(calibrator: Any) -> dict[str, Any]:
    if hasattr(calibrator, "X_thresholds_"):
        if getattr(calibrator, "out_of_bounds", "clip") != "clip":
            raise ModelDataError("only isotonic calibration with out_of_bounds='clip' can be "
                                 "saved as data")
        return {"method": "isotonic",
                "x": np.asarray(calibrator.X_thresholds_, dtype=float).tolist(),
                "y": np.asarray(calibrator.y_thresholds_, dtype=float).tolist()}
    if hasattr(calibrator, "a_") and hasattr(calibrator, "b_"):
        return {"method": "sigmoid", "a": float(calibrator.a_), "b": float(calibrator.b_)}
    raise ModelDataError(f"a {type(calibrator).__name__} calibrator cannot be saved as data "
                         "(isotonic or sigmoid only)")


def calibrator_from_data(data: dict[str, Any]) -> IsotonicCalibrator | SigmoidCalibrator:
    if data.get("method") == "isotonic":
        x, y = _floats(data["x"], "calibrator.x"), _floats(data["y"], "calibrator.y")
        if len(x) != len(y) or len(x) < 1 or np.any(np.diff(x) < 0):
            raise ModelDataError("calibrator: isotonic thresholds must be two equally long, "
                                 "non-empty arrays with x sorted")
        return IsotonicCalibrator(x, y)
    if data.get("method") == "sigmoid":
        a, b = _floats([data["a"], data["b"]], "calibrator.a/b")
        return SigmoidCalibrator(float(a), float(b))
    raise ModelDataError(f"calibrator.method={str(data.get('method'))[:40]!r}: expected "
                         "isotonic or sigmoid")


def _floats(values: Any, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 1 or not np.isfinite(array).all():
        raise ModelDataError(f"{name}: expected a flat list of finite numbers")
    return array


def apply_calibrator(calibrator: Any, raw: np.ndarray) -> np.ndarray:
    """What `IsotonicRegression.predict` / `_SigmoidCalibration.predict` compute, unchecked."""
    if hasattr(calibrator, "X_thresholds_"):  # isotonic, out_of_bounds="clip"
        # np.interp holds the end values outside the thresholds: the same as clipping first
        return np.interp(raw, calibrator.X_thresholds_, calibrator.y_thresholds_)
    return 1.0 / (1.0 + np.exp(calibrator.a_ * raw + calibrator.b_))  # sigmoid (Platt)


class BoosterModel:
    """A saved LightGBM model: the booster rebuilt from LightGBM's own text format.

    The text is checked first (`booster_text.checked_model_text`): LightGBM's parser and
    predictor trust their input, and a truncated, cyclic or out-of-range model would abort
    or hang the process. LightGBM reads only the checked text."""

    def __init__(self, model_text: str, n_features: int | None = None) -> None:
        import lightgbm as lgb

        try:
            checked = checked_model_text(model_text, n_features)
        except BoosterTextError as exc:
            raise ModelDataError(f"the LightGBM model text is refused: {exc}") from None
        try:
            self.booster_ = lgb.Booster(model_str=checked)
        except Exception as exc:  # LightGBM raises its own error type on bad text
            raise ModelDataError(f"the LightGBM model text cannot be parsed "
                                 f"({type(exc).__name__})") from exc
        self.classes_ = np.array([0, 1])
        self.n_features_in_ = self.booster_.num_feature()

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = predict_booster(self.booster_, np.asarray(X, dtype=float))
        return np.column_stack([1.0 - p, p])

    @property
    def feature_importances_(self) -> np.ndarray:
        return self.booster_.feature_importance(importance_type="gain")


@dataclass
class LogisticData:
    """`logistic_baseline` as its parameters, computed with numpy (no sklearn objects).

    Columns: one-hot codes of the categorical columns (missing -> -1, unknown -> all zero),
    then the numeric columns imputed with their medians, with missing indicators, log1p'ed
    and standardised; then the linear model's decision function.
    """

    categorical: list[int]
    categories: list[list[float]]
    numeric: list[int]
    medians: list[float]
    indicator: list[int]  # positions within `numeric` that get a missing indicator
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float

    @classmethod
    def from_pipeline(cls, pipeline: Any, n_features: int) -> LogisticData:
        from sklearn.compose import ColumnTransformer
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

        refuse = ModelDataError("only the pipeline built by router_model.model.pass_model."
                                "logistic_baseline can be saved as data")
        try:
            prep, logreg = pipeline.named_steps["prep"], pipeline.named_steps["logreg"]
            (_, cat_pipe, cat_cols), = [t for t in prep.transformers_ if t[0] == "categorical"]
            (_, num_pipe, num_cols), = [t for t in prep.transformers_ if t[0] == "remainder"]
            cat_imputer, onehot = cat_pipe.steps[0][1], cat_pipe.steps[1][1]
            imputer, log1p, scaler = (step for _, step in num_pipe.steps)
        except (AttributeError, KeyError, ValueError, TypeError):
            raise refuse from None
        ok = (isinstance(prep, ColumnTransformer) and isinstance(logreg, LogisticRegression)
              and isinstance(cat_imputer, SimpleImputer) and cat_imputer.strategy == "constant"
              and cat_imputer.fill_value == -1.0 and isinstance(onehot, OneHotEncoder)
              and onehot.handle_unknown == "ignore" and onehot.drop is None
              and isinstance(imputer, SimpleImputer) and imputer.strategy == "median"
              and isinstance(log1p, FunctionTransformer) and log1p.func is np.log1p
              and isinstance(scaler, StandardScaler) and logreg.coef_.shape[0] == 1
              and sorted([*cat_cols, *num_cols]) == list(range(n_features)))
        if not ok:
            raise refuse
        indicator = (list(map(int, imputer.indicator_.features_))
                     if imputer.indicator_ is not None else [])
        return cls(categorical=list(map(int, cat_cols)),
                   categories=[np.asarray(c, dtype=float).tolist() for c in onehot.categories_],
                   numeric=list(map(int, num_cols)),
                   medians=np.asarray(imputer.statistics_, dtype=float).tolist(),
                   indicator=indicator,
                   mean=(np.asarray(scaler.mean_, dtype=float).tolist()
                         if scaler.with_mean else [0.0] * int(scaler.n_features_in_)),
                   scale=(np.asarray(scaler.scale_, dtype=float).tolist()
                          if scaler.with_std else [1.0] * int(scaler.n_features_in_)),
                   coef=np.asarray(logreg.coef_[0], dtype=float).tolist(),
                   intercept=float(logreg.intercept_[0]))

    @classmethod
    def from_data(cls, data: dict[str, Any], n_features: int) -> LogisticData:
        try:
            model = cls(**data)
            width = sum(len(c) for c in model.categories) + len(model.numeric) + len(
                model.indicator)
            assert sorted([*model.categorical, *model.numeric]) == list(range(n_features))
            assert len(model.categories) == len(model.categorical)
            assert len(model.medians) == len(model.numeric)
            assert len(model.mean) == len(model.scale) == len(model.numeric) + len(
                model.indicator)
            assert len(model.coef) == width
            assert all(0 <= i < len(model.numeric) for i in model.indicator)
            for values in (*model.categories, model.medians, model.mean, model.scale,
                           model.coef, [model.intercept]):
                _floats(values, "logistic")
        except (TypeError, AssertionError, ValueError) as exc:
            raise ModelDataError(f"the logistic model data is inconsistent "
                                 f"({type(exc).__name__})") from None
        return model

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        parts = []
        for j, cats in zip(self.categorical, self.categories, strict=True):
            column = np.where(np.isnan(X[:, j]), -1.0, X[:, j])
            parts.append((column[:, None] == np.asarray(cats)[None, :]).astype(float))
        numeric = X[:, self.numeric]
        missing = np.isnan(numeric)
        imputed = np.where(missing, np.asarray(self.medians)[None, :], numeric)
        block = np.hstack([imputed, missing[:, self.indicator].astype(float)])
        parts.append((np.log1p(block) - np.asarray(self.mean)) / np.asarray(self.scale))
        return np.hstack(parts) @ np.asarray(self.coef) + self.intercept

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        p = 1.0 / (1.0 + np.exp(-self.decision_function(X)))
        return np.column_stack([1.0 - p, p])


@dataclass
class PassModel:
    """A fitted, calibrated estimator plus the feature spec it was trained with.

    Built by training from a fitted `CalibratedClassifierCV` (`calibrated`, ensemble=False:
    one model, one calibrator), or loaded from data (`from_data`, `calibrated` is None).
    Either way `estimator` is the uncalibrated model and `calibrator` maps its output (the
    LightGBM probability, or the logistic decision function) to the calibrated probability.
    """

    spec: FeatureSpec
    calibrated: Any
    kind: str
    estimator: Any = None
    calibrator: Any = None
    compiled: Any = None  # a `CompiledBooster` once `compile` ran (LightGBM models only)

    def __post_init__(self) -> None:
        if self.calibrated is not None and self.estimator is None:
            fitted = self.calibrated.calibrated_classifiers_[0]
            self.estimator, self.calibrator = fitted.estimator, fitted.calibrators[0]

    @property
    def is_lightgbm(self) -> bool:
        return isinstance(self.estimator, LightGBMPassClassifier | BoosterModel)

    def _raw_score(self, X: np.ndarray) -> np.ndarray:
        """What the calibrator was fitted on: sklearn uses `decision_function` when the
        estimator has one (the logistic pipeline), else the positive-class probability."""
        if self.compiled is not None:
            return self.compiled.predict(X)
        if self.is_lightgbm:
            return predict_booster(self.estimator.booster_, X)
        return self.estimator.decision_function(X)

    def compile(self, cache_dir: str | Path, **limits: Any) -> None:
        """Predict through the trees compiled to native code from now on (same numbers to
        1e-9, tested; about 5x faster for one row). Other estimators stay as they are.
        `limits`: `compile_booster`'s time and memory limits. The compiled trees are
        checked against LightGBM on a few rows before they are used."""
        if not self.is_lightgbm:
            return
        compiled = compile_booster(self.estimator.booster_.model_to_string(), cache_dir,
                                   **limits)
        rows = _check_rows(len(self.spec.columns))
        expected = predict_booster(self.estimator.booster_, rows)
        if not np.allclose(compiled.predict(rows), expected, rtol=0, atol=1e-9):
            raise ModelDataError("the compiled trees do not predict what LightGBM does")
        self.compiled = compiled

    def predict_matrix(self, X: np.ndarray) -> np.ndarray:
        """Calibrated pass probabilities for encoded rows.

        This skips scikit-learn's per-call input validation (about 0.6 ms, most of a
        decision) and applies the fitted calibrator's own formula to the estimator's output:
        the same numbers as `calibrated.predict_proba`, checked by the tests.
        """
        return apply_calibrator(self.calibrator, self._raw_score(X))

    def predict_tiers(self, X_tasks: np.ndarray, tiers: list[str]) -> np.ndarray:
        """Encoded tasks -> (n, len(tiers)) pass probabilities.

        Rows for (task, tier) differ only in the tier code, so each task is encoded once
        however many tiers are scored. A tier unseen in training scores as missing. A few
        tasks go in one predict call (the call's own cost dominates); many go in one call
        per tier on one reused copy of the matrix (memory stays at one copy).
        """
        tier_col, codes = self.tier_codes(tuple(tiers))
        if len(X_tasks) * len(tiers) <= SMALL_BATCH:
            X = np.repeat(X_tasks, len(tiers), axis=0)
            X.reshape(len(X_tasks), len(tiers), -1)[:, :, tier_col] = codes
            return self.predict_matrix(X).reshape(len(X_tasks), len(tiers))
        X = np.array(X_tasks, dtype=float)
        out = np.empty((len(X), len(tiers)))
        for j, code in enumerate(codes):
            X[:, tier_col] = code
            out[:, j] = self.predict_matrix(X)
        return out

    def tier_codes(self, tiers: tuple[str, ...]) -> tuple[int, np.ndarray]:
        """The tier column and each tier's code, worked out once per ladder (hot path)."""
        cache = self.__dict__.setdefault("_tier_code_cache", {})
        if tiers not in cache:
            known = self.spec.categories_["tier"]
            cache[tiers] = (self.spec.columns.index("tier"),
                            np.array([known.index(t) if t in known else np.nan for t in tiers]))
        return cache[tiers]

    def predict_frame(self, frame: pd.DataFrame) -> np.ndarray:
        return self.predict_matrix(self.spec.encode(frame))

    def raw_and_calibrated(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Uncalibrated and calibrated probabilities (for reliability reports). LightGBM's
        raw score is its probability, so its trees run once for both."""
        score = self._raw_score(X)
        raw = (score if self.is_lightgbm and self.compiled is None
               else self.estimator.predict_proba(X)[:, 1])
        return raw, apply_calibrator(self.calibrator, score)

    def explain(self, X: np.ndarray, top: int = 5) -> list[dict[str, Any]]:
        """The largest per-feature contributions (log-odds, before calibration) for one row.

        LightGBM's TreeSHAP (`pred_contrib`); other estimators return an empty list.
        """
        if not self.is_lightgbm:
            return []
        contrib = self.estimator.booster_.predict(np.asarray(X[:1], dtype=float),
                                                  pred_contrib=True)[0]
        values = contrib[:-1]  # the last column is the bias
        order = np.argsort(-np.abs(values))[:top]
        return [{"feature": self.spec.columns[j], "value": _plain_value(X[0, j], self.spec, j),
                 "contribution": float(values[j])} for j in order]

    def feature_importance(self) -> dict[str, float]:
        if not hasattr(self.estimator, "feature_importances_"):
            return {}
        gains = np.asarray(self.estimator.feature_importances_, dtype=float)
        total = gains.sum() or 1.0
        return {c: float(g / total) for c, g in zip(self.spec.columns, gains, strict=True)}

    # ---- as data ------------------------------------------------------------------------

    def to_data(self) -> tuple[dict[str, Any], str | None]:
        """(JSON-able description, LightGBM model text or None). Refuses what it cannot
        describe with a `ModelDataError` that says so."""
        data: dict[str, Any] = {"kind": self.kind, "spec": self.spec.to_data(),
                                "calibrator": calibrator_to_data(self.calibrator)}
        if self.is_lightgbm:
            data["estimator"] = {"type": "lightgbm"}
            return data, self.estimator.booster_.model_to_string()
        if isinstance(self.estimator, LogisticData):
            logistic = self.estimator
        else:
            logistic = LogisticData.from_pipeline(self.estimator, len(self.spec.columns))
        data["estimator"] = {"type": "logistic", **logistic.__dict__}
        return data, None

    @classmethod
    def from_data(cls, data: dict[str, Any], booster_text: str | None, *,
                  embedding_cache: str | None = None) -> PassModel:
        """The model `to_data` described. `embedding_cache` is where brief embeddings may be
        cached: the loader's choice, never a path written in the data (an artifact must not
        choose where the process writes)."""
        try:
            spec_data = {k: v for k, v in dict(data["spec"]).items() if k != "embedding_cache"}
            spec = FeatureSpec.from_data(spec_data, embedding_cache=embedding_cache)
            kind, estimator_data = str(data["kind"]), dict(data["estimator"])
            calibrator = calibrator_from_data(data["calibrator"])
            kind_of = estimator_data.pop("type")
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelDataError(f"the model description is incomplete or malformed "
                                 f"({type(exc).__name__}: {str(exc)[:200]})") from None
        if kind_of == "lightgbm":
            if booster_text is None:
                raise ModelDataError("a LightGBM model needs its booster text")
            estimator: Any = BoosterModel(booster_text, len(spec.columns))
            if estimator.n_features_in_ != len(spec.columns):
                raise ModelDataError(f"the booster has {estimator.n_features_in_} features, "
                                     f"the feature spec {len(spec.columns)}")
        elif kind_of == "logistic":
            estimator = LogisticData.from_data(estimator_data, len(spec.columns))
        else:
            raise ModelDataError(f"estimator type {str(kind_of)[:40]!r}: expected lightgbm "
                                 "or logistic")
        return cls(spec=spec, calibrated=None, kind=kind, estimator=estimator,
                   calibrator=calibrator)


def _check_rows(width: int) -> np.ndarray:
    """A few rows to compare compiled trees with LightGBM: all missing, zeros, small codes
    and spread-out numbers (any difference in the trees shows on some of them)."""
    rng = np.random.default_rng(0)
    rows = np.vstack([np.full((1, width), np.nan), np.zeros((1, width)),
                      rng.integers(0, 4, (6, width)).astype(float),
                      rng.lognormal(3.0, 3.0, (8, width))])
    rows[10:, ::2] = np.nan
    return rows


def _plain_value(code: float, spec: FeatureSpec, j: int) -> Any:
    """A feature's value as the caller sent it: category name, number or None."""
    if np.isnan(code):
        return None
    if j < len(spec.categorical):
        return spec.categories_[spec.categorical[j]][int(code)]
    return float(code)
