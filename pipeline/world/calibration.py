"""The seed note's figures for a policy, measured on a simulated world: cost per course,
the course paths (ideal, escalations, overflow), first-tier and final success."""

from __future__ import annotations

from typing import Any

import pandas as pd

from pipeline.world.simulate import SimulatedWorld
from router_model.config import Catalog
from router_model.decide.replay import ReplayResult

COURSE_PATHS = ("ideal", "single_escalation", "metadata_regeneration", "full_escalation",
                "context_overflow")


def course_paths(tasks: pd.DataFrame, result: ReplayResult, catalog: Catalog) -> pd.Series:
    """Classify each course by the worst thing that happened to it (seed's scenarios).

    context_overflow: a task went to the overflow tier; full_escalation: a task climbed or
    jumped to premium from a cheaper start, or was flagged; metadata_regeneration: a metadata
    field needed more than one attempt; single_escalation: a task moved up one tier;
    ideal: none of these (same-tier retries are the "minimal escalation" of the ideal path).
    """
    course = tasks["course_index"].to_numpy()
    metadata = tasks["field"].map(lambda f: catalog.fields[f].kind == "metadata").to_numpy()
    events = pd.DataFrame({
        "course": course,
        "context_overflow": result.start_tier == catalog.tier_index(catalog.gate.overflow_tier),
        "full_escalation": result.reached_premium | result.flagged,
        "metadata_regeneration": metadata & (result.calls > 1),
        "single_escalation": result.escalated,
    }).groupby("course").any()
    path = pd.Series("ideal", index=events.index, dtype=object)
    for name in ("single_escalation", "metadata_regeneration", "full_escalation",
                 "context_overflow"):
        path[events[name].to_numpy()] = name
    return path


def calibration_summary(world: SimulatedWorld, result: ReplayResult, catalog: Catalog
                        ) -> dict[str, Any]:
    """The figures the seed note predicts for the rule policy, measured on this world."""
    tasks = world.tasks
    course = tasks["course_index"].to_numpy()
    per_course_cost = pd.Series(result.cost).groupby(course).sum()
    paths = course_paths(tasks, result, catalog).value_counts(normalize=True)
    first_call = result.accepted & (result.calls == 1)
    by_course = pd.DataFrame({"course": course, "escalated": result.escalated
                              | result.reached_premium | result.flagged,
                              "flagged": result.flagged}).groupby("course").any()
    return {
        "courses": int(tasks["course_index"].nunique()),
        "tasks": len(tasks),
        "attempts": int(result.calls.sum()),
        "cost_per_course_usd": float(per_course_cost.mean()),
        "cost_per_course_p90_usd": float(per_course_cost.quantile(0.9)),
        "first_tier_success": float((~by_course["escalated"]).mean()),
        "final_success": float((~by_course["flagged"]).mean()),
        "task_first_call_success": float(first_call.mean()),
        "task_final_gate_pass_rate": float(result.accepted.mean()),
        "task_final_true_pass_rate": float(result.true_pass.mean()),
        "task_flagged_for_review": float(result.flagged.mean()),
        "calls_per_task": float(result.calls.mean()),
        "overflow_course_share": float(pd.Series(world.cube.overflow).groupby(course).any()
                                       .mean()),
        "course_paths": {p: float(paths.get(p, 0.0)) for p in COURSE_PATHS},
    }
