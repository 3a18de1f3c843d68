"""Routers compared at matched quality: what each costs (and how long it takes) at the quality
a reference router delivers, read off each router's dial-swept frontier.

Every number here picks each router's operating point on the evaluation world itself, so it is
an upper bound on what a deployment gets (its dial is calibrated on its own logs instead): the
report labels it so, and the deployed rows stay the headline. Quality is matched two ways:
the reference's impact-weighted true pass together with its high-impact true pass (less
`HIGH_IMPACT_SLACK`), so that no mix buys its saving on the fields that matter most, and the
plain true pass alone, beside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from training.evaluation.compare import (
    Points,
    best_quality_within,
    cheapest_mix,
    matched_comparison,
    stack,
)

UPPER_BOUND = "upper bound: each router's dial chosen on this world"
HIGH_IMPACT_SLACK = 0.005  # the high-impact true pass may be this far below the reference's
MATCHES = {"weighted": {"weighted": 0.0, "high": -HIGH_IMPACT_SLACK}, "unweighted": {
    "passed": 0.0}}
QUALITY = {"weighted": "impact-weighted true pass, with the high-impact true pass within "
                       f"{HIGH_IMPACT_SLACK}", "unweighted": "true pass"}


@dataclass
class Frontier:
    """A router's operating points (deployed first, then its sweep) as per-course totals:
    cost, latency, true passes, impact-weighted true passes and high-impact true passes."""

    cost: np.ndarray
    latency: np.ndarray
    passed: np.ndarray
    weighted: np.ndarray
    high: np.ndarray

    def points(self, by_latency: bool = False) -> Points:
        return Points(self.latency if by_latency else self.cost, self.passed,
                      {"weighted": self.weighted, "high": self.high})


@dataclass
class CourseTotals:
    """Per course: each quality's denominator (tasks, summed impact, high-impact tasks)."""

    passed: np.ndarray
    weighted: np.ndarray
    high: np.ndarray

    def of(self, names: dict[str, float]) -> dict[str, np.ndarray]:
        return {n: getattr(self, n) for n in names}


def at_quality(frontiers: dict[str, Frontier], totals: CourseTotals,
               targets: dict[str, float], by_latency: bool = False) -> dict[str, float]:
    """Each router's least cost (or latency) per course at the target qualities."""
    ones = np.ones((1, len(totals.passed)))
    out = {}
    for name, f in frontiers.items():
        x, q = f.points(by_latency).rates(ones, totals.of(targets))
        out[name] = cheapest_mix(x[0], {n: v[0] for n, v in q.items()}, targets)
    return out


def matched_section(frontiers: dict[str, Frontier], totals: CourseTotals, match: str, *,
                    reference: str, baselines: list[str], compare: list[str],
                    n_boot: int, seed: int) -> dict[str, Any]:
    """Cost and latency of every router at `reference`'s qualities (`MATCHES[match]`), and
    each compared router against the pooled simple baselines there (bootstrap CIs)."""
    slack = MATCHES[match]
    ones = np.ones((1, len(totals.passed)))
    _, ref = frontiers[reference].points().rates(ones, totals.of(slack))
    targets = {n: float(v[0, 0]) + slack[n] for n, v in ref.items()}
    cost = at_quality(frontiers, totals, targets)
    out: dict[str, Any] = {
        "quality": QUALITY[match], "label": UPPER_BOUND, "match_quality_of": reference,
        "targets": targets, "target": targets[next(iter(targets))], "baselines": baselines,
        "cost_at_target": cost,
        "latency_s_per_course_at_target": at_quality(frontiers, totals, targets,
                                                     by_latency=True),
        "best_single_baseline": min(baselines, key=cost.get)}
    pooled = stack([frontiers[b].points() for b in baselines])
    for name in compare:
        if name in frontiers:
            out[name] = matched_comparison(
                frontiers[name].points(), pooled, frontiers[reference].points(),
                totals.of(slack), n_boot=n_boot, seed=seed, slack=slack)
    return out


def quality_at_cost(frontier: Frontier, totals: CourseTotals, budget: float,
                    baseline_quality: float) -> dict[str, float]:
    """The learned frontier's impact-weighted true pass at a budget (the ladder's cost)."""
    ones = np.ones((1, len(totals.passed)))
    c, q = frontier.points().rates(ones, {"weighted": totals.weighted})
    reached = best_quality_within(c[0], q["weighted"][0], budget)
    return {"cost_per_course": budget, "learned": reached, "baseline": baseline_quality,
            "gain": reached - baseline_quality}


def learning_split(by_field: dict[str, dict[str, dict[str, float]]],
                   matched_cost: dict[str, float], static_cost: float) -> dict[str, Any]:
    """The saving against static split into what the planner gets from the lookup table and
    what the model adds over the table: per field at the deployed dials, and in all at
    matched quality (the upper bound)."""
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
    return {"per_field_deployed": fields, "at_matched_quality": total}
