"""`router-guarantee-coverage`: does the guarantee hold as often as it says, and what does it
cost?

Each deployment draws fresh logs (with the configured exploration and audit), trains with
the guarantee on (training/guarantee.py: the cheapest lam whose impact-weighted true pass is
certified at or above static's, less the margin, with probability >= 1 - delta, on courses
kept out of every fit), and keeps the point-calibrated lam beside it; a fresh world is then
replayed with the certified lam, the point lam and the static rules. The coverage is the
share of certifying deployments whose certified lam really kept the impact-weighted true
pass at or above static's (less the margin) on that world: it should be >= 1 - delta.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router_model.config import Catalog, check
from router_model.decide.policy import RoutingPolicy
from router_model.decide.replay import replay


@dataclass(frozen=True)
class CoverageSettings:
    """router_coverage (conf/router_coverage.yaml says what each key does)."""

    deployments: int
    first_seed: int
    delta: float
    margin: float
    n_courses: int
    epsilon: float
    audit_courses: int
    eval_courses: int
    train_overrides: list[str]
    n_jobs: int
    reports_dir: str

    def __post_init__(self) -> None:
        check(self.deployments >= 1, "deployments", self.deployments, "must be >= 1")
        check(0.0 < self.delta < 1.0, "delta", self.delta, "must be in (0, 1)")
        check(0.0 <= self.margin < 1.0, "margin", self.margin, "must be in [0, 1)")
        check(0.0 <= self.epsilon <= 1.0, "epsilon", self.epsilon, "must be in [0, 1]")
        check(self.audit_courses >= 0, "audit_courses", self.audit_courses, "must be >= 0")
        check(self.n_jobs >= 1, "n_jobs", self.n_jobs, "must be >= 1")


def realized(policy: RoutingPolicy, world: Any, start: np.ndarray, catalog: Catalog
             ) -> dict[str, float]:
    """Impact-weighted true pass and cost per course of starting the world's tasks at
    `start` (ladder indices)."""
    from pipeline.world import task_table

    tasks = task_table(world)
    impact = tasks["field"].map({n: s.impact for n, s in catalog.fields.items()}).to_numpy(float)
    res = replay(world.cube, start, catalog)
    return {"weighted_true_pass": float(np.average(res.true_pass, weights=impact)),
            "cost_per_course": float(res.cost.sum() / tasks["course_id"].nunique())}


def deployment_row(seed: int, trained: dict[str, Any], policy: RoutingPolicy, world: Any,
                   catalog: Catalog) -> dict[str, Any]:
    """One deployment's record: the static rules, the point lam and (when one was certified)
    the certified lam, each realized on the fresh world."""
    from pipeline.world import task_table

    tasks = task_table(world)
    plan = policy.start_tiers(tasks)
    g = trained["guarantee"]
    point = trained["calibration"]["policy"]["value"]  # the point calibration, kept apart
    out: dict[str, Any] = {
        "seed": seed, "certified": g["certified"], "lam_point": point,
        "labelled_courses": g["labelled_courses"], "outcome": g["outcome"],
        "static": realized(policy, world, policy.rules.static_starts(tasks["field"]), catalog),
        "point": realized(policy, world, policy.choice.with_settings(lam=point)
                          .starts_for(plan), catalog)}
    if g["certified"]:
        out["lam_guaranteed"] = g["value"]
        out["guaranteed"] = realized(policy, world, policy.choice.with_settings(
            lam=g["value"]).starts_for(plan), catalog)
    return out


def coverage_report(settings: CoverageSettings, runs: list[dict[str, Any]],
                    record: dict[str, Any]) -> dict[str, Any]:
    """How often the certified lam held, what it cost against the point lam and static;
    metrics.json."""
    def held(r: dict[str, Any], key: str) -> bool:
        return r[key]["weighted_true_pass"] >= r["static"]["weighted_true_pass"] - settings.margin

    cert = [r for r in runs if r["certified"]]
    result = {
        "delta": settings.delta, "margin": settings.margin, "epsilon": settings.epsilon,
        "audit_courses": settings.audit_courses, "deployments": len(runs),
        "certified": len(cert),
        "coverage": float(np.mean([held(r, "guaranteed") for r in cert])) if cert
        else float("nan"),
        "point_calibration_coverage": float(np.mean([held(r, "point") for r in runs])),
        "guarantee_cost_vs_point": _mean_ratio(cert, "guaranteed", "point"),
        "guarantee_cost_vs_static": _mean_ratio(cert, "guaranteed", "static"),
        "runs": runs, "config": record,
    }
    out = Path(settings.reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def _mean_ratio(runs: list[dict[str, Any]], top: str, bottom: str) -> float:
    ratios = [r[top]["cost_per_course"] / r[bottom]["cost_per_course"] for r in runs]
    return float(np.mean(ratios)) if ratios else float("nan")


def summary(result: dict[str, Any]) -> str:
    return (f"Guarantee: impact-weighted true pass >= static's - {result['margin']} with "
            f"probability >= {1 - result['delta']:.2f}; logs with {result['epsilon']:.0%} "
            f"exploration and {result['audit_courses']} audited courses. "
            f"{result['certified']} of {result['deployments']} deployments certified a lam; "
            f"realized coverage {result['coverage']:.0%} (point calibration without the "
            f"guarantee: {result['point_calibration_coverage']:.0%}); the certified lam costs "
            f"{result['guarantee_cost_vs_point']:.2f}x the point one and "
            f"{result['guarantee_cost_vs_static']:.2f}x static per course.")
