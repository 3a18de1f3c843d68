"""`router-monitor`: has the router gone stale? Recent logs against the artifact's reference.

Reads the attempt logs of a recent window (and the decision log, joined by decision id),
measures feature, outcome and calibration drift against what the serving artifact stored at
training time, estimates each policy's value on that traffic off-policy, and turns what crosses
`conf/monitor`'s thresholds into alerts that say what to do.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from router_model.catalog_check import catalog_alerts
from router_model.config import Catalog, Paths, check
from router_model.decide.policy import RoutingPolicy
from router_model.decide.routers import RouterContext, build_router
from router_model.logs.attempts import read_attempts
from router_model.logs.read_files import read_options
from router_model.model.artifact import ArtifactError, load_artifact
from training.monitoring.drift import (
    DriftSettings,
    calibration_drift,
    feature_drift,
    outcome_drift,
)
from training.monitoring.value import policy_values
from training.reference import task_frame
from training.router_settings import RouterSettings

ADVICE = {
    "feature": "traffic no longer looks like the training logs: retrain on recent logs "
               "(dvc repro retrain promote) and check the Stage-4 analysis upstream",
    "absent": "the logs stopped carrying this feature, so the router serves it as missing: "
              "fix the generator's analysis input, or retrain without it",
    "first_pass": "this field's pass rate moved on this tier: retrain so the start tiers follow",
    "flag": "more outputs end flagged: check the provider and the gate, then retrain",
    "escalation": "more chains escalate: retrain so fewer tasks start too low",
    "calibration": "the served probabilities no longer match the verdicts: retrain (the "
                   "calibrator is refitted with the model)",
}


@dataclass(frozen=True)
class MonitorSettings:
    """conf/monitor (its comments say what each key does); the logs are paths.logs."""

    decision_log: str | None
    quarantine: str | None
    window_days: int | float | None  # as written: the report echoes it
    until: str | None
    seed: int
    fail_on_alert: bool
    ope: bool
    ope_routers: list[str]
    bootstrap: int
    min_exploration: float
    min_ess: float
    drift: DriftSettings

    def __post_init__(self) -> None:
        if self.window_days is not None:
            check(self.window_days > 0, "monitor.window_days", self.window_days,
                  "must be > 0 (or null for all)")
        check(self.bootstrap >= 1, "monitor.bootstrap", self.bootstrap, "must be >= 1")
        check(0.0 <= self.min_exploration <= 1.0, "monitor.min_exploration",
              self.min_exploration, "must be in [0, 1]")


@dataclass(frozen=True)
class MonitorJob:
    """Everything router-monitor needs, typed once by its CLI (`routers`: conf/routers)."""

    catalog: Catalog
    paths: Paths
    router: RouterSettings
    monitor: MonitorSettings
    routers: dict[str, Any]
    reports_dir: str


@dataclass
class RecentTraffic:
    attempts: pd.DataFrame
    tasks: pd.DataFrame
    counts: dict[str, Any]


def in_window(attempts: pd.DataFrame, window_days: float | None, until: str | None
              ) -> pd.DataFrame:
    """Attempts of the tasks that started within the last `window_days` before `until`
    (default: the newest attempt in the logs)."""
    if window_days is None or attempts.empty:
        return attempts
    stamps = pd.to_datetime(attempts["timestamp"], utc=True)
    # the newest attempt, but never later than now: one row dated 9999 must not set the window
    now = pd.Timestamp.now(tz="UTC") + pd.Timedelta(days=1)
    end = pd.Timestamp(until, tz="UTC") if until else min(stamps.max(), now)
    started = stamps.groupby(attempts["task_id"]).transform("min")
    return attempts[(started > end - pd.Timedelta(days=float(window_days)))
                    & (started <= end)]


def probability(value: Any) -> float | None:
    """A served probability as logged, or None when it is not a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0.0 <= value <= 1.0 else None


