"""A dial with a finite-sample guarantee: Learn-then-Test on the held-out log courses.

Target: the first attempt passes the gate on at least `first_pass_min` of tasks, with
probability at least 1 - delta over the draw of the held-out courses. For each dial value,
from safest to riskiest (fixed-sequence testing, so no multiplicity correction is needed),
H0: "the policy's first-attempt failure rate exceeds 1 - first_pass_min" is tested; the
riskiest (cheapest) value rejected before the first non-rejection is chosen.

The loss of a policy the logs did not run is estimated per task with the doubly robust
pseudo-loss (the model's predicted failure at the policy's start, corrected by the logged
outcome where the logged start matches, weighted by the logged propensity); its course means
are bounded, and the p-value comes from a betting test on them (Waudby-Smith & Ramdas,
JRSS-B 2024: a predictable-plug-in bet; Ville's inequality makes 1 / max capital a valid
p-value). Courses, not tasks, are the independent units.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import check
from router_model.decide.policy import RoutingPolicy
from router_model.decide.settings import DIALS
from training.propensity import doubly_robust


@dataclass(frozen=True)
class GuaranteeSettings:
    """`router.guarantee` (conf/router): the target first-attempt pass, or None for no
    guarantee, certified with probability >= 1 - delta."""

    first_pass_min: float | None
    delta: float

    def __post_init__(self) -> None:
        if self.first_pass_min is not None:
            check(0.0 < self.first_pass_min < 1.0, "router.guarantee.first_pass_min",
                  self.first_pass_min, "must be in (0, 1) (or null for no guarantee)")
        check(0.0 < self.delta < 1.0, "router.guarantee.delta", self.delta, "must be in (0, 1)")


def betting_p_value(x: np.ndarray, m0: float, delta: float, seed: int = 0) -> float:
    """p-value for H0: E[x] >= m0 against E[x] < m0, for x in [0, 1] (i.i.d. units)."""
    if not 0.0 < m0 < 1.0:
        return 0.0 if m0 >= 1.0 else 1.0
    x = np.random.default_rng(seed).permutation(np.clip(x, 0.0, 1.0))
    t = np.arange(1, len(x) + 1)
    mean = (0.5 + np.cumsum(x)) / (t + 1)  # running estimates, predictable (shifted below)
    var = (0.25 + np.cumsum((x - mean) ** 2)) / (t + 1)
    prev_var = np.concatenate([[0.25], var[:-1]])
    bet = np.sqrt(2 * np.log(1 / delta) / (prev_var * t * np.log(t + 1)))
    bet = np.minimum(bet, 0.75 / (1.0 - m0))  # capital stays positive: 1 + bet*(m0 - x) > 0
    log_capital = np.cumsum(np.log1p(bet * (m0 - x)))
    return float(min(1.0, np.exp(-log_capital.max())))


def logged_starts(rows: pd.DataFrame, ladder: list[str]) -> pd.DataFrame:
    """One row per held-out task whose chain started on a ladder tier: the logged start, its
    first-attempt verdict and propensity."""
    start = rows[rows["is_start"].astype(bool) & rows["tier"].isin(ladder)]
    return start.drop_duplicates("task_id").reset_index(drop=True)


def dr_failure(plan: dict[str, np.ndarray], start: np.ndarray, logged: pd.DataFrame,
               ladder: list[str]) -> np.ndarray:
    """Per-task doubly robust estimate of the first-attempt failure of starting at `start`:
    the failure is the reward, the model's 1 - P(pass) its reward model."""
    a = logged["tier"].map({t: i for i, t in enumerate(ladder)}).to_numpy()
    return doubly_robust(1.0 - plan["p"], 1.0 - logged["label"].to_numpy(float), start, a,
                         logged["propensity"].to_numpy(float))


def learn_then_test(policy: RoutingPolicy, rows: pd.DataFrame, first_pass_min: float,
                    delta: float, seed: int = 0) -> dict[str, Any]:
    """The cheapest dial whose first-attempt pass >= first_pass_min is certified at 1-delta."""
    if not policy.learned:
        raise ValueError("the guarantee needs a trained model's pass probabilities; "
                         "run router-train first")
    ladder = policy.ladder
    logged = logged_starts(rows, ladder)
    plan = policy.start_tiers(logged)
    dial, grid = DIALS[policy.settings.rule]
    course_codes, course = np.unique(logged["course_id"].to_numpy(), return_inverse=True)
    counts = np.bincount(course)
    max_w = 1.0 / logged["propensity"].min()
    lo, hi = -max_w, 1.0 + max_w  # bounds of the per-task (so per-course mean) estimate
    alpha = 1.0 - first_pass_min
    tested, chosen = [], None
    for value in grid[::-1]:  # safest first
        start = policy.choice.with_settings(**{dial: float(value)}).starts_for(plan)
        loss = np.bincount(course, weights=dr_failure(plan, start, logged, ladder)) / counts
        p_value = betting_p_value((loss - lo) / (hi - lo), (alpha - lo) / (hi - lo), delta,
                                  seed)
        tested.append({"value": float(value), "first_pass_estimate": float(1 - loss.mean()),
                       "p_value": p_value})
        if p_value > delta:
            break
        chosen = float(value)
    return {"dial": dial, "value": chosen, "certified": chosen is not None,
            "first_pass_min": first_pass_min, "delta": delta, "courses": len(course_codes),
            "tested": tested}
