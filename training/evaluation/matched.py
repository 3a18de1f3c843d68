"""Routers compared at matched quality: what each costs (and how long it takes) at the quality
a reference router delivers, read off each router's dial-swept frontier.

Every number here picks each router's operating point on the evaluation world itself, so it is
an upper bound on what a deployment gets (its dial is calibrated on its own logs instead): the
report labels it so, and the deployed rows stay the headline. Quality is the impact-weighted
true pass by default (a field's tasks weigh its impact score), with the unweighted true pass
beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from training.evaluation.compare import Points, cost_at, matched_comparison, quality_at, stack

UPPER_BOUND = "upper bound: each router's dial chosen on this world"


@dataclass
class Frontier:
    """A router's operating points (deployed first, then its sweep) as per-course totals:
    cost, latency, true passes and impact-weighted true passes."""

    cost: np.ndarray
    latency: np.ndarray
    passed: np.ndarray
    weighted: np.ndarray

    def points(self, weighted: bool, by_latency: bool = False) -> Points:
        return Points(self.latency if by_latency else self.cost,
                      self.weighted if weighted else self.passed)


@dataclass
class CourseTotals:
    """Per course: tasks and summed impact weights (the denominators of the two qualities)."""

    tasks: np.ndarray
    weights: np.ndarray

    def of(self, weighted: bool) -> np.ndarray:
        return self.weights if weighted else self.tasks


def at_quality(frontiers: dict[str, Frontier], totals: CourseTotals, target: float,
               weighted: bool, by_latency: bool = False) -> dict[str, float]:
    """Each router's least cost (or latency) per course at the target quality."""
    ones = np.ones((1, len(totals.tasks)))
    out = {}
    for name, f in frontiers.items():
        x, q = f.points(weighted, by_latency).at(ones, totals.of(weighted))
        out[name] = cost_at(x[0], q[0], target)
    return out


def matched_section(frontiers: dict[str, Frontier], totals: CourseTotals, *, reference: str,
                    baselines: list[str], compare: list[str], target: float, weighted: bool,
                    n_boot: int, seed: int) -> dict[str, Any]:
    """Cost and latency of every router at `reference`'s quality, and each compared router
    against the pooled simple baselines there (bootstrap CIs over courses)."""
    cost = at_quality(frontiers, totals, target, weighted)
    out: dict[str, Any] = {
        "quality": "impact-weighted true pass" if weighted else "true pass",
        "label": UPPER_BOUND, "match_quality_of": reference, "target": target,
        "baselines": baselines, "cost_at_target": cost,
        "latency_s_per_course_at_target": at_quality(frontiers, totals, target, weighted,
                                                     by_latency=True),
        "best_single_baseline": min(baselines, key=cost.get)}
    pooled = stack([frontiers[b].points(weighted) for b in baselines])
    for name in compare:
        if name in frontiers:
            out[name] = matched_comparison(
                frontiers[name].points(weighted), pooled, frontiers[reference].points(weighted),
                totals.of(weighted), n_boot=n_boot, seed=seed)
    return out


def quality_at_cost(frontier: Frontier, totals: CourseTotals, budget: float,
                    baseline_quality: float) -> dict[str, float]:
    """The learned frontier's impact-weighted true pass at a budget (the ladder's cost)."""
    ones = np.ones((1, len(totals.tasks)))
    c, q = frontier.points(True).at(ones, totals.weights)
    reached = quality_at(c[0], q[0], budget)
    return {"cost_per_course": budget, "learned": reached, "baseline": baseline_quality,
            "gain": reached - baseline_quality}


def learning_split(by_field: dict[str, dict[str, dict[str, float]]],
                   matched_cost: dict[str, float], static_cost: float) -> dict[str, Any]:
    """The saving against static split into what the planner gets from the lookup table and
    what the model adds over the table: per field at the deployed dials, and in all at
    matched impact-weighted quality (the upper bound)."""
    fields = {}
    for field, row in by_field.items():
        static, lookup, learned = (row[k]["cost_per_course"] for k in
                                   ("static", "lookup", "learned"))
        fields[field] = {"static": static, "planner_on_lookup": static - lookup,
                         "model_over_lookup": lookup - learned,
                         "true_pass": {k: row[k]["true_pass_rate"]
                                       for k in ("static", "lookup", "learned")}}
    lookup, learned = matched_cost.get("lookup"), matched_cost.get("learned")
    total = None
    if lookup is not None and learned is not None and np.isfinite([lookup, learned]).all():
        total = {"static": static_cost, "planner_on_lookup": static_cost - lookup,
                 "model_over_lookup": lookup - learned,
                 "model_share_of_saving": (lookup - learned) / (static_cost - learned)
                 if static_cost > learned else float("nan"), "label": UPPER_BOUND}
    return {"per_field_deployed": fields, "at_matched_weighted_quality": total}
