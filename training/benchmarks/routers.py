"""Routers compared on the public benchmarks, all behind the one router contract.

Each learned router estimates, for every prompt and ladder model, the probability that the
model's answer passes the gate; `start_tiers` starts at the cheapest model that clears a
threshold. Tasks are prompt frames with `field` (the task family), `prompt_tokens`,
`analysis.*` text statistics and an `embedding` column (normalised MiniLM vectors).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from router_model.decide.routers import Router, RouterContext
from router_model.model.features import FeatureSpec
from training.fitting import TrainSettings, fit_pass_model


def embeddings(tasks: pd.DataFrame) -> np.ndarray:
    return np.stack(tasks["embedding"].to_numpy()).astype(np.float32)


class PassRouter(Router):
    """A router that predicts P(pass) per ladder model; `threshold` sets its start tier."""

    threshold: float = 0.5

    def pass_probabilities(self, tasks: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        return cheapest_meeting(self.pass_probabilities(tasks), self.threshold)


def cheapest_meeting(p: np.ndarray, threshold: float) -> np.ndarray:
    """Index of the cheapest model whose P(pass) >= threshold; the premium one if none."""
    ok = p >= threshold
    ok[:, -1] = True
    return np.argmax(ok, axis=1)


class FamilyLookupRouter(PassRouter):
    """The per-family lookup table: each model's pass rate among the training prompts of the
    prompt's family (the overall rate for a family never seen). The baseline any learned
    router must beat where the family alone carries the signal."""

    def fit(self, tasks: pd.DataFrame, outcomes: Any = None) -> FamilyLookupRouter:
        y = pd.DataFrame(np.asarray(outcomes, dtype=float), index=tasks["field"].to_numpy())
        self.rates_ = y.groupby(level=0).mean()
        self.overall_ = y.mean(axis=0)
        return self

    def pass_probabilities(self, tasks: pd.DataFrame) -> np.ndarray:
        rates = self.rates_.reindex(tasks["field"].to_numpy())
        return rates.fillna(self.overall_).to_numpy(dtype=float)


class KNNRouter(PassRouter):
    """RouterBench's kNN baseline: each model's pass rate among the k nearest prompts."""

    def __init__(self, context: RouterContext, k: int = 40) -> None:
        super().__init__(context)
        self.k = k

    def fit(self, tasks: pd.DataFrame, outcomes: Any = None) -> KNNRouter:
        from sklearn.neighbors import NearestNeighbors

        X = embeddings(tasks)
        self.index_ = NearestNeighbors(n_neighbors=min(self.k, len(X)), metric="cosine").fit(X)
        self.passed_ = np.asarray(outcomes, dtype=float)
        return self

    def pass_probabilities(self, tasks: pd.DataFrame) -> np.ndarray:
        _, idx = self.index_.kneighbors(embeddings(tasks))
        return self.passed_[idx].mean(axis=1)


class LogRegEmbedRouter(PassRouter):
    """One logistic regression per model on the prompt embedding."""

    def __init__(self, context: RouterContext, C: float = 1.0) -> None:
        super().__init__(context)
        self.C = C

    def fit(self, tasks: pd.DataFrame, outcomes: Any = None) -> LogRegEmbedRouter:
        from sklearn.linear_model import LogisticRegression

        X = embeddings(tasks)
        y = np.asarray(outcomes, dtype=int)
        self.models_ = []
        for j in range(y.shape[1]):
            if len(np.unique(y[:, j])) < 2:  # a model that always (or never) passes
                self.models_.append(float(y[0, j]))
            else:
                self.models_.append(LogisticRegression(C=self.C, max_iter=2000).fit(X, y[:, j]))
        return self

    def pass_probabilities(self, tasks: pd.DataFrame) -> np.ndarray:
        X = embeddings(tasks)
        return np.column_stack([np.full(len(X), m) if isinstance(m, float)
                                else m.predict_proba(X)[:, 1] for m in self.models_])


def with_leaf_size(train: TrainSettings, size: int) -> TrainSettings:
    """conf/train with LightGBM's min_child_samples set to `size`."""
    lightgbm = {**train.estimators["lightgbm"], "min_child_samples": size}
    return replace(train, estimators={**train.estimators, "lightgbm": lightgbm})


