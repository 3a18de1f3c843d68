"""The feature spec shared by training and serving, so the two can never drift apart.

A spec names the categorical and numeric features (`conf/router/*.yaml`), learns each
categorical's vocabulary at fit time, and encodes rows into one float matrix: categoricals as
vocabulary codes (LightGBM treats them natively), numerics as they are. Unknown categories and
missing values become NaN, never an error; `unknowns` reports them so a decision can say so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

# Per-task features every spec has, besides the configured analysis keys.
BASE_CATEGORICAL = ("field", "tier")
BASE_NUMERIC = ("prompt_tokens", "context_tokens", "expected_output_tokens")


class FeatureError(ValueError):
    """A feature value has the wrong type; the message names the feature and the value."""


@dataclass
class FeatureSpec:
    """Which columns feed the model, and (after `fit`) each categorical's vocabulary."""

    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    brief_components: int = 0  # > 0: PCA of the MiniLM embedding of the task's `brief`
    embedding_cache: str | None = None
    categories_: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], embedding_cache: str | None = None
                    ) -> FeatureSpec:
        """Build from `router.features`: analysis keys are prefixed `analysis.`."""
        cats = [*BASE_CATEGORICAL, *(f"analysis.{k}" for k in cfg.get("analysis_categorical", []))]
        nums = [*BASE_NUMERIC, *(f"analysis.{k}" for k in cfg.get("analysis_numeric", []))]
        return cls(categorical=tuple(cats), numeric=tuple(nums),
                   brief_components=int(cfg.get("brief_embedding_components") or 0),
                   embedding_cache=embedding_cache)

    @property
    def brief_columns(self) -> list[str]:
        return [f"brief_pca_{i}" for i in range(self.brief_components)]

    @property
    def columns(self) -> list[str]:
        return [*self.categorical, *self.numeric, *self.brief_columns]

    @property
    def categorical_indices(self) -> list[int]:
        return list(range(len(self.categorical)))

    def fit(self, frame: pd.DataFrame) -> FeatureSpec:
        """Learn the vocabulary of every categorical column from training rows."""
        needed = [*self.categorical, *self.numeric, *(["brief"] if self.brief_components else [])]
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise FeatureError(f"training data lacks feature columns {missing}; "
                               "check router.features against the logs")
        self.fit_categories({c: frame[c].dropna().unique() for c in self.categorical})
        if self.brief_components:
            from sklearn.decomposition import PCA

            vectors = self._embed(frame["brief"])
            self.brief_pca_ = PCA(n_components=self.brief_components, random_state=0).fit(
                vectors)
        return self

    def fit_categories(self, values: Mapping[str, Any]) -> FeatureSpec:
        """Set each categorical's vocabulary from the values seen (e.g. gathered from many
        partitions), sorted, so the codes do not depend on the order they were met."""
        self.categories_ = {c: sorted(set(map(str, values[c]))) for c in self.categorical}
        self.__dict__.pop("_lookup_cache", None)
        return self

    def _embed(self, briefs: Any) -> np.ndarray:
        """MiniLM vectors of the briefs (imported only when this feature is configured)."""
        from router_model.embeddings import embed

        texts = ["" if b is None or b != b else str(b) for b in briefs]  # b != b: NaN
        return embed(texts, self.embedding_cache, progress=False)

    def _brief_features(self, briefs: Any) -> np.ndarray:
        return self.brief_pca_.transform(self._embed(briefs))

    def _check_fitted(self) -> None:
        if not self.categories_:
            raise FeatureError("the feature spec is not fitted; call fit() on training data")

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        """Rows -> float matrix in `columns` order. Unknown or missing -> NaN."""
        self._check_fitted()
        out = np.full((len(frame), len(self.columns)), np.nan)
        for j, c in enumerate(self.categorical):
            if c in frame.columns:
                column = frame[c]
                if not (pd.api.types.is_string_dtype(column) or column.dtype == object):
                    column = column.astype("string")
                codes = pd.Index(self.categories_[c]).get_indexer(column).astype(float)
                codes[codes < 0] = np.nan
                out[:, j] = codes
        for j, c in enumerate(self.numeric, start=len(self.categorical)):
            if c in frame.columns:
                values = pd.to_numeric(frame[c], errors="coerce")
                bad = values.isna() & frame[c].notna()
                if bad.any():
                    raise FeatureError(f"feature {c}={frame[c][bad].iloc[0]!r} is not a number")
                out[:, j] = values.to_numpy(dtype=float, na_value=np.nan)
        if self.brief_components:
            briefs = frame["brief"] if "brief" in frame.columns else [None] * len(frame)
            out[:, -self.brief_components:] = self._brief_features(briefs)
        return out

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Flat dict rows -> float matrix, without pandas (the serving hot path)."""
        return self.encode_with_gaps(records)[0]

    def encode_with_gaps(self, records: Sequence[Mapping[str, Any]]
                         ) -> tuple[np.ndarray, list[tuple[dict[str, str], list[str]]]]:
        """`encode_records`, plus each record's (`unknowns`, `missing`) found in the same
        pass: each row is filled as a list of floats, and the matrix made in one call."""
        self._check_fitted()
        lookups = self._lookups()
        nan, width = np.nan, len(self.columns)
        categorical = list(zip(self.categorical, lookups, strict=True))
        numeric = list(enumerate(self.numeric, start=len(lookups)))
        rows, gaps = [], []
        for rec in records:
            row = [nan] * width
            unknown: dict[str, str] = {}
            missing: list[str] = []
            for j, (c, lookup) in enumerate(categorical):
                value = rec.get(c)
                if value is None:
                    if c != "tier":
                        missing.append(c)
                    continue
                text = value if type(value) is str else str(value)
                code = lookup.get(text)
                if code is None:
                    unknown[c] = text
                else:
                    row[j] = code
            for j, c in numeric:
                value = rec.get(c)
                if value is None:
                    missing.append(c)
                    continue
                if type(value) is not float and type(value) is not int and (
                        isinstance(value, bool) or not isinstance(value, int | float)):
                    raise FeatureError(f"feature {c}={value!r} is not a number")
                row[j] = value
            if self.brief_components and rec.get("brief") is None:
                missing.append("brief")
            rows.append(row)
            gaps.append((unknown, missing))
        out = np.array(rows, dtype=float).reshape(len(records), width)
        if self.brief_components:
            out[:, -self.brief_components:] = self._brief_features(
                [rec.get("brief") for rec in records])
        return out, gaps

    def to_data(self) -> dict[str, Any]:
        """The fitted spec as plain JSON (the artifact stores this, never a pickle)."""
        self._check_fitted()
        data: dict[str, Any] = {"categorical": list(self.categorical),
                                "numeric": list(self.numeric),
                                "brief_components": self.brief_components,
                                "categories": {c: list(v) for c, v in self.categories_.items()}}
        if self.brief_components:
            pca = self.brief_pca_
            if getattr(pca, "whiten", False):
                raise FeatureError("a whitened brief PCA cannot be saved as data")
            data["embedding_cache"] = self.embedding_cache
            data["brief_pca"] = {"mean": np.asarray(pca.mean_, dtype=float).tolist(),
                                 "components": np.asarray(pca.components_, dtype=float).tolist()}
        return data

    @classmethod
    def from_data(cls, data: Mapping[str, Any], embedding_cache: str | None = None
                  ) -> FeatureSpec:
        categorical = tuple(map(str, data["categorical"]))
        categories = {str(c): [str(v) for v in values]
                      for c, values in dict(data["categories"]).items()}
        if set(categories) != set(categorical):
            raise FeatureError("the feature spec's vocabularies do not match its categorical "
                               "columns")
        spec = cls(categorical=categorical, numeric=tuple(map(str, data["numeric"])),
                   brief_components=int(data.get("brief_components") or 0),
                   embedding_cache=embedding_cache or data.get("embedding_cache"),
                   categories_=categories)
        if spec.brief_components:
            pca = data["brief_pca"]
            spec.brief_pca_ = LinearProjection(np.asarray(pca["mean"], dtype=float),
                                               np.asarray(pca["components"], dtype=float))
            if spec.brief_pca_.components.shape[0] != spec.brief_components:
                raise FeatureError("the brief PCA has the wrong number of components")
        return spec

    def _lookups(self) -> list[dict[str, int]]:
        """Category -> code maps, built once per fitted spec (the serving hot path)."""
        cached = self.__dict__.get("_lookup_cache")
        if cached is None or len(cached) != len(self.categorical):
            cached = [{v: i for i, v in enumerate(self.categories_[c])}
                      for c in self.categorical]
            self.__dict__["_lookup_cache"] = cached
        return cached

    def unknowns(self, record: Mapping[str, Any]) -> dict[str, str]:
        """Categorical values in `record` that training never saw."""
        self._check_fitted()
        return {c: str(record[c]) for c in self.categorical
                if record.get(c) is not None and str(record[c]) not in self.categories_[c]}

    def missing(self, record: Mapping[str, Any]) -> list[str]:
        wanted = [*self.categorical, *self.numeric, *(["brief"] if self.brief_components else [])]
        return [c for c in wanted if c != "tier" and record.get(c) is None]


@dataclass
class LinearProjection:
    """A fitted (unwhitened) PCA as its arrays: `transform` is what `PCA.transform` computes."""

    mean: np.ndarray
    components: np.ndarray

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=float) - self.mean) @ self.components.T


def flatten_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """A task with a nested `analysis` dict -> the flat `analysis.<key>` layout."""
    flat = {k: v for k, v in task.items() if k != "analysis"}
    for key, value in (task.get("analysis") or {}).items():
        flat[f"analysis.{key}"] = value
    return flat
