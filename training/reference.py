"""What the traffic looked like when the router was trained: the reference drift is measured
against.

`task_frame` turns attempt logs into one row per task (its features, where it started, how
its chain ended); `reference_profile` summarises such a frame into plain JSON that the artifact
stores, and `router-monitor` later applies the very same summaries to recent logs. Keeping both
sides on one function is what makes a drift statistic mean something.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from training.chains import OUTCOME_COLUMNS, Chains

BASE_FEATURES = ("field", "phase", "prompt_tokens", "context_tokens", "expected_output_tokens")
MAX_DISCRETE_VALUES = 20  # a numeric column with at most this many values is tested as counts
PSI_BINS = 10
KS_QUANTILES = 101
MISSING = "<missing>"


def feature_columns(tasks: pd.DataFrame) -> list[str]:
    """The base task features plus every Stage-4 analysis key the logs carry."""
    analysis = sorted(c for c in tasks.columns if c.startswith("analysis."))
    return [c for c in (*BASE_FEATURES, *analysis) if c in tasks.columns]


def task_frame(attempts: pd.DataFrame, chains: Chains | None = None) -> pd.DataFrame:
    """One row per task: the first attempt's features and decision, the start tier's first
    gate verdict (`first_pass`, NaN when that tier never reached a verdict), whether the
    chain escalated, whether it ended flagged, and what the whole chain cost. `chains`: the
    attempts' chains when the caller has them already."""
    chains = chains if chains is not None else Chains.of(attempts)
    passed = attempts["passed"].to_numpy(bool)[chains.order]
    keep = ["task_id", *(c for c in attempts.columns
                         if c not in ("task_id", "attempt", *OUTCOME_COLUMNS))]
    tasks = attempts[keep].iloc[chains.order[chains.first]].reset_index(drop=True)
    tasks = tasks.rename(columns={"tier": "start_tier"})
    on_start = chains.first_of(np.flatnonzero(chains.judged
                                              & (chains.tier == chains.start_tier())))
    tasks["first_pass"] = chains.per_chain(on_start, passed[on_start])
    tasks["escalated"] = chains.tiers_tried() > 1
    tasks["flagged"] = ~passed[chains.last]
    tasks["cost"] = chains.total(attempts["cost_usd"].to_numpy(float)[chains.order])
    first_judged = chains.first_judged()
    tokens = attempts["completion_tokens"].to_numpy()[chains.order[first_judged]]
    tasks["expected_output_tokens"] = chains.per_chain(first_judged, tokens)
    return tasks


def _is_continuous(values: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            and values.nunique(dropna=True) > MAX_DISCRETE_VALUES)


def category_counts(values: pd.Series) -> pd.Series:
    """How often each value occurs, keyed by its text, missing ones as MISSING (so a rise in
    missing values is drift too). Counted before the values become text: at a million rows,
    turning every value into text was most of the reference's time."""
    try:
        counts = values.value_counts(dropna=False)
    except TypeError:  # lists or objects in an extra analysis key: count their JSON text
        counts = values.map(_container_text).value_counts(dropna=False)
    counts = counts[counts > 0]  # a categorical column lists its unused categories too
    labels = np.array([_label(k) for k in counts.index], dtype=object)
    return counts.groupby(labels).sum()


def _container_text(value: Any) -> Any:
    """A list, tuple, array or object as its JSON text; any other value as it is."""
    if isinstance(value, np.ndarray | tuple):
        value = list(value.tolist() if isinstance(value, np.ndarray) else value)
    return json.dumps(value, sort_keys=True) if isinstance(value, list | dict) else value


def _label(key: Any) -> str:
    """A counted value's text: containers by their JSON, MISSING for a missing scalar."""
    text = _container_text(key)
    if text is key and pd.isna(key):
        return MISSING
    return str(text)


def bin_shares(values: np.ndarray, edges: list[float]) -> np.ndarray:
    """Share of finite values in each bin cut at `edges` (len(edges) + 1 bins)."""
    values = values[np.isfinite(values)]
    counts = np.bincount(np.searchsorted(np.asarray(edges), values, side="right"),
                         minlength=len(edges) + 1)
    return counts / max(counts.sum(), 1)


def feature_reference(tasks: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per feature: bins and shares for PSI, plus quantiles (continuous) for a KS test, or
    category shares (categorical and few-valued numeric) for a chi-square test."""
    out: dict[str, dict[str, Any]] = {}
    for col in feature_columns(tasks):
        values = tasks[col]
        missing = float(values.isna().mean())
        if _is_continuous(values):
            x = values.to_numpy(float)
            x = x[np.isfinite(x)]
            edges = np.unique(np.quantile(x, np.linspace(0, 1, PSI_BINS + 1)[1:-1]))
            out[col] = {"kind": "continuous", "missing": missing, "edges": edges.tolist(),
                        "shares": bin_shares(x, edges.tolist()).tolist(),
                        "quantiles": np.quantile(x, np.linspace(0, 1, KS_QUANTILES)).tolist()}
        else:
            counts = category_counts(values)
            shares = counts / counts.sum()
            out[col] = {"kind": "categorical", "missing": missing,
                        "shares": {str(k): float(v) for k, v in shares.items()}}
    return out


def rate_cell(group: pd.DataFrame, column: str) -> dict[str, Any]:
    """A rate with its task count and course count (tasks of one course are not independent,
    so tests use the courses as the effective sample size)."""
    known = group[group[column].notna()]
    values = known[column].astype(float)
    return {"rate": float(values.mean()) if len(values) else None, "n": len(values),
            "courses": int(known["course_id"].nunique())}


def outcome_reference(tasks: pd.DataFrame) -> dict[str, Any]:
    """Per field (and tier, for the first attempt) the rates a drifting world would move."""
    tasks = tasks[["field", "start_tier", "first_pass", "escalated", "flagged", "cost"]].assign(
        course_id=pd.factorize(tasks["course_id"], sort=True)[0])  # codes count faster
    first_pass: dict[str, dict[str, dict[str, float]]] = {}
    for (f, t), group in tasks.groupby(["field", "start_tier"]):
        first_pass.setdefault(str(f), {})[str(t)] = rate_cell(group, "first_pass")
    by_field = tasks.groupby("field")
    per_course = tasks.groupby("course_id")["cost"].sum()
    return {
        "first_pass": first_pass,
        "escalation": {str(f): rate_cell(g, "escalated") for f, g in by_field},
        "flag": {str(f): rate_cell(g, "flagged") for f, g in by_field},
        "cost_per_course": {"mean": float(per_course.mean()),
                            "sd": float(per_course.std(ddof=1)) if len(per_course) > 1 else 0.0,
                            "n": len(per_course)},
    }


def reference_profile(attempts: pd.DataFrame, chains: Chains | None = None) -> dict[str, Any]:
    """The artifact's reference: feature distributions and outcome rates of its logs."""
    chain_columns = ("task_id", "course_id", "attempt", "tier", "error_kind", "passed",
                     "cost_usd", "completion_tokens")
    tasks = task_frame(attempts[[c for c in attempts.columns  # only what is summarised
                                 if c in chain_columns or c in feature_columns(attempts)]],
                       chains)
    return {"tasks": len(tasks), "courses": int(tasks["course_id"].nunique()),
            "features": feature_reference(tasks), "outcomes": outcome_reference(tasks)}
