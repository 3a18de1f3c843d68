"""Estimators built from conf/train, fitted and calibrated; what both engines hand back.

The local engine fits here directly; the Dask engine (training/distributed) builds the same
estimator from the same config entry and returns the same `Prepared` bundle, so everything
after the fit (evaluation, dials, the artifact) does not know which engine ran.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from router_model.model.features import FeatureSpec
from router_model.model.pass_model import PassModel
from training.dataset import ExampleSet, calibration_courses


def estimator_names(train_cfg: DictConfig) -> list[str]:
    """The entries of conf/train that describe an estimator (they carry a `_target_`)."""
    return [k for k, v in train_cfg.items() if isinstance(v, DictConfig) and "_target_" in v]


def make_estimator(kind: str, spec: FeatureSpec, train_cfg: DictConfig) -> Any:
    """An unfitted estimator built from conf/train's entry `kind` (`_target_` + settings)."""
    from hydra.utils import instantiate

    if kind not in estimator_names(train_cfg):
        raise ValueError(f"train model {kind!r} has no entry with a _target_ in conf/train; "
                         f"known: {estimator_names(train_cfg)}")
    return instantiate(train_cfg[kind], categorical_features=list(spec.categorical_indices),
                       random_state=int(train_cfg.seed), _convert_="all")


def calibration_share(train_cfg: DictConfig) -> float:
    """train.calibration_share, checked: the training courses kept out of the fit."""
    share = float(train_cfg.calibration_share)
    if not 0.0 < share < 1.0:
        raise ValueError(f"train.calibration_share={share!r}: must be between 0 and 1 (the "
                         "share of training courses kept out of the fit to calibrate on)")
    return share


def fit_pass_model(kind: str, rows: pd.DataFrame, spec: FeatureSpec, train_cfg: DictConfig
                   ) -> PassModel:
    """Fit and calibrate. Below train.holdout_calibration_from training examples the
    calibrator learns from out-of-fold predictions of course-grouped folds (cv_folds + 1
    fits); from there on (null: never), from held-out training courses (one fit, on the
    rest): about 40% less time at 1M rows, for +0.0003 to +0.0004 held-out log-loss."""
    if train_cfg.calibration not in ("isotonic", "sigmoid"):
        raise ValueError(f"train.calibration={train_cfg.calibration!r}: "
                         "expected 'isotonic' or 'sigmoid'")
    X = spec.encode(rows)
    y = rows["label"].to_numpy(int)
    if len(np.unique(y)) < 2:
        raise ValueError("the training examples hold only one class (every attempt passed, or "
                         "none did); the model needs both. Add more logs.")
    holdout_from = train_cfg.get("holdout_calibration_from")
    if holdout_from is not None and len(rows) >= int(holdout_from):
        held = calibration_courses(rows["course_id"], calibration_share(train_cfg),
                                   int(train_cfg.seed))
        estimator = make_estimator(kind, spec, train_cfg).fit(X[~held], y[~held])
        return PassModel(spec=spec, calibrated=None, kind=kind, estimator=estimator,
                         calibrator=calibrate(estimator, X[held], y[held],
                                              str(train_cfg.calibration)))
    return fit_with_folds(kind, X, y, rows["course_id"].to_numpy(), spec, train_cfg)


def fit_with_folds(kind: str, X: np.ndarray, y: np.ndarray, courses: np.ndarray,
                   spec: FeatureSpec, train_cfg: DictConfig) -> PassModel:
    """Fit on all rows; calibrate on out-of-fold predictions from course-grouped folds."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GroupKFold

    folds = list(GroupKFold(n_splits=int(train_cfg.cv_folds)).split(X, y, groups=courses))
    calibrated = CalibratedClassifierCV(make_estimator(kind, spec, train_cfg),
                                        method=str(train_cfg.calibration), cv=folds,
                                        ensemble=False)
    calibrated.fit(X, y)
    return PassModel(spec=spec, calibrated=calibrated, kind=kind)


def calibrate(estimator: Any, X: np.ndarray, y: np.ndarray, method: str) -> Any:
    """The calibrator, fitted on held-out courses the estimator never saw (scikit-learn's
    `CalibratedClassifierCV` around the frozen estimator)."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    if len(np.unique(y)) < 2:
        raise ValueError("the calibration courses hold one class only; raise "
                         "train.calibration_share or add logs")
    fitted = CalibratedClassifierCV(FrozenEstimator(estimator), method=method).fit(X, y)
    return fitted.calibrated_classifiers_[0].calibrators[0]


@dataclass
class Prepared:
    """What an engine hands to evaluation and saving.

    `train_rows` are the training examples in memory (the local engine: all of them; the Dask
    engine: the calibration sample gathered to the client), `test_rows` the held-out ones,
    `audit_examples` every example with an audit verdict, and `lookup` the lookup-table
    baseline from all training rows.
    """

    data: ExampleSet
    spec: FeatureSpec
    models: dict[str, PassModel]
    train_rows: pd.DataFrame
    test_rows: pd.DataFrame
    audit_examples: pd.DataFrame
    lookup: dict[str, dict[str, float]]
    engine_info: dict[str, Any] = field(default_factory=dict)


class Phases:
    """A progress bar over the job's named steps, and each step's seconds."""

    def __init__(self, steps: list[str], progress: bool) -> None:
        self.seconds: dict[str, float] = {}
        self.bar = tqdm(total=len(steps), desc="router-train", unit="step",
                        disable=not progress)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        self.bar.set_postfix_str(name)
        start = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - start, 2)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()
