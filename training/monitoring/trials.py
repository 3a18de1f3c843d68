"""`router-monitor-trials`: does the watch work? Measured over many simulated deployments.

Drift: one reference artifact trained on the default world; then `windows` fresh windows of
recent logs from the default world (any alert there is a false alarm) and from the `shift`
world (a window without a feature-drift alert is a miss).

Promotion: per trial, a champion trained on `n_courses` of logs; a better candidate trained on
`better_factor` times as many; a degraded one trained on the same logs with labels shuffled
(even trials) or flipped (odd trials). Each candidate is judged by router-promote's rule on a
fresh world, exactly replayed; every count is what that rule decided.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from router_model.config import check


@dataclass(frozen=True)
class TrialsSettings:
    """router_monitor_trials (conf/router_monitor_trials.yaml says what each key does)."""

    seed: int
    n_courses: int
    windows: int
    window_courses: int
    trials: int
    better_factor: int
    judge_courses: int
    train_overrides: list[str]
    n_jobs: int
    reports_dir: str

    def __post_init__(self) -> None:
        for key in ("windows", "trials"):
            check(getattr(self, key) >= 0, key, getattr(self, key), "must be >= 0")
        for key in ("n_courses", "window_courses", "judge_courses", "better_factor", "n_jobs"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "must be >= 1")


def drift_summary(rows: list[dict[str, Any]], window_courses: int) -> dict[str, Any]:
    """False alarms on the default world, feature-drift recall on the shifted one."""
    frame = pd.DataFrame(rows)
    default, shift = frame[frame.world == "default"], frame[frame.world == "shift"]
    return {"windows": rows, "window_courses": window_courses,
            "false_alarm_rate": float((default["alerts"] > 0).mean()),
            "shift_recall": float((shift["feature_alerts"] > 0).mean())}


def promotion_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Better candidates accepted, degraded ones refused, by router-promote's rule."""
    frame = pd.DataFrame(rows)
    good = frame[frame.candidate == "better"]
    bad = frame[frame.candidate != "better"]
    return {"trials": rows, "accepted_better": float(good["accepted"].mean()),
            "refused_degraded": float((~bad["accepted"].astype(bool)).mean())}


def markdown(result: dict[str, Any]) -> str:
    d, p = result.get("drift"), result.get("promotion")
    lines = ["# router-monitor and router-promote, measured", ""]
    if d:
        lines += [f"Drift, {len(d['windows']) // 2} windows of {d['window_courses']:,} courses "
                  "per world:", f"- false-alarm rate on the default world: "
                  f"{d['false_alarm_rate']:.1%} (target <= 5%)",
                  f"- recall of feature-drift alerts on `shift`: {d['shift_recall']:.1%} "
                  "(target >= 95%)", ""]
    if p:
        n = len(p["trials"]) // 2
        lines += [f"Promotion, {n} trials:",
                  f"- better candidates (trained on more logs) accepted: "
                  f"{p['accepted_better']:.1%} (target >= 90%)",
                  f"- degraded candidates (shuffled or flipped labels) refused: "
                  f"{p['refused_degraded']:.1%} (target 100%)", "",
                  "| trial | candidate | accepted | cost change | quality change |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['trial']} | {r['candidate']} | {r['accepted']} | "
                  f"{r['cost_change']:+.2%} | {r['quality_change']:+.4f} |" for r in p["trials"]]
    return "\n".join(lines) + "\n"


def write_trials(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "report.md").write_text(markdown(result))
