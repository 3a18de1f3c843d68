"""`router-evaluate-seeds`: simulate -> train -> evaluate again and again, one training seed
at a time, in every configured world, so no headline rests on one lucky seed.

Each run draws fresh logs (seed s), trains on them, calibrates on their held-out courses and
replays a fresh evaluation world (seed s + the evaluation offset). Per world it reports the
mean, the worst seed and a t-interval of the mean over seeds: an interval that includes the
model's variance, not only the evaluation courses'.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from router_model.config import check

# What each run contributes to the summary, from router-evaluate's result.
HEADLINES = {
    "saving_vs_best_baseline": lambda r: r["headline"]["learned"]["saving"]["value"],
    "saving_vs_best_baseline_ci_low": lambda r: r["headline"]["learned"]["saving"]["ci_low"],
    "saving_vs_static_at_its_quality": lambda r: 1.0 - r["headline"]["learned"][
        "policy_cost"] / r["policies"]["static"]["cost_per_course"],
    "learned_cost_at_static_quality": lambda r: r["headline"]["learned"]["policy_cost"],
    "best_baseline_cost_at_static_quality": lambda r: r["headline"]["learned"][
        "best_baseline_cost"],
    "learned_true_pass_at_calibrated_lam": lambda r: r["policies"]["learned"][
        "true_pass_rate"],
    "static_true_pass": lambda r: r["policies"]["static"]["true_pass_rate"],
    "learned_gain_at_ladder_cost": lambda r: r["headline"]["quality_at_cost"]["gain"],
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
    result = {"runs": runs, "summary": summary, "config": record}
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = ["# The learned router over training seeds and worlds", "",
             f"Seeds {cfg['seeds']}; {cfg['n_courses']:,} simulated courses of logs per run, "
             f"a fresh {cfg['eval_courses']:,}-course evaluation world each time. Savings are "
             "at the static assignment's true pass rate, against the pooled simple baselines "
             "(lookup table through the planner, lookup threshold, static, ladder from the "
             "cheapest, always-mid, always-premium, random).", "",
             "| world | headline | mean | worst seed | best seed | 95% t-interval of the mean |",
             "|---|---|---|---|---|---|"]
    for world, rows in result["summary"].items():
        for key, s in rows.items():
            lines.append(f"| {world} | {key} | {s['mean']:.4f} | {s['min']:.4f} | "
                         f"{s['max']:.4f} | [{s['ci_low']:.4f}, {s['ci_high']:.4f}] |")
    lines += ["", "## Every run", "", "| world | seed | saving vs best baseline [CI low] | "
              "saving vs static | learned true pass | static true pass | seconds |",
              "|---|---|---|---|---|---|---|"]
    for world, rows in result["runs"].items():
        for r in rows:
            lines.append(f"| {world} | {r['seed']} | {r['saving_vs_best_baseline']:+.2%} "
                         f"[{r['saving_vs_best_baseline_ci_low']:+.2%}] | "
                         f"{r['saving_vs_static_at_its_quality']:.2%} | "
                         f"{r['learned_true_pass_at_calibrated_lam']:.4f} | "
                         f"{r['static_true_pass']:.4f} | {r['seconds']} |")
    return "\n".join(lines) + "\n"
