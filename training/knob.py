"""Calibrate the policy's knob to a target on the user's own tasks.

Unlike a threshold calibrated once on public data, the knob is set from the model's
expectations on the tasks in the user's logs, at training time, and stored in the artifact so
serving and evaluation use the same value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from router_model.policy import RoutingPolicy

TARGETS = ("first_pass_vs_static", "premium_share_max", "final_pass_min")


def _expected(policy: RoutingPolicy, tasks: pd.DataFrame, p: np.ndarray, knob: float,
              target: str) -> float:
    plan = policy.with_settings(knob=knob).start_tiers(tasks, p=p)
    rows = np.arange(len(tasks))
    start = plan["start"]
    if target == "premium_share_max":
        return float(plan["expected_premium_calls"][rows, start].sum()
                     / plan["expected_calls"][rows, start].sum())
    if target == "final_pass_min":
        return float(plan["expected_pass"][rows, start].mean())
    return float(plan["p"][rows, start].mean())  # first_pass_vs_static


def calibrate_knob(policy: RoutingPolicy, tasks: pd.DataFrame,
                   target: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Bisect the knob until the target holds; None when no target is set.

    - `first_pass_vs_static: true`: the smallest knob whose expected first-attempt pass rate
      is at least the static assignment's (same exposure to failures and gate errors);
    - `premium_share_max: x`: the largest knob whose expected premium-call share is <= x;
    - `final_pass_min: y`: the smallest knob whose expected final pass rate is >= y.
    """
    goal = {k: v for k, v in (target or {}).items() if v not in (None, False)}
    if not goal or not policy.learned:
        return None
    unknown = sorted(set(goal) - set(TARGETS))
    if unknown or len(goal) != 1:
        raise ValueError(f"router.calibrate needs exactly one of {TARGETS}, got {sorted(goal)}")
    (name, value), = goal.items()
    p = policy.start_tiers(tasks)["p"]  # predicted once; only the plan depends on the knob
    if name == "first_pass_vs_static":
        static_start = policy.static_starts(tasks["field"])
        value = float(p[np.arange(len(tasks)), static_start].mean())
    rising = name != "premium_share_max"  # expectation rises with the knob
    lo, hi = 0.0, 1.0
    for _ in range(12):
        mid = (lo + hi) / 2
        got = _expected(policy, tasks, p, mid, name)
        meets = got >= value if rising else got <= value
        if rising:
            lo, hi = (lo, mid) if meets else (mid, hi)
        else:
            lo, hi = (mid, hi) if meets else (lo, mid)
    knob = hi if rising else lo
    return {"target": name, "target_value": float(value), "knob": float(knob),
            "expected": _expected(policy, tasks, p, knob, name), "tasks": len(tasks)}