def read_decisions(path: str | None) -> tuple[pd.DataFrame, dict[str, int]]:
    """The decision log (and its rotated files) as one row per decision, with the shadow
    artifact's choice when one was scored; unreadable lines are counted, never fatal.

    `path` is one log, or a folder: then every log in it (`*.jsonl` and their rotated
    `*.jsonl.<n>`), so the one file per replica of several replicas join as one."""
    columns = ["decision_id", "served_tier", "served_p", "fallback_reason",
               "unknown_categories", "missing_features", "shadow_tier", "shadow_version"]
    counts = {"lines": 0, "unreadable": 0}
    if not path:
        return pd.DataFrame(columns=columns), counts
    base = Path(path)
    if base.is_dir():
        files = sorted(p for p in base.iterdir() if not p.name.startswith(".")
                       and (p.suffix == ".jsonl" or ".jsonl." in p.name))
    else:
        files = ([*sorted(base.parent.glob(base.name + ".*")), base]
                 if base.parent.exists() else [])
    rows = []
    for file in (f for f in files if f.is_file()):
        for line in file.read_bytes().splitlines():
            counts["lines"] += 1
            try:
                record = json.loads(line)
                d, shadow = record["decision"], record.get("shadow") or {}
                rows.append((str(d["decision_id"]), str(d["start_tier"]),
                             probability(d.get("pass_probabilities", {}).get(d["start_tier"])),
                             d.get("fallback_reason"), len(d.get("unknown_categories") or {}),
                             len(d.get("missing_features") or []), shadow.get("start_tier"),
                             shadow.get("router_version")))
            except (ValueError, KeyError, TypeError, AttributeError):
                counts["unreadable"] += 1
    return pd.DataFrame(rows, columns=columns).drop_duplicates("decision_id"), counts


def served_probabilities(tasks: pd.DataFrame, decisions: pd.DataFrame,
                         policy: RoutingPolicy) -> np.ndarray:
    """Each task's pass probability on its start tier as served: from the decision log,
    else the attempt log, else the serving model scored now (same model, same features)."""
    p = pd.to_numeric(tasks.get("predicted_pass_prob"), errors="coerce").to_numpy(float) \
        if "predicted_pass_prob" in tasks else np.full(len(tasks), np.nan)
    if len(decisions):
        logged = tasks["decision_id"].astype(str).map(
            decisions.set_index("decision_id")["served_p"]).to_numpy(float)
        p = np.where(np.isfinite(logged), logged, p)
    if np.isnan(p).any() and policy.learned:
        ladder = policy.ladder
        scored = policy.start_tiers(tasks)["p"]
        index = tasks["start_tier"].map({t: i for i, t in enumerate(ladder)})
        on_ladder = index.notna().to_numpy()
        fill = np.full(len(tasks), np.nan)
        fill[on_ladder] = scored[on_ladder, index[on_ladder].astype(int)]
        p = np.where(np.isnan(p), fill, p)
    return p


def recent_traffic(job: MonitorJob) -> RecentTraffic:
    catalog, monitor = job.catalog, job.monitor
    loaded = read_attempts(job.paths.logs, known_fields=catalog.fields,
                           known_tiers=catalog.tier_names, quarantine_path=monitor.quarantine,
                           **read_options(job.paths.log_reading))
    attempts = in_window(loaded.frame, monitor.window_days, monitor.until)
    tasks = task_frame(attempts) if len(attempts) else pd.DataFrame()
    counts = {**loaded.counts, "window_attempts": len(attempts), "window_tasks": len(tasks)}
    return RecentTraffic(attempts, tasks, counts)


def serving_policy(job: MonitorJob) -> RoutingPolicy:
    """The artifact LATEST names, with the dial it was calibrated to; it must carry the
    training-time reference (artifacts from before router-monitor existed do not)."""
    try:
        artifact = load_artifact(job.router.artifact)
    except (ArtifactError, FileNotFoundError) as exc:
        raise FileNotFoundError(f"router-monitor needs the serving artifact at "
                                f"{job.router.artifact}: {exc}") from exc
    if "reference" not in artifact.manifest:
        raise ValueError(f"{artifact.path} stores no drift reference (trained before "
                         "router-monitor existed); retrain it with router-train")
    return RoutingPolicy(job.catalog, job.router.policy, artifact)


def policy_value_section(job: MonitorJob, policy: RoutingPolicy, traffic: RecentTraffic
                         ) -> dict[str, Any]:
    monitor = job.monitor
    context = RouterContext(job.catalog, policy, seed=monitor.seed)
    policies = {"serving": lambda b: policy.start_tiers(b)["start"]}
    for name in monitor.ope_routers:
        router = build_router(str(name), job.routers, context)
        policies[str(name)] = router.start_tiers
    return policy_values(traffic.attempts, job.catalog, policies,
                         min_exploration=monitor.min_exploration, min_ess=monitor.min_ess,
                         n_boot=monitor.bootstrap, seed=monitor.seed)


