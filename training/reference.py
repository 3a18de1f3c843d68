"""What the traffic looked like when the router was trained: the reference drift is measured
against.

`task_frame` turns attempt logs into one row per task (its features, where it started, how
its chain ended); `reference_profile` summarises such a frame into plain JSON that the artifact
stores, and `router-monitor` later applies the very same summaries to recent logs. Keeping both
sides on one function is what makes a drift statistic mean something.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from router_model.contract import GATE_VERDICTS

BASE_FEATURES = ("field", "phase", "prompt_tokens", "context_tokens", "expected_output_tokens")
MAX_DISCRETE_VALUES = 20  # a numeric column with at most this many values is tested as counts
PSI_BINS = 10
KS_QUANTILES = 101
MISSING = "<missing>"


def feature_columns(tasks: pd.DataFrame) -> list[str]:
    """The base task features plus every Stage-4 analysis key the logs carry."""
    analysis = sorted(c for c in tasks.columns if c.startswith("analysis."))
    return [c for c in (*BASE_FEATURES, *analysis) if c in tasks.columns]


def task_frame(attempts: pd.DataFrame) -> pd.DataFrame:
    """One row per task: the first attempt's features and decision, the start tier's first
    gate verdict (`first_pass`, NaN when that tier never reached a verdict), whether the
    chain escalated, whether it ended flagged, and what the whole chain cost."""
    a = attempts.sort_values(["task_id", "attempt"], kind="stable")
    grouped = a.groupby("task_id", sort=False)
    first = grouped.head(1).set_index("task_id")
    last = grouped.tail(1).set_index("task_id")
    judged = a[a["error_kind"].isin(GATE_VERDICTS)]
    on_start = judged[judged["tier"].to_numpy() == first["tier"].reindex(
        judged["task_id"]).to_numpy()].drop_duplicates("task_id").set_index("task_id")
    first_judged = judged.drop_duplicates("task_id").set_index("task_id")
    keep = [c for c in first.columns if c not in ("passed", "similarity", "schema_valid",
                                                    "cost_usd", "latency_ms", "attempt")]
    tasks = first[keep].rename(columns={"tier": "start_tier"})
    tasks["first_pass"] = on_start["passed"].reindex(tasks.index).astype(float)
    tasks["escalated"] = (grouped["tier"].nunique() > 1).reindex(tasks.index)
    tasks["flagged"] = ~last["passed"].astype(bool)
    tasks["cost"] = grouped["cost_usd"].sum()
    tasks["expected_output_tokens"] = first_judged["completion_tokens"].reindex(
        tasks.index).astype(float)
    return tasks.reset_index()


def _is_continuous(values: pd.Series) -> bool:
    return (pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
            and values.nunique(dropna=True) > MAX_DISCRETE_VALUES)


def category_labels(values: pd.Series) -> pd.Series:
    """Values as strings, missing ones as MISSING (so a rise in missing values is drift too)."""
    return values.astype(object).where(values.notna(), MISSING).astype(str)


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
            shares = category_labels(values).value_counts(normalize=True).sort_index()
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


def reference_profile(attempts: pd.DataFrame) -> dict[str, Any]:
    """The artifact's reference: feature distributions and outcome rates of its logs."""
    tasks = task_frame(attempts)
    return {"tasks": len(tasks), "courses": int(tasks["course_id"].nunique()),
            "features": feature_reference(tasks), "outcomes": outcome_reference(tasks)}
