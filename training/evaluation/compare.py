"""Learned against the best simple baseline, at matched true pass, with a course bootstrap.

Every policy is a set of operating points (its dial swept, or one point); mixing two
operating points course by course achieves the straight line between them, so a policy's
cost at a target quality is read off the upper convex hull of its points. The baselines are
pooled: the best simple baseline may be any mix of them. The target quality is the static
assignment's true pass rate on the same courses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from training.evaluation.routing_metrics import (
    cost_for_quality,
    percentile_interval,
    resample_counts,
    upper_hull,
)


@dataclass
class Points:
    """A policy's operating points as per-course totals: (points, courses) arrays."""

    cost: np.ndarray
    passed: np.ndarray

    def at(self, weights: np.ndarray, tasks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cost per course, true pass rate) of every point under course weights
        (weights: (B, courses)); returns (B, points) arrays."""
        n = weights.sum(axis=1, keepdims=True)
        return (weights @ self.cost.T) / n, (weights @ self.passed.T) / (weights @ tasks)[:, None]


def stack(points: list[Points]) -> Points:
    return Points(np.vstack([p.cost for p in points]), np.vstack([p.passed for p in points]))


def cost_at(cost: np.ndarray, quality: np.ndarray, target: float) -> float:
    """Least cost at which the hull of the points reaches `target` (inf if it never does)."""
    return cost_for_quality(cost, quality, target - 1e-12)


def quality_at(cost: np.ndarray, quality: np.ndarray, budget: float) -> float:
    """Best true pass the hull of the points reaches within `budget` (NaN if it cannot)."""
    xs, ys = upper_hull(cost, quality)
    if budget < xs[0] - 1e-12:
        return float("nan")
    return float(np.interp(budget, xs, ys))


def matched_comparison(policy: Points, baselines: Points, reference: Points,
                       tasks: np.ndarray, *, n_boot: int, seed: int, level: float = 0.95
                       ) -> dict[str, Any]:
    """Cost of `policy` and of the pooled baselines at the reference's true pass rate.

    Returns point values with percentile intervals (`level`) over courses of the saving
    (1 - policy / best baseline) and of the difference (baseline - policy, $ per course).
    """
    def one(weights: np.ndarray) -> np.ndarray:
        pc, pq = policy.at(weights, tasks)
        bc, bq = baselines.at(weights, tasks)
        _, rq = reference.at(weights, tasks)
        out = np.empty((len(weights), 3))
        for b in range(len(weights)):
            target = float(rq[b, 0])
            out[b] = (cost_at(pc[b], pq[b], target), cost_at(bc[b], bq[b], target), target)
        return out

    point = one(np.ones((1, len(tasks))))[0]
    reps = one(resample_counts(len(tasks), n_boot, seed).astype(float))
    saving = 1.0 - reps[:, 0] / reps[:, 1]
    diff = reps[:, 1] - reps[:, 0]
    lo, hi = percentile_interval(saving, level)
    dlo, dhi = percentile_interval(diff, level)
    return {"target_true_pass": float(point[2]), "policy_cost": float(point[0]),
            "best_baseline_cost": float(point[1]),
            "saving": {"value": float(1.0 - point[0] / point[1]), "ci_low": lo, "ci_high": hi},
            "difference_per_course": {"value": float(point[1] - point[0]),
                                      "ci_low": dlo, "ci_high": dhi}}
