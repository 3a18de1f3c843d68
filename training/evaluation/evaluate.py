"""Offline evaluation: what each routing policy costs and delivers, without calling an LLM.

Exact replay runs the ladder over a full outcome table (every tier's outcome for every task)
from each policy's start tiers. The default table is a fresh simulated world (another seed
than the one the router was trained on); any table in the same long form can be given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from pipeline.world import simulate_world, task_table
from router_model.attempt_log import read_attempts
from router_model.config import Catalog, typed
from router_model.policy import PolicySettings, RoutingPolicy
from router_model.replay import OutcomeCube, ReplayResult, cube_from_table, replay
from router_model.routers import RouterContext, build_router
from training.evaluation.off_policy import NoExplorationError, estimate, logged_bandit
from training.evaluation.report import write_reports
from training.evaluation.routing_metrics import aiq, apgr, cpt, points_pgr, savings_ci


@dataclass
class EvalTable:
    tasks: pd.DataFrame
    cube: OutcomeCube
    source: str


def evaluation_table(cfg: DictConfig, catalog: Catalog) -> EvalTable:
    """The outcome table to replay on: given files, or a fresh simulated world."""
    ev = cfg.evaluate
    if ev.get("tasks") and ev.get("outcomes"):
        tasks = pd.read_parquet(ev.tasks)
        cube = cube_from_table(tasks, pd.read_parquet(ev.outcomes), catalog)
        return EvalTable(tasks, cube, f"{ev.tasks} + {ev.outcomes}")
    seed = int(cfg.simulate.seed) + int(ev.seed_offset)
    world = simulate_world(cfg.simulate, catalog, n_courses=int(ev.n_courses), seed=seed)
    return EvalTable(task_table(world), world.cube,
                     f"fresh simulated world, seed {seed}, {int(ev.n_courses):,} courses")


def policy_metrics(res: ReplayResult, course: np.ndarray) -> dict[str, Any]:
    n_courses = len(np.unique(course))
    calls = res.calls.sum()
    return {
        "cost_per_course": float(res.cost.sum() / n_courses),
        "true_pass_rate": float(res.true_pass.mean()),
        "gate_pass_rate": float(res.accepted.mean()),
        "false_pass_rate": float((res.accepted & ~res.true_pass).mean()),
        "mean_final_similarity": float(res.final_similarity.mean()),
        "mean_final_quality": float(res.final_quality.mean()),
        "calls_per_task": float(res.calls.mean()),
        "premium_share": float(res.premium_calls.sum() / calls),
        "latency_s_per_task": float(res.latency_s.mean()),
        "latency_s_per_course": float(res.latency_s.sum() / n_courses),
        "flagged_rate": float(res.flagged.mean()),
    }


def per_course(values: np.ndarray, course: np.ndarray) -> np.ndarray:
    _, idx = np.unique(course, return_inverse=True)
    return np.bincount(idx, weights=np.asarray(values, float))


def flip_gate(cube: OutcomeCube, false_pass: float, false_fail: float,
              rng: np.random.Generator) -> OutcomeCube:
    """The gate as the true outcome flipped at the given rates (schema errors stay errors)."""
    thr = cube.pass_threshold[:, None, None]
    truth = cube.quality >= thr
    flip = np.where(truth, rng.random(truth.shape) < false_fail,
                    rng.random(truth.shape) < false_pass)
    verdict = truth ^ flip
    sim = np.where(verdict, np.maximum(cube.quality, thr),
                   np.minimum(cube.quality, np.nextafter(thr, 0)))
    return replace(cube, similarity=sim)


@dataclass
class Replays:
    """Every configured router's start tiers and exact-replay results on one table."""

    starts: dict[str, np.ndarray]
    runs: dict[str, ReplayResult]
    metrics: dict[str, dict[str, Any]]


