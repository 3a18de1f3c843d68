"""The benchmark adapter: any per-prompt, per-model outcome table in long form.

A long table has one row per prompt x model with at least `prompt_id`, `prompt`, `model`
and `score` in [0, 1]; optional columns are used when present: `cost_usd` (the recorded cost
of that call), `contaminated`, `prompt_tokens_est`, `completion_tokens_est`,
`price_in_per_m`, `price_out_per_m`, `metric`, `split`, and whatever column `family` names.
`conf/benchmark/*.yaml` says which models form the ladder, their prices, the gate, the
exclusions, how prompts group into questions, and the split protocol.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.benchmarks.settings import BenchmarkSpec

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


def load_long_table(path: Path, cache_dir: str | None) -> pd.DataFrame:
    """A long table through the `datasets` library (local files, offline): `path` is a
    Parquet file or a folder holding `long.parquet`."""
    import datasets

    file = path / "long.parquet" if path.is_dir() else path
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist; the public benchmark data lives in "
                                "../shared/data/public_routing (set public_data=...)")
    ds = datasets.load_dataset("parquet", data_files={"train": str(file)}, split="train",
                               cache_dir=str(Path(cache_dir) / "hf-datasets")
                               if cache_dir else None)
    return ds.to_pandas()


def _filter_rows(spec: BenchmarkSpec, long: pd.DataFrame, dropped: dict[str, int]
                 ) -> pd.DataFrame:
    """The config's `include` and contamination filters, counted in `dropped`."""
    for column, allowed in spec.include.items():
        if column not in long.columns:
            raise ValueError(f"{spec.name}: include names column {column!r}, which the table "
                             f"lacks (it has {sorted(long.columns)[:30]})")
        keep = long[column].isin(list(allowed))
        dropped[f"not {column} in {list(allowed)}"] = int((~keep).sum())
        long = long[keep]
    if spec.exclude_contaminated and "contaminated" in long.columns:
        contaminated = long["contaminated"].fillna(False).astype(bool)
        dropped["contaminated rows"] = int(contaminated.sum())
        long = long[~contaminated]
    return long


def _drop_missing_scores(spec: BenchmarkSpec, long: pd.DataFrame, dropped: dict[str, int]
                         ) -> pd.DataFrame:
    """A NaN score is not a failure: drop the prompt (every model's row), count and warn."""
    long = long.assign(score=pd.to_numeric(long["score"], errors="coerce"))
    bad = long.loc[long["score"].isna(), "prompt_id"].unique()
    if len(bad):
        dropped["prompts with a missing score"] = len(bad)
        warnings.warn(f"{spec.name}: {len(bad)} prompts have a missing (NaN or non-numeric) "
                      "score for some model; they are dropped", stacklevel=3)
        long = long[~long["prompt_id"].isin(bad)]
    return long


def _group_prompts(spec: BenchmarkSpec, long: pd.DataFrame, dropped: dict[str, int]
                   ) -> pd.DataFrame:
    """Multi-turn questions as one unit (RouteLLM's MT-Bench protocol): routed once on the
    first turn's prompt, scored as the mean over its turns, costed as the sum of its calls.
    `group.pattern`'s first regex group is the question id within `prompt_id`."""
    group = spec.group
    if not group:
        return long
    pattern = re.compile(str(group["pattern"]))
    question = long["prompt_id"].astype(str).str.extract(pattern, expand=False)
    if question.isna().all():
        raise ValueError(f"{spec.name}: group.pattern {group['pattern']!r} matches no prompt_id "
                         f"(e.g. {long['prompt_id'].iloc[0]!r})")
    long = long.assign(question=question.fillna(long["prompt_id"].astype(str)))
    turns = long.groupby("question")["prompt_id"].nunique()
    whole = turns.index[turns == turns.max()]
    dropped["questions missing a turn"] = int(len(turns) - len(whole))
    long = long[long["question"].isin(whole)].sort_values(["question", "prompt_id"])
    first = long.drop_duplicates("question").set_index("question")["prompt"]
    sums = {c: "sum" for c in ("cost", "prompt_tokens_est") if c in long}
    agg = long.groupby(["question", "model"], sort=False).agg(
        {"score": "mean", **sums, **{c: "first" for c in long.columns
                                    if c not in ("score", "question", "model", *sums)}})
    agg = agg.reset_index().drop(columns=["prompt_id"]).rename(columns={"question":
                                                                        "prompt_id"})
    return agg.assign(prompt=agg["prompt_id"].map(first))


