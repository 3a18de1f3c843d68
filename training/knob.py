"""Calibrate a policy's dial to the user's target, on the held-out tasks of their logs.

The dial is `lam` (USD per bad outcome) for the expected-loss rule and `knob` for the
threshold rule. Each policy (learned or lookup table) is calibrated on its own predictions,
with the same grid and the same target, at training time; the value is stored in the
artifact so serving and evaluation use it.

The default target is the static assignment's impact-weighted expected bad-outcome rate, so
a saving on a low-impact field cannot pay for a loss on a high-impact one. Fields with a
quality floor (conf/fields `floor_tolerance`) get a dial of their own first: the cheapest
lam from which the field's expected true pass stays within the tolerance of the rules'.
Expectations are the plan's, on the pessimistic probabilities it acts on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import check
from router_model.decide.policy import RoutingPolicy
from router_model.decide.rules import Fields
from router_model.decide.settings import DIALS

TARGETS = ("weighted_bad_vs_static", "bad_vs_static", "first_pass_vs_static",
           "first_pass_min", "premium_share_max", "final_pass_min")
LOWER_IS_BETTER = ("weighted_bad_vs_static", "bad_vs_static", "premium_share_max")
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
    if target == "weighted_bad_vs_static":
        return float(np.average(plan["expected_bad"][rows, start], weights=plan["impact"]))
    if target == "bad_vs_static":
        return float(plan["expected_bad"][rows, start].mean())
    return float(plan["p_plan"][rows, start].mean())  # first_pass_vs_static, first_pass_min


@dataclass(frozen=True)
class CalibrationTarget:
    """`router.calibrate` (conf/router holds what each target means): at most one is set."""

    weighted_bad_vs_static: bool | None
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


def cheapest_meeting(got: np.ndarray, value: float, name: str) -> int:
    """The grid index a target picks: the cheapest dial from which it holds (the riskiest
    that keeps premium down, for premium_share_max)."""
    meets = got <= value + 1e-12 if name in LOWER_IS_BETTER else got >= value - 1e-12
    if name == "premium_share_max":
        return int(np.flatnonzero(meets)[-1]) if meets.any() else 0
    return next((i for i in range(len(got)) if meets[i:].all()), len(got) - 1)


def field_names(plan: Mapping[str, Any]) -> np.ndarray:
    """Each planned task's field name."""
    fields = plan["fields"]
    return np.asarray(fields.names, dtype=object)[fields.codes]


def subplan(plan: Mapping[str, Any], mask: np.ndarray) -> dict[str, Any]:
    """The plan of the tasks under `mask` only."""
    fields = plan["fields"]
    out = {k: v[mask] for k, v in plan.items() if isinstance(v, np.ndarray) and v.ndim
           and len(v) == len(mask)}
    return {**out, "fields": Fields(fields.codes[mask], fields.names)}


def floor_dials(policy: RoutingPolicy, plan: Mapping[str, Any], static: np.ndarray
                ) -> dict[str, float]:
    """Per field with a quality floor (conf/fields `floor_tolerance`), the cheapest lam from
    which its mean expected bad outcome stays within the tolerance of the static start's."""
    _, grid = DIALS["expected_loss"]
    names = field_names(plan)
    out = {}
    for name, spec in policy.catalog.fields.items():
        mask = names == name
        if spec.floor_tolerance is None or not mask.any():
            continue
        part = subplan(plan, mask)
        rows = np.arange(int(mask.sum()))
        limit = float(part["expected_bad"][rows, static[mask]].mean() + spec.floor_tolerance)
        got = np.array([part["expected_bad"][rows, policy.choice.with_settings(
            lam=float(g), field_lams={}).starts_for(part)].mean() for g in grid])
        out[name] = float(grid[cheapest_meeting(got, limit, "bad_vs_static")])
    return out


def calibrate_dial(policy: RoutingPolicy, tasks: pd.DataFrame,
                   target: CalibrationTarget | None, p: np.ndarray | None = None
                   ) -> dict[str, Any] | None:
    """The least safe dial value whose expectation meets the target; None without a target.

    `*_vs_static` targets take their value from the static assignment under the same
    predictions (same exposure to failures and gate errors as the seed's rules). `p`: the
    policy's pass probabilities for `tasks` when the caller has them (`start_tiers`' "p").
    The expected-loss rule first sets the floored fields' own dials (`floor_dials`).
    """
    goal = target.one() if target is not None else None
    if goal is None or not policy.learned:
        return None
    name, value = goal
    dial, grid = DIALS[policy.settings.rule]
    # Predicted and planned once; the dial only re-chooses.
    plan = policy.start_tiers(tasks, p, quantities=("cost", "bad",
                                                    *TARGET_QUANTITIES.get(name, ())))
    static = policy.rules.static_starts(tasks["field"])
    if name.endswith("_vs_static"):
        value = expected(plan, static, name)
    field_lams = floor_dials(policy, plan, static) if dial == "lam" else {}
    choice = policy.choice.with_settings(field_lams=field_lams)
    got = np.array([expected(plan, choice.with_settings(**{dial: float(g)}).starts_for(plan),
                             name) for g in grid])
    idx = cheapest_meeting(got, value, name)
    return {"dial": dial, "value": float(grid[idx]), "target": name,
            "target_value": float(value), "expected": float(got[idx]), "tasks": len(tasks),
            **({"field_lams": field_lams} if field_lams else {})}