def replay_routers(cfg: DictConfig, context: RouterContext, table: EvalTable) -> Replays:
    """Build each router of `evaluate.routers` from the registry and replay it exactly."""
    course = table.tasks["course_id"].to_numpy()
    starts = {}
    for name in cfg.evaluate.routers:
        router = build_router(str(name), cfg.routers, context)
        if router.sees_test_outcomes:
            router.fit(table.tasks, table.cube)
        starts[str(name)] = router.start_tiers(table.tasks)
    runs = {name: replay(table.cube, s, context.catalog) for name, s in starts.items()}
    return Replays(starts, runs, {n: policy_metrics(r, course) for n, r in runs.items()})


def knob_sweep(cfg: DictConfig, policy: RoutingPolicy, table: EvalTable) -> list[dict]:
    """The learned policy at every knob of `evaluate.knob_sweep` (predicted once)."""
    course = table.tasks["course_id"].to_numpy()
    p = policy.start_tiers(table.tasks)["p"]
    sweep = []
    for knob in cfg.evaluate.knob_sweep:
        start = policy.with_settings(knob=float(knob)).start_tiers(table.tasks, p=p)["start"]
        sweep.append({"knob": float(knob), **policy_metrics(
            replay(table.cube, start, policy.catalog), course)})
    return sweep


def savings_section(ev: DictConfig, rep: Replays, course: np.ndarray) -> dict[str, Any]:
    """The learned policy's cost and call savings against every other router, with CIs."""
    learned_cost = per_course(rep.runs["learned"].cost, course)
    learned_calls = per_course(rep.runs["learned"].calls, course)
    ci = {"n_boot": int(ev.bootstrap), "seed": int(ev.seed)}
    return {base: {"cost": savings_ci(learned_cost, per_course(run.cost, course), **ci),
                   "calls": savings_ci(learned_calls, per_course(run.calls, course), **ci)}
            for base, run in rep.runs.items() if base != "learned"}


def published_section(m: dict[str, dict[str, Any]], sweep: list[dict]) -> dict[str, Any]:
    """RouterBench's AIQ and RouteLLM's APGR / CPT over the knob sweep."""
    weak, strong = m["cheapest"], m["always-premium"]
    x, pgr = points_pgr([s["premium_share"] for s in sweep],
                        [s["true_pass_rate"] for s in sweep],
                        weak["true_pass_rate"], strong["true_pass_rate"])
    ends = ((weak["cost_per_course"], weak["true_pass_rate"]),
            (strong["cost_per_course"], strong["true_pass_rate"]))
    return {
        "aiq": aiq([s["cost_per_course"] for s in sweep], [s["true_pass_rate"] for s in sweep],
                   weak["cost_per_course"], strong["cost_per_course"], endpoints=ends),
        "apgr": apgr(x, pgr), "cpt50": cpt(x, pgr, 0.5), "cpt80": cpt(x, pgr, 0.8),
        "note": "x = premium-call share, quality = true final pass rate; weak = ladder from "
                "the cheapest tier, strong = always premium.",
    }


def gate_error_sweep(cfg: DictConfig, context: RouterContext, table: EvalTable,
                     rep: Replays) -> list[dict[str, Any]]:
    """Every router again with the gate flipped at each `evaluate.gate_error_rates`."""
    ev, catalog = cfg.evaluate, context.catalog
    course = table.tasks["course_id"].to_numpy()
    rows = []
    for rate in ev.gate_error_rates:
        flipped = flip_gate(table.cube, float(rate), float(rate),
                            np.random.default_rng(int(ev.seed) + 17))
        for name, start in rep.starts.items():
            router = build_router(name, cfg.routers, context)
            if router.sees_test_outcomes:  # the oracle knows the flipped outcomes too
                start = router.fit(table.tasks, flipped).start_tiers(table.tasks)
            rows.append({"gate_error": float(rate), "policy": name, **policy_metrics(
                replay(flipped, start, catalog), course)})
    return rows


