"""A router against the best simple baseline, at matched quality, with a course bootstrap.

Every policy is a set of operating points (its dial swept, or one point); mixing operating
points course by course achieves any convex combination of them, so a policy's cost at a
target quality is the cheapest mix of its points that reaches it: a small linear programme,
which also holds several quality targets at once (the impact-weighted true pass and the
high-impact one). The baselines are pooled: the best simple baseline may be any mix of them.
The targets are a reference router's qualities on the same courses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linprog

from training.evaluation.routing_metrics import percentile_interval, resample_counts


@dataclass
class Points:
    """A policy's operating points as per-course totals: (points, courses) arrays of cost and
    of each quality's numerator (`passed`: true passes; `extra`: e.g. impact-weighted ones)."""

    cost: np.ndarray
    passed: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def numerator(self, name: str) -> np.ndarray:
        return self.passed if name == "passed" else self.extra[name]

    def rates(self, weights: np.ndarray, denominators: Mapping[str, np.ndarray]
              ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Cost per course and each quality's rate of every point under course weights
        (weights: (B, courses)); (B, points) arrays."""
        n = weights.sum(axis=1, keepdims=True)
        rates = {name: (weights @ self.numerator(name).T) / (weights @ d)[:, None]
                 for name, d in denominators.items()}
        return (weights @ self.cost.T) / n, rates

    def at(self, weights: np.ndarray, tasks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cost per course, true pass rate) of every point: `rates` for the true pass."""
        cost, rates = self.rates(weights, {"passed": tasks})
        return cost, rates["passed"]


def stack(points: list[Points]) -> Points:
    names = set.intersection(*(set(p.extra) for p in points)) if points else set()
    return Points(np.vstack([p.cost for p in points]), np.vstack([p.passed for p in points]),
                  {n: np.vstack([p.extra[n] for p in points]) for n in names})


def cheapest_mix(cost: np.ndarray, quality: Mapping[str, np.ndarray],
                 targets: Mapping[str, float]) -> float:
    """The least cost of a mix of the points whose every quality reaches its target
    (inf when no mix does)."""
    finite = np.isfinite(cost)
    if not finite.any():
        return float("inf")
    c = cost[finite]
    rows = [-np.asarray(quality[n], float)[finite] for n in targets]
    bounds = [-(t - 1e-12) for t in targets.values()]
    result = linprog(c, A_ub=np.vstack(rows), b_ub=bounds, A_eq=np.ones((1, len(c))),
                     b_eq=[1.0], bounds=(0, None), method="highs")
    return float(result.fun) if result.status == 0 else float("inf")


def cost_at(cost: np.ndarray, quality: np.ndarray, target: float) -> float:
    """Least cost at which a mix of the points reaches `target` (inf if it never does)."""
    return cheapest_mix(np.asarray(cost, float), {"q": quality}, {"q": target})


def best_quality_within(cost: np.ndarray, quality: np.ndarray, budget: float) -> float:
    """Best quality a mix of the points reaches within `budget` (NaN if none is that
    cheap)."""
    cost, quality = np.asarray(cost, float), np.asarray(quality, float)
    if budget < cost.min() - 1e-12:
        return float("nan")
    result = linprog(-quality, A_ub=cost[None, :], b_ub=[budget + 1e-12],
                     A_eq=np.ones((1, len(cost))), b_eq=[1.0], bounds=(0, None),
                     method="highs")
    return float(-result.fun)


def matched_comparison(policy: Points, baselines: Points, reference: Points,
                       denominators: Mapping[str, np.ndarray] | np.ndarray, *, n_boot: int,
                       seed: int, slack: Mapping[str, float] | None = None,
                       level: float = 0.95) -> dict[str, Any]:
    """Cost of `policy` and of the pooled baselines at the reference's qualities.

    `denominators`: per course, each quality's denominator (an array alone: the true pass
    over task counts); the targets are the reference's first point's rates plus `slack`.
    Returns point values with percentile intervals (`level`) over courses of the saving
    (1 - policy / best baseline) and of the difference (baseline - policy, $ per course).
    """
    if not isinstance(denominators, Mapping):
        denominators = {"passed": denominators}
    slack = slack or {}

    def one(weights: np.ndarray) -> np.ndarray:
        pc, pq = policy.rates(weights, denominators)
        bc, bq = baselines.rates(weights, denominators)
        _, rq = reference.rates(weights, denominators)
        out = np.empty((len(weights), 3))
        for b in range(len(weights)):
            targets = {n: float(rq[n][b, 0]) + slack.get(n, 0.0) for n in denominators}
            out[b] = (cheapest_mix(pc[b], {n: pq[n][b] for n in pq}, targets),
                      cheapest_mix(bc[b], {n: bq[n][b] for n in bq}, targets),
                      targets[next(iter(targets))])
        return out

    first = next(iter(denominators.values()))
    point = one(np.ones((1, len(first))))[0]
    reps = one(resample_counts(len(first), n_boot, seed).astype(float))
    saving = 1.0 - reps[:, 0] / reps[:, 1]
    diff = reps[:, 1] - reps[:, 0]
    lo, hi = percentile_interval(saving, level)
    dlo, dhi = percentile_interval(diff, level)
    return {"target_true_pass": float(point[2]), "policy_cost": float(point[0]),
            "best_baseline_cost": float(point[1]),
            "saving": {"value": float(1.0 - point[0] / point[1]), "ci_low": lo, "ci_high": hi},
            "difference_per_course": {"value": float(point[1] - point[0]),
                                      "ci_low": dlo, "ci_high": dhi}}
