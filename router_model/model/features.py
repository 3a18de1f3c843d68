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
        from router_model.model.embeddings import embed

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
                out[:, j] = _vocabulary_codes(frame[c], self.categories_[c])
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

    @property
    def wanted(self) -> list[str]:
        """The task keys the encoder reads (`tier` too: the model's tier rows overwrite it)."""
        return [*self.categorical, *self.numeric, *(["brief"] if self.brief_components else [])]

    def encode_records(self, records: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Flat dict rows -> float matrix, without pandas (the serving hot path)."""
        return self.encode_with_gaps(records)[0]

    def encode_with_gaps(self, records: Sequence[Mapping[str, Any]]
                         ) -> tuple[np.ndarray, list[tuple[dict[str, str], list[str]]]]:
        """`encode_records`, plus each record's (`unknowns`, `missing`) found in the same
        pass: each row is filled as a list of floats, and the matrix made in one call.
        The cheapest walk for one task; many go column by column (`encode_columns`)."""
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

    def encode_columns(self, columns: Mapping[str, Sequence[Any]], n: int
                       ) -> tuple[np.ndarray, list[tuple[dict[str, str], list[str]]]]:
        """`n` tasks given as one list of values per key of `wanted` (an absent key: all
        None) -> the float matrix and each task's (`unknowns`, `missing`).

        Column by column, each a list comprehension, and the matrix made in one call: far
        fewer Python steps per task than walking each task's keys. A non-number raises a
        FeatureError naming the first one in task order, as a walk over the tasks would.
        """
        self._check_fitted()
        gaps: list[tuple[dict[str, str], list[str]]] = [({}, []) for _ in range(n)]
        absent = [None] * n
        encoded: list[Sequence[Any]] = []
        for c, lookup in zip(self.categorical, self._lookups(), strict=True):
            values = columns.get(c, absent)
            codes = [lookup.get(v) if type(v) is str else
                     None if v is None else lookup.get(str(v)) for v in values]
            if None in codes:
                _note_gaps(c, values, codes, gaps)
            encoded.append(codes)
        bad: list[tuple[int, str, Any]] = []
        for c in self.numeric:
            values = columns.get(c, absent)
            if not set(map(type, values)) <= {int, float}:
                bad += _check_numbers(c, values, gaps)
            encoded.append(values)
        if bad:
            _, c, value = min(bad, key=lambda b: b[0])
            raise FeatureError(f"feature {c}={value!r} is not a number")
        rows = list(zip(*encoded, strict=True))
        out = np.array(rows, dtype=float).reshape(n, len(encoded))  # None -> NaN
        if self.brief_components:
            briefs = list(columns.get("brief", absent))
            for (_, missing), brief in zip(gaps, briefs, strict=True):
                if brief is None:
                    missing.append("brief")
            out = np.hstack([out, self._brief_features(briefs)])
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
        return [c for c in self.wanted if c != "tier" and record.get(c) is None]


def _vocabulary_codes(column: pd.Series, categories: list[str]) -> np.ndarray:
    """Each value's code in `categories` (NaN when unknown or missing), looked up once per
    distinct value: a column of many tasks holds few distinct values."""
    if not (pd.api.types.is_string_dtype(column) or column.dtype == object):
        column = column.astype("string")
    codes, distinct = pd.factorize(column)  # missing -> -1
    found = pd.Index(categories).get_indexer(distinct).astype(float)
    found[found < 0] = np.nan
    return np.append(found, np.nan)[codes]


def _note_gaps(c: str, values: Sequence[Any], codes: list[int | None],
               gaps: list[tuple[dict[str, str], list[str]]]) -> None:
    """Record the tasks whose categorical `c` is missing or was never seen in training."""
    for i, (value, code) in enumerate(zip(values, codes, strict=True)):
        if code is not None:
            continue
        if value is None:
            if c != "tier":
                gaps[i][1].append(c)
        else:
            gaps[i][0][c] = value if type(value) is str else str(value)


def _check_numbers(c: str, values: Sequence[Any], gaps: list[tuple[dict[str, str], list[str]]]
                   ) -> list[tuple[int, str, Any]]:
    """Note the tasks missing numeric `c`; return the first value that is not a number
    (a bool is not one), as (task, feature, value), or nothing."""
    for i, value in enumerate(values):
        if value is None:
            gaps[i][1].append(c)
        elif isinstance(value, bool) or not isinstance(value, int | float):
            return [(i, c, value)]
    return []


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


def task_columns(tasks: Sequence[Mapping[str, Any]], keys: Sequence[str]
                 ) -> dict[str, list[Any]]:
    """Per key, each task's value in the `flatten_task` layout (None when absent), without
    building one flat dict per task."""
    analyses = [_analysis(t) for t in tasks]
    out = {}
    for c in keys:
        key = c.removeprefix("analysis.")
        if key == c:
            out[c] = [t.get(c) for t in tasks]
        else:
            out[c] = [a[key] if key in a else t.get(c) for t, a in zip(tasks, analyses,
                                                                         strict=True)]
    return out


def _analysis(task: Mapping[str, Any]) -> Mapping[str, Any]:
    """A task's nested analysis; not a mapping fails as `flatten_task` does."""
    analysis = task.get("analysis") or {}
    return analysis if isinstance(analysis, dict) else dict(analysis.items())
