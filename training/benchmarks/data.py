"""The benchmark adapter: any per-prompt, per-model outcome table in long form.

A long table has one row per prompt x model with at least `prompt_id`, `prompt`, `model`
and `score` in [0, 1]; optional columns are used when present: `contaminated`,
`prompt_tokens_est`, `completion_tokens_est`, `price_in_per_m`, `price_out_per_m`, `metric`,
`split`, and whatever column `family` names. `conf/benchmark/*.yaml` says which models form
the ladder, their prices, the gate, the exclusions and the split protocol.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig

REQUIRED = ("prompt_id", "prompt", "model", "score")


@dataclass
class OutcomeTable:
    """Prompts (one row each) and, per ladder model, score, gate pass and cost."""

    name: str
    models: list[str]
    prompts: pd.DataFrame  # prompt_id, family, prompt, split, metric, prompt_tokens_est
    score: np.ndarray  # (n, K)
    passed: np.ndarray  # (n, K) bool: score >= the gate's pass score
    cost: np.ndarray  # (n, K) USD per call
    dropped: dict[str, int]

    @property
    def n(self) -> int:
        return len(self.prompts)


def load_long_table(folder: Path, cache_dir: str | None) -> pd.DataFrame:
    """`long.parquet` through the `datasets` library (local files, offline)."""
    import datasets

    path = folder / "long.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist; the public benchmark data lives in "
                                "../shared/data/public_routing (set public_data=...)")
    ds = datasets.load_dataset("parquet", data_files={"train": str(path)}, split="train",
                               cache_dir=str(Path(cache_dir) / "hf-datasets")
                               if cache_dir else None)
    return ds.to_pandas()


def build_table(spec: DictConfig, long: pd.DataFrame, *, max_prompts: int | None = None,
                seed: int = 0) -> OutcomeTable:
    """Filter, check and pivot a long table into the ladder's outcome matrices."""
    missing = [c for c in REQUIRED if c not in long.columns]
    if missing:
        raise ValueError(f"{spec.name}: the long table lacks columns {missing}")
    dropped: dict[str, int] = {}
    for column, allowed in (spec.get("include") or {}).items():
        keep = long[column].isin(list(allowed))
        dropped[f"not {column} in {list(allowed)}"] = int((~keep).sum())
        long = long[keep]
    if spec.get("exclude_contaminated") and "contaminated" in long.columns:
        contaminated = long["contaminated"].fillna(False).astype(bool)
        dropped["contaminated rows"] = int(contaminated.sum())
        long = long[~contaminated]
    names = [str(m.name) for m in spec.models]
    unknown = sorted(set(names) - set(long["model"]))
    if unknown:
        raise ValueError(f"{spec.name}: models {unknown} are not in the table "
                         f"(it has {sorted(set(long['model']))})")
    long = long[long["model"].isin(names)]
    complete = long.groupby("prompt_id")["model"].nunique() == len(names)
    dropped["prompts without every model"] = int((~complete).sum())
    long = long[long["prompt_id"].isin(complete.index[complete])]
    ids = np.sort(long["prompt_id"].unique())
    if max_prompts and len(ids) > max_prompts:
        ids = np.sort(np.random.default_rng(seed).choice(ids, max_prompts, replace=False))
        long = long[long["prompt_id"].isin(ids)]
    if len(ids) == 0:
        raise ValueError(f"{spec.name}: no prompt is left after the filters {dropped}")

    def wide(column: str) -> np.ndarray:
        table = long.pivot_table(index="prompt_id", columns="model", values=column,
                                 aggfunc="first", dropna=False)
        return table.reindex(index=ids, columns=names).to_numpy(dtype=float)

    first = long.drop_duplicates("prompt_id").set_index("prompt_id").reindex(ids)
    family = str(spec.family)
    prompts = pd.DataFrame({
        "prompt_id": ids,
        "family": first[family].astype(str).to_numpy() if family in first else "all",
        "prompt": first["prompt"].astype(str).to_numpy(),
        "split": first["split"].astype(str).to_numpy() if "split" in first else "all",
        "metric": first["metric"].astype(str).to_numpy() if "metric" in first else "score",
        "prompt_tokens_est": first.get("prompt_tokens_est", pd.Series(np.nan, index=ids))
        .to_numpy(dtype=float),
    })
    score = wide("score")
    threshold = np.array([_pass_score(spec, m) for m in prompts["metric"]])
    prompt_tokens = np.nan_to_num(prompts["prompt_tokens_est"].to_numpy(), nan=0.0)
    completion = wide("completion_tokens_est") if "completion_tokens_est" in long else \
        np.full_like(score, np.nan)
    completion = np.where(np.isnan(completion), float(spec.default_completion_tokens),
                          completion)
    cost = np.column_stack([
        (prompt_tokens * _price(spec, long, j, "price_in_per_m")
         + completion[:, j] * _price(spec, long, j, "price_out_per_m")) / 1e6
        for j in range(len(names))])
    return OutcomeTable(name=str(spec.name), models=names, prompts=prompts, score=score,
                        passed=score >= threshold[:, None] - 1e-12, cost=cost, dropped=dropped)


def _pass_score(spec: DictConfig, metric: str) -> float:
    by_metric = spec.gate.get("pass_score_by_metric") or {}
    return float(by_metric.get(metric, spec.gate.pass_score))


def _price(spec: DictConfig, long: pd.DataFrame, j: int, key: str) -> float:
    model: Any = spec.models[j]
    if model.get(key) is not None:
        return float(model[key])
    values = long.loc[long["model"] == model.name, key].dropna() if key in long else []
    if len(values) == 0:
        raise ValueError(f"{spec.name}: no {key} for {model.name}: give it in the config")
    return float(values.iloc[0])


def folds(table: OutcomeTable, split: DictConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) prompt indices: the source's given split, or K-fold by prompt."""
    n = table.n
    if split.kind == "given":
        is_test = (table.prompts["split"] == "test").to_numpy()
        if not is_test.any() or is_test.all():
            raise ValueError(f"{table.name}: split.kind=given needs both train and test rows")
        return [(np.flatnonzero(~is_test), np.flatnonzero(is_test))]
    if split.kind == "kfold":
        from sklearn.model_selection import KFold

        k = min(int(split.folds), n)
        return list(KFold(n_splits=k, shuffle=True, random_state=int(split.seed)).split(
            np.arange(n)))
    raise ValueError(f"{table.name}: split.kind={split.kind!r}: expected 'given' or 'kfold'")
