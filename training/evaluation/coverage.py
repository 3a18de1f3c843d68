"""`router-guarantee-coverage`: does the Learn-then-Test guarantee hold as often as it says?

Each deployment draws fresh logs, trains, certifies the cheapest lam whose first-attempt pass
is at least `first_pass_min` with probability >= 1 - delta (training/guarantee.py), and also
takes the point-calibrated lam (the model's own expectation meets the target, no guarantee);
then a fresh world is replayed and the realized first-attempt pass of both is measured. The
coverage is the share of deployments where the certified lam's realized pass met the target;
it should be >= 1 - delta. The cost of the guarantee is the certified lam's cost against the
point one's.
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
    first_pass_min: float
    delta: float
    n_courses: int
    epsilon: float
    eval_courses: int
    train_overrides: list[str]
    n_jobs: int
    reports_dir: str

    def __post_init__(self) -> None:
        check(self.deployments >= 1, "deployments", self.deployments, "must be >= 1")
        check(0.0 < self.first_pass_min < 1.0, "first_pass_min", self.first_pass_min,
              "must be in (0, 1)")
        check(0.0 < self.delta < 1.0, "delta", self.delta, "must be in (0, 1)")
        check(0.0 <= self.epsilon <= 1.0, "epsilon", self.epsilon, "must be in [0, 1]")
        check(self.n_jobs >= 1, "n_jobs", self.n_jobs, "must be >= 1")


def realized(policy: RoutingPolicy, world: Any, lam: float, catalog: Catalog
             ) -> dict[str, float]:
    """First-attempt gate pass (tasks on the ladder) and cost per course under `lam`."""
    from pipeline.world import task_table

    tasks = task_table(world)
    start = policy.with_settings(lam=lam).start_tiers(tasks)["start"]
    cube = world.cube
    rows = np.flatnonzero(~cube.overflow)
    s = start[rows]
    first = cube.schema_valid[rows, s, 0] & (cube.similarity[rows, s, 0]
                                             >= cube.pass_threshold[rows])
    res = replay(cube, start, catalog)
    return {"first_pass": float(first.mean()),
            "cost_per_course": float(res.cost.sum() / tasks["course_id"].nunique()),
            "true_pass": float(res.true_pass.mean())}


def deployment_row(seed: int, trained: dict[str, Any], policy: RoutingPolicy, world: Any,
                   catalog: Catalog) -> dict[str, Any]:
    """One deployment's record: the certified and the point-calibrated lam, each realized."""
    g = trained["guarantee"]
    point = trained["calibration"]["policy"]["value"]  # the point calibration, kept apart
    out: dict[str, Any] = {"seed": seed, "certified": g["certified"], "lam_point": point,
                           "point": realized(policy, world, point, catalog)}
    if g["certified"]:
        out["lam_guaranteed"] = g["value"]
        out["guaranteed"] = realized(policy, world, g["value"], catalog)
    return out


def coverage_report(settings: CoverageSettings, runs: list[dict[str, Any]],
                    record: dict[str, Any]) -> dict[str, Any]:
    """How often the certified lam held, against the point one; metrics.json."""
    target = settings.first_pass_min
    cert = [r for r in runs if r["certified"]]
    held = [r["guaranteed"]["first_pass"] >= target for r in cert]
    point_held = [r["point"]["first_pass"] >= target for r in runs]
    cost_ratio = [r["guaranteed"]["cost_per_course"] / r["point"]["cost_per_course"]
                  for r in cert]
    result = {
        "first_pass_min": target, "delta": settings.delta, "deployments": len(runs),
        "certified": len(cert),
        "coverage": float(np.mean(held)) if held else float("nan"),
        "point_calibration_coverage": float(np.mean(point_held)),
        "guarantee_cost_ratio_mean": float(np.mean(cost_ratio)) if cost_ratio else float("nan"),
        "runs": runs, "config": record,
    }
    out = Path(settings.reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def summary(result: dict[str, Any]) -> str:
    return (f"Guarantee: first-attempt pass >= {result['first_pass_min']} with probability >= "
            f"{1 - result['delta']:.2f}; {result['certified']} of {result['deployments']} "
            f"deployments certified a lam; realized coverage {result['coverage']:.0%} "
            f"(point calibration without the guarantee: "
            f"{result['point_calibration_coverage']:.0%}); the guaranteed lam costs "
            f"{result['guarantee_cost_ratio_mean']:.2f}x the point one per course.")
