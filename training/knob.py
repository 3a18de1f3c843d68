"""Calibrate a policy's one dial to the user's target, on the held-out tasks of their logs.

The dial is `lam` (USD per bad outcome) for the expected-loss rule and `knob` for the
threshold rule. Each policy (learned or lookup table) is calibrated on its own predictions,
with the same grid and the same target, at training time; the value is stored in the
artifact so serving and evaluation use it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import check
from router_model.decide.policy import RoutingPolicy
from router_model.decide.settings import DIALS

TARGETS = ("bad_vs_static", "first_pass_vs_static", "first_pass_min", "premium_share_max",
           "final_pass_min")
# The plan's expectations a target reads, besides cost and bad (what every start uses):
# the held-out tasks are planned for these only.
TARGET_QUANTITIES = {"premium_share_max": ("premium_calls", "calls"),
                     "final_pass_min": ("pass",)}


def expected(plan: Mapping[str, np.ndarray], start: np.ndarray, target: str) -> float:
    """The policy's own expectation of the target quantity when starting at `start`."""
    rows = np.arange(len(start))
    if target == "premium_share_max":
        return float(plan["expected_premium_calls"][rows, start].sum()
                     / plan["expected_calls"][rows, start].sum())
    if target == "final_pass_min":
        return float(plan["expected_pass"][rows, start].mean())
    if target == "bad_vs_static":
        return float(plan["expected_bad"][rows, start].mean())
    return float(plan["p"][rows, start].mean())  # first_pass_vs_static, first_pass_min


@dataclass(frozen=True)
class CalibrationTarget:
    """`router.calibrate` (conf/router holds what each target means): at most one is set."""

    bad_vs_static: bool | None
    first_pass_vs_static: bool | None
    first_pass_min: float | None
    premium_share_max: float | None
    final_pass_min: float | None

    def __post_init__(self) -> None:
        goal = self.goals()
        check(len(goal) <= 1, "router.calibrate", sorted(goal),
              f"needs exactly one of {TARGETS}")

    def goals(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in TARGETS if getattr(self, k) not in (None, False)}

    def one(self) -> tuple[str, Any] | None:
        """The single target set, or None."""
        return next(iter(self.goals().items()), None)


def calibrate_dial(policy: RoutingPolicy, tasks: pd.DataFrame,
                   target: CalibrationTarget | None, p: np.ndarray | None = None
                   ) -> dict[str, Any] | None:
    """The least safe dial value whose expectation meets the target; None without a target.

    `*_vs_static` targets take their value from the static assignment under the same
    predictions (same exposure to failures and gate errors as the seed's rules). `p`: the
    policy's pass probabilities for `tasks` when the caller has them (`start_tiers`' "p").
    """
    goal = target.one() if target is not None else None
    if goal is None or not policy.learned:
        return None
    name, value = goal
    dial, grid = DIALS[policy.settings.rule]
    # Predicted and planned once; the dial only re-chooses.
    plan = policy.start_tiers(tasks, p, quantities=("cost", "bad",
                                                    *TARGET_QUANTITIES.get(name, ())))
    if name.endswith("_vs_static"):
        value = expected(plan, policy.rules.static_starts(tasks["field"]), name)
    got = np.array([expected(plan, policy.choice.with_settings(**{dial: float(g)}).starts_for(plan),
                             name) for g in grid])
    lower_is_better = name in ("bad_vs_static", "premium_share_max")
    meets = got <= value + 1e-12 if lower_is_better else got >= value - 1e-12
    if name == "premium_share_max":  # the riskiest dial that still keeps premium down
        idx = int(np.flatnonzero(meets)[-1]) if meets.any() else 0
    else:  # the cheapest dial from which the target holds
        idx = next((i for i in range(len(grid)) if meets[i:].all()), len(grid) - 1)
    return {"dial": dial, "value": float(grid[idx]), "target": name,
            "target_value": float(value), "expected": float(got[idx]), "tasks": len(tasks)}
