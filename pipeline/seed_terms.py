"""The seed note's terms, per course: first-attempt pass, final pass and cost, against its
targets ($0.20-0.40 per course, 75-85% first-attempt, 95%+ final).

Per course, as the seed states them: a course passes on the first attempt when every one of
its fields passed the gate on its first call, and passes finally when no field ended flagged
for review. `course-generate` reports them from its fields; `replay_course_figures` computes
them from an exact replay (router-evaluate's routers, router-simulate's logged policy).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

SEED_TARGETS = {"cost_per_course_usd": (0.20, 0.40),
                "course_first_attempt_pass": (0.75, 0.85),
                "course_final_pass": (0.95, 1.00)}


def course_figures(course: Any, first_passed: Any, final_passed: Any, cost: Any
                   ) -> dict[str, float]:
    """Per-course rates from per-field (or per-task) results: `course` keys each row."""
    frame = pd.DataFrame({"course": np.asarray(course), "first": np.asarray(first_passed, bool),
                          "final": np.asarray(final_passed, bool),
                          "cost": np.asarray(cost, float)})
    per_course = frame.groupby("course").agg(first=("first", "all"), final=("final", "all"),
                                             cost=("cost", "sum"))
    return {"courses": len(per_course),
            "course_first_attempt_pass": float(per_course["first"].mean()),
            "course_final_pass": float(per_course["final"].mean()),
            "cost_per_course_usd": float(per_course["cost"].mean()),
            "field_first_attempt_pass": float(frame["first"].mean()),
            "field_final_pass": float(frame["final"].mean())}


def first_attempt_passed(result: Any) -> np.ndarray:
    """Per task of a replay: the gate accepted its first call (one call, accepted)."""
    return np.asarray(result.accepted) & (np.asarray(result.calls) == 1)


def replay_course_figures(tasks: pd.DataFrame, result: Any) -> dict[str, float]:
    """The seed's per-course figures of one replay (router_model.decide.replay): a task's
    first call passed when it was accepted after one call; it passed finally when it was not
    flagged. `tasks` holds the replayed tasks' `course_id` (or `course_index`). Cost per
    course is the replay's (calls and the gate). Also the true final pass (quality)."""
    course = tasks["course_id"] if "course_id" in tasks else tasks["course_index"]
    out = course_figures(course, first_attempt_passed(result), ~np.asarray(result.flagged),
                         result.cost)
    true = pd.Series(np.asarray(result.true_pass, bool)).groupby(np.asarray(course)).all()
    out["course_true_final_pass"] = float(true.mean())
    return out


def targets(figures: dict[str, float]) -> dict[str, dict[str, Any]]:
    """Each seed target with the measured value and whether it is met."""
    out = {}
    for key, (low, high) in SEED_TARGETS.items():
        value = figures.get(key)
        out[key] = {"value": value, "target": [low, high],
                    "met": value is not None and low <= value <= high}
    return out


def format_targets(figures: dict[str, float]) -> list[str]:
    """One line per seed target: the measured value, the range, met or missed."""
    names = {"cost_per_course_usd": "$ per course", "course_first_attempt_pass":
             "courses passing every field on its first attempt",
             "course_final_pass": "courses with no field flagged (final pass)"}
    lines = []
    for key, t in targets(figures).items():
        low, high = t["target"]
        value = t["value"]
        shown = "-" if value is None else (f"{value:.4f}" if "usd" in key else f"{value:.1%}")
        rng = f"${low:.2f}-{high:.2f}" if "usd" in key else f"{low:.0%}-{high:.0%}"
        lines.append(f"  {names[key]:<52} {shown:>8}   seed {rng:<12} "
                     f"{'met' if t['met'] else 'MISSED'}")
    return lines