def sources_section(catalog: Catalog, rep: Replays, tasks: pd.DataFrame) -> dict[str, Any]:
    """Where the learned policy's savings come from, in three measured effects."""
    m, runs = rep.metrics, rep.runs
    course = tasks["course_id"].to_numpy()
    premium_fields = [f for f, s in catalog.fields.items() if s.static_tier == catalog.premium]
    on_premium_fields = tasks["field"].isin(premium_fields).to_numpy()
    n_courses = len(np.unique(course))
    return {
        "premium_fields": premium_fields,
        "premium_field_cost_per_course": {
            name: float(runs[name].cost[on_premium_fields].sum() / n_courses)
            for name in ("static", "learned")},
        "calls_and_latency_vs_cheapest": {
            name: {"calls_per_task": m[name]["calls_per_task"],
                   "latency_s_per_task": m[name]["latency_s_per_task"]}
            for name in ("cheapest", "learned")},
        "gate_error_exposure": {name: m[name]["false_pass_rate"]
                                for name in ("cheapest", "static", "learned")},
    }


def run_evaluate(cfg: DictConfig, progress: bool = True) -> dict[str, Any]:
    """Replay every router, sweep the knob and gate error, estimate off-policy, report."""
    started = time.perf_counter()
    steps = ("outcome table", "replay routers", "knob sweep", "gate-error sweep",
             "off-policy estimates", "reports")
    bar = tqdm(steps, desc="router-evaluate", unit="step", disable=not progress)
    step = iter(bar)
    catalog = Catalog.from_config(cfg)
    ev = cfg.evaluate
    settings = typed(PolicySettings, cfg.router.policy, "router.policy")
    policy = RoutingPolicy.from_artifact_path(catalog, settings, cfg.router.artifact,
                                              seed=int(ev.seed))
    if not policy.learned:
        raise RuntimeError(f"router-evaluate needs a trained router at {cfg.router.artifact} "
                           f"({policy.fallback_reason}); run router-train first")
    context = RouterContext(catalog, policy, seed=int(ev.seed))
    next(step)
    table = evaluation_table(cfg, catalog)
    course = table.tasks["course_id"].to_numpy()
    next(step)
    rep = replay_routers(cfg, context, table)
    m = rep.metrics
    next(step)
    sweep = knob_sweep(cfg, policy, table)
    savings = savings_section(ev, rep, course)
    oracle_gap = m["static"]["cost_per_course"] - m["oracle"]["cost_per_course"]
    recovered = ((m["static"]["cost_per_course"] - m["learned"]["cost_per_course"]) / oracle_gap
                 if oracle_gap > 0 else float("nan"))
    next(step)
    gate_sweep = gate_error_sweep(cfg, context, table, rep)
    next(step)
    ope = off_policy_section(cfg, catalog, policy) if ev.get("ope") else None
    next(step)
    result = {
        "table": table.source, "router_version": policy.router_version,
        "knob": policy.settings.knob,
        "knob_calibration": policy.artifact.manifest.get("policy", {}),
        "policies": m, "savings_vs": savings, "oracle_savings_recovered": recovered,
        "where_savings_come_from": sources_section(catalog, rep, table.tasks),
        "knob_sweep": sweep, "published_metrics": published_section(m, sweep),
        "gate_error_sweep": gate_sweep, "off_policy": ope,
        "targets": targets(m, savings, recovered),
    }
    timings = {"seconds": round(time.perf_counter() - started, 1)}
    write_reports(result, field_breakdown(rep.runs, table.tasks), Path(cfg.reports_dir),
                  timings)
    bar.close()
    return {**result, **timings}


