"""What router-simulate writes: the task table, the outcome table and the attempt logs."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from pipeline.world.gate_error import read_table
from pipeline.world.outcomes import field_thresholds
from pipeline.world.settings import WorldSettings
from pipeline.world.simulate import SimulatedWorld
from router_model.config import Catalog
from router_model.decide.gate import Gate
from router_model.decide.replay import ReplayResult

# The Stage-4 analysis keys the world draws; logs and task tables carry them as analysis.<key>.
ANALYSIS_KEYS = ("domain", "audience_level", "language", "complexity", "analysis_completeness",
                 "section_count", "lesson_count", "objective_count", "source_tokens")


def _rows(column: pd.Series, index: np.ndarray) -> Any:
    """Rows `index` of a task column. String columns are taken in Arrow: going through a
    numpy object array makes a Python string per row that the frame converts back."""
    if isinstance(column.dtype, pd.StringDtype):
        return column.array.take(index)
    return column.to_numpy()[index]


def _timestamps(world: SimulatedWorld, ti: np.ndarray, latency_ms: np.ndarray,
                settings: WorldSettings) -> pd.DatetimeIndex:
    """Courses start `1 / courses_per_day` days apart; a course's attempts follow one another."""
    course = world.tasks["course_index"].to_numpy()[ti]
    course_start = (pd.Timestamp(settings.start_time)
                    + pd.to_timedelta(course / settings.courses_per_day, unit="D"))
    elapsed = pd.Series(latency_ms).groupby(course).cumsum()
    return course_start + pd.to_timedelta(elapsed.to_numpy(), unit="ms")


def _starts(world: SimulatedWorld, trace: pd.DataFrame, ti: np.ndarray, explored: np.ndarray,
            propensity: np.ndarray) -> dict[str, Any]:
    """Why each attempt happened (the previous attempt's verdict; context overflow for an
    overflowing task's first), where its task's start came from, and that start's propensity."""
    prev_reason = trace.groupby("task")["next_reason"].shift(1)
    overflow = world.cube.overflow[ti]
    first = trace["attempt"].to_numpy() == 1
    reason = prev_reason.where(~first, np.where(overflow, "context_overflow", None))
    return {"start_source": np.where(overflow, "rules",
                                     np.where(explored[ti], "exploration", "rules")),
            "propensity": np.where(overflow, 1.0, propensity[ti]),
            "escalation_reason": reason.to_numpy()}


def attempt_logs(world: SimulatedWorld, result: ReplayResult, catalog: Catalog,
                 settings: WorldSettings, *, explored: np.ndarray, propensity: np.ndarray,
                 audited: np.ndarray | None = None) -> pd.DataFrame:
    """Turn a replay trace into attempt-log rows (the flat layout of the log contract).

    `audited` (per course index): courses whose every attempt carries the audit's verdict,
    i.e. the true outcome (schema valid and true quality >= the field's threshold)."""
    trace = result.trace
    if trace is None:
        raise ValueError("attempt_logs needs a replay run with record_trace=True")
    tasks = world.tasks
    ti = trace["task"].to_numpy()
    tier_idx = trace["tier"].to_numpy()
    names = pd.array(catalog.tier_names, dtype="str")
    models = pd.array([catalog.tiers[t].model_id for t in catalog.tier_names], dtype="str")
    sim = trace["similarity"].to_numpy()
    valid = trace["schema_valid"].to_numpy()
    kind = Gate.from_catalog(catalog).verdict(sim, valid,
                                              field_thresholds(catalog, tasks["field"])[ti])
    latency_ms = trace["latency_s"].to_numpy() * 1000.0
    starts = _starts(world, trace, ti, explored, propensity)
    frame = pd.DataFrame({
        "schema_version": 1,
        "timestamp": _timestamps(world, ti, latency_ms, settings),
        "course_id": _rows(tasks["course_id"], ti),
        "task_id": _rows(tasks["task_id"], ti),
        "field": _rows(tasks["field"], ti),
        "phase": tasks["phase"].to_numpy()[ti],
        "attempt": trace["attempt"].to_numpy(),
        "tier": names.take(tier_idx),
        "model": models.take(tier_idx),
        "provider": "simulator",
        "prompt_tokens": tasks["prompt_tokens"].to_numpy()[ti],
        "completion_tokens": world.completion_tokens[ti, tier_idx].astype(np.int64),
        "context_tokens": tasks["context_tokens"].to_numpy()[ti],
        "brief": _rows(tasks["brief"], ti),
        "similarity": sim.round(4),
        "schema_valid": valid,
        "passed": trace["action"].to_numpy() == 0,
        "error_kind": kind,
        "cost_usd": trace["cost_usd"].to_numpy(),
        "latency_ms": latency_ms.round(1),
        "decision_id": _rows("dec-" + tasks["task_id"], ti),
        "router_version": settings.router_version,
        "start_source": starts["start_source"],
        "predicted_pass_prob": np.nan,
        "propensity": starts["propensity"],
        "escalation_reason": starts["escalation_reason"],
    })
    gate_fields(frame, settings)
    if audited is not None:
        truth = valid & (trace["quality"].to_numpy() >= world.cube.pass_threshold[ti])
        frame["audit_passed"] = pd.array(
            np.where(audited[tasks["course_index"].to_numpy()[ti]], truth, pd.NA),
            dtype="boolean")
    for key in ANALYSIS_KEYS:
        frame[f"analysis.{key}"] = _rows(tasks[key], ti)
    return frame


def task_table(world: SimulatedWorld) -> pd.DataFrame:
    """The tasks in the layout routers read (`analysis.<key>` columns), hidden state dropped:
    what `tasks.parquet` holds and what the policy scores."""
    public = world.tasks[[c for c in world.tasks.columns if not c.startswith("_")]]
    return public.rename(columns={k: f"analysis.{k}" for k in ANALYSIS_KEYS}
                         ).reset_index(drop=True)


def outcome_table(world: SimulatedWorld, catalog: Catalog) -> pd.DataFrame:
    """The counterfactual table in long form: task x tier x attempt (attempt fastest)."""
    cube = world.cube
    n, n_tiers, n_att = cube.similarity.shape

    def per_attempt(values: np.ndarray) -> np.ndarray:  # a (task, tier) value on each attempt
        return np.repeat(np.asarray(values).ravel(), n_att)

    return pd.DataFrame({
        "task_id": _rows(world.tasks["task_id"], np.repeat(np.arange(n), n_tiers * n_att)),
        "tier": pd.array(catalog.tier_names, dtype="str").take(
            np.tile(np.repeat(np.arange(n_tiers), n_att), n)),
        "attempt": np.tile(np.arange(1, n_att + 1), n * n_tiers),
        "similarity": cube.similarity.ravel(),
        "quality": cube.quality.ravel(),
        "schema_valid": cube.schema_valid.ravel(),
        "completion_tokens": per_attempt(world.completion_tokens.astype(np.int64)),
        "cost_usd": per_attempt(cube.call_cost),
        "gate_cost_usd": per_attempt(cube.gate_cost),
        "latency_s": per_attempt(cube.latency_s),
    })


def gate_fields(frame: pd.DataFrame, settings: WorldSettings) -> None:
    """The attempt logs' gate fields (issue 27): the world draws calibrated scores, not raw
    ones, for the gate version its error table was measured for."""
    frame["gate_raw_score"] = np.nan
    frame["gate_calibrated_score"] = frame["similarity"]
    table = read_table(settings.gate_error)
    frame["gate_version"] = table.gate_version if table is not None else None