class LightGBMRouter(PassRouter):
    """The product's own model: calibrated LightGBM on (task, tier) rows, tier a feature;
    `use_embedding` adds a PCA of the prompt embedding."""

    def __init__(self, context: RouterContext, train_cfg: Mapping[str, Any] | None,
                 use_embedding: bool = False, pca_components: int = 32,
                 min_child_samples_grid: tuple[int, ...] = ()) -> None:
        super().__init__(context)
        if train_cfg is None:
            raise ValueError("the LightGBM routers need conf/train (train_cfg); compose it")
        # The registry (conf/routers) hands conf/train over as plain data; it is typed the
        # way every training CLI types it.
        from training.train_cli import train_settings

        self.train = train_settings(train_cfg)
        self.use_embedding = use_embedding
        self.pca_components = pca_components
        self.min_child_samples_grid = min_child_samples_grid

    def _frame(self, tasks: pd.DataFrame) -> pd.DataFrame:
        frame = tasks.drop(columns=["embedding"])
        if self.use_embedding:
            reduced = self.pca_.transform(embeddings(tasks))
            frame = frame.assign(**{f"analysis.pca_{i}": reduced[:, i]
                                    for i in range(reduced.shape[1])})
        return frame

    def _fit_pca(self, tasks: pd.DataFrame) -> None:
        if self.use_embedding:
            from sklearn.decomposition import PCA

            X = embeddings(tasks)  # a small inner fold may have fewer prompts than components
            self.pca_ = PCA(n_components=min(self.pca_components, *X.shape), random_state=0
                            ).fit(X)

    def _fit_frame(self, tasks: pd.DataFrame, y: np.ndarray) -> pd.DataFrame:
        """The training frame; fits whatever `_frame` needs first (here the PCA)."""
        self._fit_pca(tasks)
        return self._frame(tasks)

    def fit(self, tasks: pd.DataFrame, outcomes: Any = None) -> LightGBMRouter:
        y = np.asarray(outcomes, dtype=int)
        frame = self._fit_frame(tasks, y)
        self.n_models_ = y.shape[1]
        rows = pd.concat([frame.assign(tier=f"m{j}", label=y[:, j],
                                       course_id=frame["prompt_id"])
                          for j in range(self.n_models_)], ignore_index=True)
        numeric = [c.removeprefix("analysis.") for c in frame.columns
                   if c.startswith("analysis.")]
        spec = FeatureSpec.from_config({"analysis_numeric": numeric}).fit(rows)
        train = replace(self.train, cv_folds=min(3, self.train.cv_folds))
        if len(self.min_child_samples_grid) > 1:
            train = with_leaf_size(train, self._select_min_child_samples(rows, spec, train))
        self.min_child_samples_ = int(train.estimators["lightgbm"]["min_child_samples"])
        self.model_ = fit_pass_model("lightgbm", rows, spec, train)
        return self

    def _select_min_child_samples(self, rows: pd.DataFrame, spec: FeatureSpec,
                                  train: TrainSettings) -> int:
        """Inner validation on the training prompts only (25% of them held out by prompt):
        the leaf size that suits this much data, chosen without seeing any test fold."""
        from sklearn.metrics import log_loss
        from sklearn.model_selection import GroupShuffleSplit

        inner_train, inner_val = next(GroupShuffleSplit(n_splits=1, test_size=0.25,
                                                        random_state=0).split(
            rows, groups=rows["course_id"]))
        fit_rows, val_rows = rows.iloc[inner_train], rows.iloc[inner_val]
        losses = {}
        for size in self.min_child_samples_grid:
            model = fit_pass_model("lightgbm", fit_rows, spec, with_leaf_size(train, int(size)))
            losses[int(size)] = log_loss(val_rows["label"], model.predict_frame(val_rows),
                                         labels=[0, 1])
        return min(losses, key=losses.get)

    def pass_probabilities(self, tasks: pd.DataFrame) -> np.ndarray:
        X = self.model_.spec.encode(self._frame(tasks))
        return self.model_.predict_tiers(X, [f"m{j}" for j in range(self.n_models_)])


class StackedRouter(LightGBMRouter):
    """LightGBM on the tabular features plus the P(pass) per model of kNN and logistic
    regression on the full 384-dimensional embedding. On training prompts those inputs are
    cross-fitted (each predicted by base models that never saw it), so the trees learn how far
    to trust them; at prediction the base models are refitted on every training prompt. The
    calibration is fit_pass_model's, as for every LightGBM router."""

    def __init__(self, context: RouterContext, train_cfg: Mapping[str, Any] | None, k: int = 40,
                 C: float = 1.0, inner_folds: int = 3, use_embedding: bool = False,
                 pca_components: int = 32, min_child_samples_grid: tuple[int, ...] = ()
                 ) -> None:
        super().__init__(context, train_cfg, use_embedding, pca_components,
                         min_child_samples_grid)
        self.k, self.C, self.inner_folds = k, C, inner_folds

    def _base_models(self) -> list[PassRouter]:
        return [KNNRouter(self.context, k=self.k), LogRegEmbedRouter(self.context, C=self.C)]

    @staticmethod
    def _columns(p: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
        return {f"analysis.{prefix}_m{j}": p[:, j] for j in range(p.shape[1])}

    def _frame(self, tasks: pd.DataFrame) -> pd.DataFrame:
        stacked = {}
        for prefix, model in zip(("knn", "logreg"), self.bases_, strict=True):
            stacked |= self._columns(model.pass_probabilities(tasks), prefix)
        return super()._frame(tasks).assign(**stacked)

    def _fit_frame(self, tasks: pd.DataFrame, y: np.ndarray) -> pd.DataFrame:
        from sklearn.model_selection import KFold

        self._fit_pca(tasks)
        frame = super()._frame(tasks)
        oof = {"knn": np.zeros(y.shape), "logreg": np.zeros(y.shape)}
        folds = KFold(n_splits=min(self.inner_folds, len(tasks)), shuffle=True,
                      random_state=self.context.seed)
        for fit, val in folds.split(np.arange(len(tasks))):
            for prefix, model in zip(oof, self._base_models(), strict=True):
                model.fit(tasks.iloc[fit], y[fit])
                oof[prefix][val] = model.pass_probabilities(tasks.iloc[val])
        self.bases_ = [m.fit(tasks, y) for m in self._base_models()]
        stacked = {}
        for prefix, p in oof.items():
            stacked |= self._columns(p, prefix)
        return frame.assign(**stacked)