def field_breakdown(runs: dict[str, ReplayResult], tasks: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for name, r in runs.items():
        frame = pd.DataFrame({"field": tasks["field"], "cost": r.cost, "calls": r.calls,
                              "true_pass": r.true_pass, "premium_calls": r.premium_calls,
                              "start": r.start_tier})
        g = frame.groupby("field")
        rows.append(pd.DataFrame({"policy": name, "tasks": g.size(), "cost": g["cost"].sum(),
                                  "calls_per_task": g["calls"].mean(),
                                  "true_pass_rate": g["true_pass"].mean(),
                                  "premium_calls": g["premium_calls"].sum(),
                                  "mean_start_tier": g["start"].mean()}))
    return pd.concat(rows).reset_index()


def off_policy_section(cfg: DictConfig, catalog: Catalog, policy: RoutingPolicy
                       ) -> dict[str, Any]:
    """IPS / SNIPS / DR from the training logs, next to exact replay on the same tasks."""
    loaded = read_attempts(cfg.paths.logs, known_fields=catalog.fields,
                           known_tiers=catalog.tier_names)
    bandit = logged_bandit(loaded.frame, catalog)
    try:
        plan = policy.start_tiers(bandit)
    except KeyError as exc:
        return {"error": f"logs lack a feature the policy needs: {exc}"}
    n = len(bandit)
    overflow_idx = catalog.tier_index(catalog.gate.overflow_tier)
    is_overflow = bandit["start_index"].to_numpy() == overflow_idx
    target = np.where(is_overflow, overflow_idx, plan["start"])
    pad = np.zeros((n, 1))
    reward_model = {"cost": np.hstack([plan["expected_cost"], pad]),
                    "passed": np.hstack([plan["expected_pass"], pad])}
    try:
        est = estimate(bandit, target, reward_model, n_boot=int(cfg.evaluate.bootstrap),
                       seed=int(cfg.evaluate.seed))
    except NoExplorationError as exc:
        return {"error": str(exc)}
    out: dict[str, Any] = {"tasks": n, **est}
    tasks_path, outcomes_path = Path(cfg.paths.tasks), Path(cfg.paths.outcomes)
    if tasks_path.exists() and outcomes_path.exists():  # simulated logs: the exact answer
        world_tasks = pd.read_parquet(tasks_path)
        cube = cube_from_table(world_tasks, pd.read_parquet(outcomes_path), catalog)
        pos = pd.Series(np.arange(len(world_tasks)), index=world_tasks["task_id"])
        idx = pos.reindex(bandit["task_id"]).to_numpy()
        if not np.isnan(idx).any():
            res = replay(cube.take(idx.astype(np.int64)), np.minimum(target, len(
                catalog.ladder) - 1), catalog)
            out["exact_replay"] = {"cost": float(res.cost.mean()),
                                   "passed": float(res.accepted.mean())}
            out["logging_policy"] = {"cost": float(bandit["cost"].mean()),
                                     "passed": float(bandit["passed"].mean())}
    return out


def targets(m: dict[str, Any], savings: dict[str, Any], recovered: float) -> dict[str, Any]:
    """The issue's targets, each with the measured value and whether it is met."""
    learned, static, premium = m["learned"], m["static"], m["always-premium"]
    return {
        "cost_vs_static_>=30%": {"value": savings["static"]["cost"]["value"],
                                 "met": savings["static"]["cost"]["value"] >= 0.30},
        "calls_vs_static_>=40%": {"value": savings["static"]["calls"]["value"],
                                  "met": savings["static"]["calls"]["value"] >= 0.40},
        "true_pass_>=_static": {"value": learned["true_pass_rate"] - static["true_pass_rate"],
                                "met": learned["true_pass_rate"] >= static["true_pass_rate"]},
        "oracle_savings_recovered_>=80%": {"value": recovered, "met": recovered >= 0.80},
        "cost_vs_premium_>=80%": {"value": savings["always-premium"]["cost"]["value"],
                                  "met": savings["always-premium"]["cost"]["value"] >= 0.80},
        "pass_>=99%_of_premium": {
            "value": learned["true_pass_rate"] / premium["true_pass_rate"],
            "met": learned["true_pass_rate"] >= 0.99 * premium["true_pass_rate"]},
    }