def build_table(spec: BenchmarkSpec, long: pd.DataFrame, *, max_prompts: int | None = None,
                seed: int = 0) -> OutcomeTable:
    """Filter, check and pivot a long table into the ladder's outcome matrices."""
    missing = [c for c in REQUIRED if c not in long.columns]
    if missing:
        raise ValueError(f"{spec.name}: the long table lacks columns {missing} (it has "
                         f"{sorted(long.columns)[:30]})")
    dropped: dict[str, int] = {}
    long = _filter_rows(spec, long, dropped)
    names = [str(m["name"]) for m in spec.models]
    unknown = sorted(set(names) - set(long["model"]))
    if unknown:
        raise ValueError(f"{spec.name}: models {unknown} are not in the table "
                         f"(it has {sorted(set(long['model']))[:30]})")
    long = _drop_missing_scores(spec, long[long["model"].isin(names)], dropped)
    long = _group_prompts(spec, _row_costs(spec, long), dropped)
    complete = long.groupby("prompt_id")["model"].nunique() == len(names)
    dropped["prompts without every model"] = int((~complete).sum())
    long = long[long["prompt_id"].isin(complete.index[complete])]
    ids = np.sort(long["prompt_id"].unique())
    if max_prompts and len(ids) > max_prompts:
        ids = np.sort(np.random.default_rng(seed).choice(ids, max_prompts, replace=False))
        long = long[long["prompt_id"].isin(ids)]
    if len(ids) == 0:
        raise ValueError(f"{spec.name}: no prompt is left after the filters {dropped}")
    return _pivot(spec, long, ids, names, dropped)


def _pivot(spec: BenchmarkSpec, long: pd.DataFrame, ids: np.ndarray, names: list[str],
           dropped: dict[str, int]) -> OutcomeTable:
    """Prompts x ladder models: score, gate pass and cost."""
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
    cost = wide("cost")
    return OutcomeTable(name=str(spec.name), models=names, prompts=prompts, score=score,
                        passed=score >= threshold[:, None] - 1e-12, cost=cost, dropped=dropped)


def _row_costs(spec: BenchmarkSpec, long: pd.DataFrame) -> pd.DataFrame:
    """USD per call, per row: the recorded `cost_usd` where the table has it, else prompt
    tokens x input price + completion tokens (or the default) x output price."""
    recorded = pd.to_numeric(long["cost_usd"], errors="coerce") if "cost_usd" in long \
        else pd.Series(np.nan, index=long.index)
    if recorded.notna().all():
        return long.assign(cost=recorded)
    tokens_in = pd.to_numeric(long.get("prompt_tokens_est", 0.0), errors="coerce")
    tokens_out = pd.to_numeric(long.get("completion_tokens_est", np.nan), errors="coerce")
    tokens_out = pd.Series(tokens_out, index=long.index).fillna(
        float(spec.default_completion_tokens))
    price_in = long["model"].map({str(m["name"]): _price(spec, long, j, "price_in_per_m")
                                  for j, m in enumerate(spec.models)})
    price_out = long["model"].map({str(m["name"]): _price(spec, long, j, "price_out_per_m")
                                   for j, m in enumerate(spec.models)})
    priced = (pd.Series(tokens_in, index=long.index).fillna(0.0) * price_in
              + tokens_out * price_out) / 1e6
    return long.assign(cost=recorded.fillna(priced))


def _pass_score(spec: BenchmarkSpec, metric: str) -> float:
    by_metric = spec.gate.get("pass_score_by_metric") or {}
    return float(by_metric.get(metric, spec.gate["pass_score"]))


def _price(spec: BenchmarkSpec, long: pd.DataFrame, j: int, key: str) -> float:
    model: dict[str, Any] = spec.models[j]
    if model.get(key) is not None:
        return float(model[key])
    values = long.loc[long["model"] == model["name"], key].dropna() if key in long else []
    if len(values) == 0:
        raise ValueError(f"{spec.name}: no {key} for {model['name']} and no cost_usd on every "
                         "row: give the price in the config or record cost_usd")
    return float(values.iloc[0])


def split_sides(table: OutcomeTable, split: dict[str, Any]) -> np.ndarray:
    """For `split.kind: given`, True where a prompt is a test prompt. `split.train` and
    `split.test` list the table's split values for each side (default `train` / `test`)."""
    train_values = [str(v) for v in split.get("train") or ["train"]]
    test_values = [str(v) for v in split.get("test") or ["test"]]
    values = table.prompts["split"].astype(str)
    seen = sorted(values.unique())
    unknown = sorted(set(seen) - set(train_values) - set(test_values))
    if unknown or not set(seen) & set(test_values) or not set(seen) & set(train_values):
        shown = seen[:20] + (["..."] if len(seen) > 20 else [])
        raise ValueError(f"{table.name}: split.kind=given maps split values train="
                         f"{train_values}, test={test_values}, but the table's `split` column "
                         f"holds {shown}; set split.train / split.test to those values")
    return values.isin(test_values).to_numpy()


def folds(table: OutcomeTable, split: dict[str, Any]) -> list[tuple[np.ndarray, np.ndarray]]:
    """(train, test) prompt indices: the source's given split, or K-fold by prompt (a grouped
    question is one prompt here, so its turns never straddle a split)."""
    n = table.n
    if split["kind"] == "given":
        is_test = split_sides(table, split)
        return [(np.flatnonzero(~is_test), np.flatnonzero(is_test))]
    if split["kind"] == "kfold":
        from sklearn.model_selection import KFold

        k = min(int(split["folds"]), n)
        return list(KFold(n_splits=k, shuffle=True, random_state=int(split["seed"])).split(
            np.arange(n)))
    raise ValueError(f"{table.name}: split.kind={split['kind']!r}: expected 'given' or 'kfold'")