def alerts(features: list[dict], outcomes: dict[str, Any], calibration: dict[str, Any],
           settings: DriftSettings) -> list[dict[str, Any]]:
    """Every statistic that crossed its threshold, with the threshold and what to do."""
    out = []
    for row in features:
        if row["alert"] and row.get("absent"):
            out.append({"kind": "feature", "name": row["feature"], "statistic": "absent",
                        "value": None, "threshold": None, "advice": ADVICE["absent"]})
        elif row["alert"]:
            out.append({"kind": "feature", "name": row["feature"], "statistic": "psi",
                        "value": row["psi"], "threshold": settings.psi_alert,
                        "test": row["test"], "p_value": row["p_value"],
                        "advice": ADVICE["feature"]})
    for row in outcomes["rates"]:
        if row["alert"]:
            name = row["field"] + (f" @ {row['tier']}" if "tier" in row else "")
            out.append({"kind": row["family"], "name": name, "statistic": "rate",
                        "value": row["rate"], "reference": row["reference"],
                        "threshold": settings.outcome_min_effect, "p_value": row["p_value"],
                        "advice": ADVICE[row["family"]]})
    if calibration["alert"]:
        out.append({"kind": "calibration", "name": "served probabilities", "statistic": "ece",
                    "value": calibration["ece"], "threshold": settings.ece_alert,
                    "p_value": calibration["p_value"], "advice": ADVICE["calibration"]})
    return out


def run_monitor(job: MonitorJob) -> dict[str, Any]:
    """The whole job; returns metrics.json's content (reports are written by the caller)."""
    monitor = job.monitor
    settings = monitor.drift
    policy = serving_policy(job)
    reference = policy.artifact.manifest["reference"]
    traffic = recent_traffic(job)
    if traffic.tasks.empty:
        raise ValueError(f"no attempts in the monitored window of {job.paths.logs} "
                         f"(monitor.window_days={monitor.window_days}); widen the "
                         "window or point paths.logs at recent logs")
    decisions, decision_counts = read_decisions(monitor.decision_log)
    tasks = traffic.tasks
    features = feature_drift(reference["features"], tasks, settings)
    outcomes = outcome_drift(reference["outcomes"], tasks, settings)
    p = served_probabilities(tasks, decisions, policy)
    calibration = calibration_drift(p, tasks["first_pass"].to_numpy(float),
                                    reference.get("calibration", {}).get("ece"), settings)
    value = policy_value_section(job, policy, traffic) if monitor.ope else None
    joined = int(tasks["decision_id"].astype(str).isin(decisions["decision_id"]).sum())
    return {
        "router_version": policy.router_version,
        "window": {"days": monitor.window_days, "logs": str(job.paths.logs),
                   **traffic.counts, "courses": int(tasks["course_id"].nunique()),
                   "first_task": str(pd.to_datetime(tasks["timestamp"]).min()),
                   "last_task": str(pd.to_datetime(tasks["timestamp"]).max())},
        "decision_log": {**decision_counts, "joined_tasks": joined},
        "reference": {"tasks": reference.get("tasks"), "courses": reference.get("courses")},
        "alerts": alerts(features, outcomes, calibration, settings)
        + catalog_alerts(policy.artifact.manifest, job.catalog),
        "feature_drift": features, "outcome_drift": outcomes, "calibration": calibration,
        "policy_value": value,
        "pass_rate_by_day": daily_pass_rate(tasks),
    }


def daily_pass_rate(tasks: pd.DataFrame) -> list[dict[str, Any]]:
    """First-attempt and final pass per day of the window (the plot over time)."""
    day = pd.to_datetime(tasks["timestamp"], utc=True).dt.strftime("%Y-%m-%d")
    g = tasks.assign(day=day, final=~tasks["flagged"].astype(bool)).groupby("day")
    return [{"day": d, "tasks": len(x), "first_pass": float(x["first_pass"].mean()),
             "final_pass": float(x["final"].mean())} for d, x in g]
