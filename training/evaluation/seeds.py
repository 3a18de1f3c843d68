"""`router-evaluate-seeds`: simulate -> train -> evaluate again and again, one training seed
at a time, in every configured world, so no headline rests on one lucky seed.

Each run draws fresh logs (seed s), trains on them, calibrates on their held-out courses and
replays a fresh evaluation world (seed s + the evaluation offset). Per world it reports the
mean, the worst seed and a t-interval of the mean over seeds: an interval that includes the
model's variance, not only the evaluation courses'.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from router_model.config import check


def _deployed(router: str, key: str) -> Any:
    return lambda r: r["policies"][router][key]


def _matched(match: str, key: str) -> Any:
    return lambda r: r["matched"][match]["learned"][key] if key in r["matched"][match][
        "learned"] else r["matched"][match]["learned"]["saving"][key]


# What each run contributes to the summary, from router-evaluate's result: the deployed rows
# (every router at the dial its own training logs set), the targets on them, and the upper
# bound at matched quality (dials chosen on the evaluation world).
HEADLINES = {
    **{f"{router}_{short}": _deployed(router, key)
       for router in ("learned", "static", "lookup")
       for short, key in (("cost", "cost_per_course"), ("weighted_true_pass",
                                                         "weighted_true_pass_rate"),
                          ("high_impact_true_pass", "high_impact_true_pass_rate"),
                          ("true_pass", "true_pass_rate"))},
    "deployed_cost_vs_static": lambda r: r["targets"]["deployed_cost_<=_50%_of_static"]["value"],
    "deployed_weighted_gain_vs_static": lambda r: r["targets"][
        "deployed_weighted_true_pass_>=_static"]["value"],
    "deployed_high_impact_gain_vs_static": lambda r: r["targets"][
        "deployed_high_impact_true_pass_>=_static-0.005"]["value"],
    "upper_bound_saving_vs_best_baseline": _matched("weighted", "value"),
    "upper_bound_saving_vs_best_baseline_ci_low": _matched("weighted", "ci_low"),
    "upper_bound_learned_cost": _matched("weighted", "policy_cost"),
    "upper_bound_best_baseline_cost": _matched("weighted", "best_baseline_cost"),
    "upper_bound_unweighted_saving_vs_best_baseline": _matched("unweighted", "value"),
}
# The deployed-promise targets, checked on every run.
TARGETS = {
    "weighted_true_pass_>=_static": lambda r: r["deployed_weighted_gain_vs_static"] >= 0,
    "high_impact_true_pass_>=_static-0.005": lambda r: r["deployed_high_impact_gain_vs_static"]
    >= -0.005,
    "cost_<=_50%_of_static": lambda r: r["deployed_cost_vs_static"] <= 0.5,
}


@dataclass(frozen=True)
class SeedsSettings:
    """router_evaluate_seeds (conf/router_evaluate_seeds.yaml says what each key does)."""

    worlds: list[str]
    seeds: list[int]
    n_courses: int
    eval_courses: int
    bootstrap: int
    train_overrides: list[str]
    evaluate_overrides: list[str]
    n_jobs: int
    reports_dir: str

    def __post_init__(self) -> None:
        check(bool(self.worlds) and bool(self.seeds), "worlds, seeds",
              (self.worlds, self.seeds), "need at least one world and one seed")
        check(self.n_courses >= 1, "n_courses", self.n_courses, "must be >= 1")
        check(self.eval_courses >= 1, "eval_courses", self.eval_courses, "must be >= 1")
        check(self.n_jobs >= 1, "n_jobs", self.n_jobs, "must be >= 1")


def summarise(values: list[float]) -> dict[str, float]:
    """Mean, worst and best seed, and a 95% t-interval of the mean over seeds."""
    v = np.asarray(values, dtype=float)
    half = (stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
            if len(v) > 1 else float("nan"))
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
            "ci_low": float(v.mean() - half), "ci_high": float(v.mean() + half),
            "seeds": len(v)}


def seeds_report(runs: dict[str, list[dict[str, Any]]], out: Path, record: dict[str, Any]
                 ) -> dict[str, Any]:
    """Per world, each headline summarised over seeds; metrics.json and report.md in `out`."""
    summary = {w: {k: summarise([r[k] for r in rows]) for k in HEADLINES}
               for w, rows in runs.items()}
    every = [r for rows in runs.values() for r in rows]
    targets = {name: {"met_runs": sum(bool(ok(r)) for r in every), "runs": len(every)}
               for name, ok in TARGETS.items()}
    both = sum(all(TARGETS[k](r) for k in list(TARGETS)[:2]) for r in every)
    targets["both_quality_targets"] = {"met_runs": both, "runs": len(every)}
    result = {"runs": runs, "summary": summary, "targets": targets, "config": record}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = ["# The learned router over training seeds and worlds", "",
             f"Seeds {cfg['seeds']}; {cfg['n_courses']:,} simulated courses of logs per run, "
             f"a fresh {cfg['eval_courses']:,}-course evaluation world each time. `deployed`: "
             "each router at the dial calibrated on its own training logs. `upper bound`: "
             "the learned frontier against the pooled simple baselines at static's "
             "impact-weighted true pass with its high-impact true pass within 0.005, dials "
             "chosen on the evaluation world.", "", "## Targets over every run", "",
             "| target | runs met | runs |", "|---|---|---|"]
    for name, t in result["targets"].items():
        lines.append(f"| {name} | {t['met_runs']} | {t['runs']} |")
    lines += ["", "## Per world", "",
              "| world | headline | mean | worst seed | best seed | 95% t-interval of the mean |",
              "|---|---|---|---|---|---|"]
    for world, rows in result["summary"].items():
        for key, s in rows.items():
            lines.append(f"| {world} | {key} | {s['mean']:.4f} | {s['min']:.4f} | "
                         f"{s['max']:.4f} | [{s['ci_low']:.4f}, {s['ci_high']:.4f}] |")
    lines += ["", "## Every run", "", "| world | seed | deployed cost / static | w. true pass "
              "vs static | hi-impact vs static | upper bound: saving vs best baseline [CI low] "
              "| seconds |", "|---|---|---|---|---|---|---|"]
    for world, rows in result["runs"].items():
        for r in rows:
            lines.append(f"| {world} | {r['seed']} | {r['deployed_cost_vs_static']:.3f} | "
                         f"{r['deployed_weighted_gain_vs_static']:+.4f} | "
                         f"{r['deployed_high_impact_gain_vs_static']:+.4f} | "
                         f"{_saving(r['upper_bound_saving_vs_best_baseline'])} "
                         f"[{_saving(r['upper_bound_saving_vs_best_baseline_ci_low'])}] | "
                         f"{r['seconds']} |")
    return "\n".join(lines) + "\n"


def _saving(value: float) -> str:
    """A saving as a percentage; -inf where the learned frontier never reaches static's
    quality (its cost there is infinite), n/a where there is no interval."""
    if math.isnan(value):
        return "n/a"
    return "never reaches static's quality" if math.isinf(value) else f"{value:+.2%}"
