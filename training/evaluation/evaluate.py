"""Offline evaluation: what each routing policy costs and delivers, without calling an LLM.

Exact replay runs the ladder over a full outcome table (every tier's outcome for every task)
from each policy's start tiers. The default table is a fresh simulated world (another seed
than the one the router was trained on); any table in the same long form can be given.

The headline is every router at the dial it deploys with (calibrated on its training logs
only). Each router's dial is also swept on this world, and the comparison at matched
quality read off those frontiers (`matched.py`) is an upper bound, labelled so.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from pipeline.seed_terms import first_attempt_passed
from pipeline.seed_terms import targets as seed_targets
from pipeline.world import WorldSettings, simulate_world, task_table
from router_model.config import Catalog, Paths, check
from router_model.decide.gate import flip_mask
from router_model.decide.policy import RoutingPolicy
from router_model.decide.replay import OutcomeCube, ReplayResult, cube_from_table, replay
from router_model.decide.routers import RouterContext, build_router
from router_model.decide.settings import DIALS, POLICY_VARIANTS
from router_model.logs.attempts import read_attempts
from router_model.logs.read_files import read_options
from training.evaluation.matched import (
    UPPER_BOUND,
    CourseTotals,
    Frontier,
    learning_split,
    matched_section,
    quality_at_cost,
)
from training.evaluation.off_policy import (
    NoExplorationError,
    crossfit_reward_model,
    estimate,
    logged_bandit,
    with_overflow,
)
from training.evaluation.report import write_reports
from training.evaluation.routing_metrics import aiq, apgr, cpt, points_pgr, savings_ci
from training.router_settings import RouterSettings


@dataclass(frozen=True)
class EvaluateSettings:
    """conf/evaluate (its comments say what each key does)."""

    tasks: str | None
    outcomes: str | None
    n_courses: int
    seed_offset: int
    seed: int
    bootstrap: int
    routers: list[str]
    baselines: list[str]
    match_quality_of: str
    match_cost_of: str
    compare: list[str]
    sweeps: list[str]  # routers whose dial is swept over its calibration grid
    gate_error_rates: list[float]
    ope: bool

    def __post_init__(self) -> None:
        check(self.n_courses >= 1, "evaluate.n_courses", self.n_courses, "must be >= 1")
        check(self.bootstrap >= 1, "evaluate.bootstrap", self.bootstrap, "must be >= 1")
        check(all(0.0 <= r <= 1.0 for r in self.gate_error_rates), "evaluate.gate_error_rates",
              self.gate_error_rates, "each must be in [0, 1]")
        for key in ("match_quality_of", "match_cost_of"):
            check(getattr(self, key) in self.routers, f"evaluate.{key}", getattr(self, key),
                  f"must be one of evaluate.routers {self.routers}")
        check("learned" in self.routers, "evaluate.routers", self.routers,
              "must include learned (the router every comparison is about)")


@dataclass(frozen=True)
class EvaluateJob:
    """Everything router-evaluate needs, typed once by its CLI. `world` is conf/simulate
    (with its evaluation_shift merged in when it has one), for the fresh evaluation world;
    `routers` is the router registry (conf/routers)."""

    catalog: Catalog
    paths: Paths
    router: RouterSettings
    evaluate: EvaluateSettings
    world: WorldSettings
    world_seed: int
    shifted: bool
    routers: dict[str, Any]
    reports_dir: str


@dataclass
class EvalTable:
    tasks: pd.DataFrame
    cube: OutcomeCube
    source: str


def evaluation_table(job: EvaluateJob) -> EvalTable:
    """The outcome table to replay on: given files, or a fresh simulated world."""
    ev, catalog = job.evaluate, job.catalog
    if ev.tasks and ev.outcomes:
        tasks = pd.read_parquet(ev.tasks)
        cube = cube_from_table(tasks, pd.read_parquet(ev.outcomes), catalog)
        return EvalTable(tasks, cube, f"{ev.tasks} + {ev.outcomes}")
    seed = job.world_seed + ev.seed_offset
    world = simulate_world(job.world, catalog, n_courses=ev.n_courses, seed=seed)
    shifted = " (shifted mix)" if job.shifted else ""
    return EvalTable(task_table(world), world.cube,
                     f"fresh simulated world{shifted}, seed {seed}, {ev.n_courses:,} courses")


HIGH_IMPACT = 8  # fields at or above this impact score are the "high-impact" ones


def task_impact(catalog: Catalog, tasks: pd.DataFrame) -> np.ndarray:
    """Each task's field impact score (5 for a field the catalog does not know)."""
    impact = {name: spec.impact for name, spec in catalog.fields.items()}
    return tasks["field"].astype(str).map(impact).fillna(5).to_numpy(float)


def policy_metrics(res: ReplayResult, course: np.ndarray, impact: np.ndarray
                   ) -> dict[str, Any]:
    """A replay's figures; `course`: each task's course code (`course_codes`)."""
    n_courses = int(course.max()) + 1 if len(course) else 0
    calls = res.calls.sum()
    high = impact >= HIGH_IMPACT
    return {
        "cost_per_course": float(res.cost.sum() / n_courses),
        "true_pass_rate": float(res.true_pass.mean()),
        "weighted_true_pass_rate": float(np.average(res.true_pass, weights=impact)),
        "high_impact_true_pass_rate": float(res.true_pass[high].mean()) if high.any()
        else float("nan"),
        "gate_pass_rate": float(res.accepted.mean()),
        "false_pass_rate": float((res.accepted & ~res.true_pass).mean()),
        "mean_final_similarity": float(res.final_similarity.mean()),
        "mean_final_quality": float(res.final_quality.mean()),
        "calls_per_task": float(res.calls.mean()),
        "premium_share": float(res.premium_calls.sum() / calls),
        "latency_s_per_task": float(res.latency_s.mean()),
        "latency_s_per_course": float(res.latency_s.sum() / n_courses),
        "flagged_rate": float(res.flagged.mean()),
        **course_pass_rates(res, course),
    }


def course_pass_rates(res: ReplayResult, course: np.ndarray) -> dict[str, float]:
    """The seed's per-course terms: the share of courses whose every task passed the gate on
    its first call, whose every task ended unflagged (final pass), and truly passed."""
    size = np.bincount(course)
    if not len(size):
        return dict.fromkeys(("course_first_attempt_pass", "course_final_pass",
                              "course_true_final_pass"), float("nan"))

    def every(passed: np.ndarray) -> float:
        return float(np.mean(np.bincount(course, weights=passed.astype(float)) == size))

    return {"course_first_attempt_pass": every(first_attempt_passed(res)),
            "course_final_pass": every(~res.flagged),
            "course_true_final_pass": every(res.true_pass)}


def per_course(values: np.ndarray, course: np.ndarray) -> np.ndarray:
    """Sums per course (in sorted course order); `course` as ids, or as the codes
    `course_codes` made once (sorting a million ids for every sum cost minutes)."""
    codes = course if np.issubdtype(np.asarray(course).dtype, np.integer) else \
        course_codes(course)
    return np.bincount(codes, weights=np.asarray(values, float))


def course_codes(course: np.ndarray) -> np.ndarray:
    """Each task's course as an index into the sorted distinct courses."""
    return np.unique(course, return_inverse=True)[1]


def flip_gate(cube: OutcomeCube, false_pass: float, false_fail: float,
              rng: np.random.Generator) -> OutcomeCube:
    """The gate as the true outcome flipped at the given rates (schema errors stay errors)."""
    thr = cube.pass_threshold[:, None, None]
    truth = cube.quality >= thr
    verdict = truth ^ flip_mask(truth, false_pass, false_fail, rng)
    sim = np.where(verdict, np.maximum(cube.quality, thr),
                   np.minimum(cube.quality, np.nextafter(thr, 0)))
    return replace(cube, similarity=sim)


@dataclass
class Replays:
    """Every configured router's start tiers and exact-replay results on one table, with
    each task's course and impact score."""

    starts: dict[str, np.ndarray]
    runs: dict[str, ReplayResult]
    metrics: dict[str, dict[str, Any]]
    course: np.ndarray
    impact: np.ndarray

    def frontier_point(self, res: ReplayResult) -> dict[str, np.ndarray]:
        """One operating point's per-course totals."""
        course, impact = self.course, self.impact
        return {"_cost": per_course(res.cost, course),
                "_latency": per_course(res.latency_s, course),
                "_passed": per_course(res.true_pass, course),
                "_weighted": per_course(res.true_pass * impact, course),
                "_high": per_course(res.true_pass & (impact >= HIGH_IMPACT), course)}


def replay_routers(job: EvaluateJob, context: RouterContext, table: EvalTable) -> Replays:
    """Build each router of `evaluate.routers` from the registry and replay it exactly."""
    course = course_codes(table.tasks["course_id"].to_numpy())
    impact = task_impact(context.catalog, table.tasks)
    starts = {}
    for name in job.evaluate.routers:
        router = build_router(str(name), job.routers, context)
        if router.sees_test_outcomes:
            router.fit(table.tasks, table.cube)
        starts[str(name)] = router.start_tiers(table.tasks)
    runs = {name: replay(table.cube, s, context.catalog) for name, s in starts.items()}
    return Replays(starts, runs, {n: policy_metrics(r, course, impact)
                                  for n, r in runs.items()}, course, impact)


def sweep_frontiers(job: EvaluateJob, context: RouterContext, table: EvalTable,
                    rep: Replays) -> dict[str, list[dict[str, Any]]]:
    """Each router of `evaluate.sweeps` replayed at every value of its dial's calibration
    grid (predicted once per router), with its floored fields' own dials and, where it has
    any, without them too. A point carries its metrics and its per-course totals."""
    out = {}
    for name in job.evaluate.sweeps:
        if name not in rep.runs:
            continue
        policy = build_router(str(name), job.routers, context).policy
        dial, values = DIALS[policy.settings.rule]
        plan = policy.start_tiers(table.tasks)
        floors = [True, False] if policy.settings.field_lams else [True]
        points = []
        for floored, v in ((f, v) for f in floors for v in values):
            changes = {dial: float(v)} if floored else {dial: float(v), "field_lams": {}}
            start = policy.choice.with_settings(**changes).starts_for(plan)
            res = replay(table.cube, start, context.catalog)
            points.append({"dial": dial, "value": float(v), "floors": floored,
                           **policy_metrics(res, rep.course, rep.impact),
                           **rep.frontier_point(res)})
        out[str(name)] = points
    return out


def frontiers(rep: Replays, fronts: dict[str, list[dict]]) -> dict[str, Frontier]:
    """Every router's deployed point plus its swept points, as per-course totals."""
    out = {}
    for name, run in rep.runs.items():
        pts = [rep.frontier_point(run), *fronts.get(name, [])]
        out[name] = Frontier(*(np.vstack([p[k] for p in pts]) for k in
                               ("_cost", "_latency", "_passed", "_weighted", "_high")))
    return out


def headline_section(ev: EvaluateSettings, rep: Replays, fronts: dict[str, list[dict]]
                     ) -> dict[str, Any]:
    """The upper bound: every router at the reference's impact-weighted and high-impact true
    pass (and at its plain true pass), the compared routers against the pooled simple
    baselines there, and the learned frontier's quality at the ladder's cost."""
    course, impact = rep.course, rep.impact
    totals = CourseTotals(per_course(np.ones(len(course)), course), per_course(impact, course),
                          per_course(impact >= HIGH_IMPACT, course))
    lines = frontiers(rep, fronts)
    shared = {"reference": ev.match_quality_of, "compare": list(ev.compare),
              "baselines": [b for b in ev.baselines if b in rep.runs],
              "n_boot": ev.bootstrap, "seed": ev.seed}
    ladder = rep.metrics[ev.match_cost_of]
    return {"weighted": matched_section(lines, totals, "weighted", **shared),
            "unweighted": matched_section(lines, totals, "unweighted", **shared),
            "quality_at_cost": {"of": ev.match_cost_of, "label": UPPER_BOUND,
                                **quality_at_cost(lines["learned"], totals,
                                                  ladder["cost_per_course"],
                                                  ladder["weighted_true_pass_rate"])}}


def savings_section(ev: EvaluateSettings, rep: Replays) -> dict[str, Any]:
    """The learned policy's cost and call savings against every other router at their
    deployed dials, with CIs (each at its own quality: read them with the quality)."""
    course = rep.course
    learned_cost = per_course(rep.runs["learned"].cost, course)
    learned_calls = per_course(rep.runs["learned"].calls, course)
    ci = {"n_boot": ev.bootstrap, "seed": ev.seed}
    return {base: {"cost": savings_ci(learned_cost, per_course(run.cost, course), **ci),
                   "calls": savings_ci(learned_calls, per_course(run.calls, course), **ci)}
            for base, run in rep.runs.items() if base != "learned"}


def published_section(m: dict[str, dict[str, Any]], sweep: list[dict]) -> dict[str, Any]:
    """RouterBench's AIQ and RouteLLM's APGR / CPT over the learned policy's sweep."""
    weak, strong = m["ladder-from-cheapest"], m["always-premium"]
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


def gate_error_sweep(job: EvaluateJob, context: RouterContext, table: EvalTable,
                     rep: Replays) -> list[dict[str, Any]]:
    """Every router again with the gate flipped at each `evaluate.gate_error_rates`."""
    ev, catalog = job.evaluate, context.catalog
    rows = []
    for rate in ev.gate_error_rates:
        flipped = flip_gate(table.cube, float(rate), float(rate),
                            np.random.default_rng(ev.seed + 17))
        for name, start in rep.starts.items():
            router = build_router(name, job.routers, context)
            if router.sees_test_outcomes:  # the oracle knows the flipped outcomes too
                start = router.fit(table.tasks, flipped).start_tiers(table.tasks)
            rows.append({"gate_error": float(rate), "policy": name, **policy_metrics(
                replay(flipped, start, catalog), rep.course, rep.impact)})
    return rows


def sources_section(catalog: Catalog, rep: Replays, tasks: pd.DataFrame,
                    headline: dict[str, Any]) -> dict[str, Any]:
    """Where the learned policy's savings come from: the planner on the lookup table against
    the model over it (per field at the deployed dials, and in all at matched quality), the
    premium fields, and the gate-error exposure."""
    m, runs = rep.metrics, rep.runs
    premium_fields = [f for f, s in catalog.fields.items() if s.static_tier == catalog.premium]
    on_premium_fields = tasks["field"].isin(premium_fields).to_numpy()
    n_courses = int(rep.course.max()) + 1
    by_field = {}
    for field in sorted(tasks["field"].astype(str).unique()):
        mask = (tasks["field"].astype(str) == field).to_numpy()
        by_field[field] = {name: {"cost_per_course": float(runs[name].cost[mask].sum()
                                                           / n_courses),
                                  "true_pass_rate": float(runs[name].true_pass[mask].mean())}
                           for name in ("static", "lookup", "learned") if name in runs}
    split = (learning_split(by_field, headline["weighted"]["cost_at_target"],
                            m["static"]["cost_per_course"])
             if {"static", "lookup", "learned"} <= set(runs) else None)
    return {
        "learning": split,
        "premium_fields": premium_fields,
        "premium_field_cost_per_course": {
            name: float(runs[name].cost[on_premium_fields].sum() / n_courses)
            for name in ("static", "learned")},
        "gate_error_exposure": {name: m[name]["false_pass_rate"]
                                for name in ("ladder-from-cheapest", "static", "learned")},
    }


def load_policy(job: EvaluateJob) -> RoutingPolicy:
    policy = RoutingPolicy.from_artifact_path(job.catalog, job.router.policy,
                                              job.router.artifact, seed=job.evaluate.seed)
    if not policy.learned:
        raise FileNotFoundError(f"needs a trained router at {job.router.artifact} "
                                f"({policy.fallback_reason}); run router-train first")
    return policy


def run_evaluate(job: EvaluateJob, progress: bool = True) -> dict[str, Any]:
    """Replay every router, sweep the dials and gate error, compare at matched quality,
    estimate off-policy, report."""
    started = time.perf_counter()
    policy = load_policy(job)  # before the bar: a missing model is the only line printed
    steps = ("outcome table", "replay routers", "sweeps", "gate-error sweep",
             "off-policy estimates", "reports")
    bar = tqdm(steps, desc="router-evaluate", unit="step", disable=not progress)
    step = iter(bar)
    catalog, ev = job.catalog, job.evaluate
    context = RouterContext(catalog, policy, seed=ev.seed)
    next(step)
    table = evaluation_table(job)
    next(step)
    rep = replay_routers(job, context, table)
    m = rep.metrics
    next(step)
    fronts = sweep_frontiers(job, context, table, rep)
    headline = headline_section(ev, rep, fronts)
    savings = savings_section(ev, rep)
    next(step)
    gate_sweep = gate_error_sweep(job, context, table, rep) if ev.gate_error_rates else []
    next(step)
    ope = off_policy_section(job, policy) if ev.ope else None
    next(step)
    result = {
        "table": table.source, "router_version": policy.router_version,
        "lam": policy.settings.lam,
        "calibration": {k: policy.artifact.manifest.get(k, {}) for k in POLICY_VARIANTS},
        "policies": m, "matched": headline, "savings_vs": savings,
        "where_savings_come_from": sources_section(catalog, rep, table.tasks, headline),
        "sweeps": {n: [{k: v for k, v in pt.items() if not k.startswith("_")} for pt in pts]
                   for n, pts in fronts.items()},
        "published_metrics": published_section(m, fronts.get("learned", [])),
        "gate_error_sweep": gate_sweep, "off_policy": ope,
        "targets": targets(m),
        "seed_targets": {name: seed_targets({**m[name], "cost_per_course_usd":
                                             m[name]["cost_per_course"]})
                         for name in ("learned", "static")},
    }
    timings = {"seconds": round(time.perf_counter() - started, 1)}
    write_reports(result, field_breakdown(rep.runs, table.tasks), Path(job.reports_dir),
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


def off_policy_section(job: EvaluateJob, policy: RoutingPolicy) -> dict[str, Any]:
    """IPS / SNIPS / DR from the training logs, next to exact replay on the same tasks."""
    catalog, ev = job.catalog, job.evaluate
    loaded = read_attempts(job.paths.logs, known_fields=catalog.fields,
                           known_tiers=catalog.tier_names,
                           **read_options(job.paths.log_reading))
    bandit = logged_bandit(loaded.frame, catalog)
    try:
        plan = policy.start_tiers(bandit)
    except KeyError as exc:
        return {"error": f"logs lack a feature the policy needs: {exc}"}
    n = len(bandit)
    target = with_overflow(bandit, catalog, plan["start"])
    reward_model = crossfit_reward_model(bandit, len(catalog.tier_names), ("cost", "passed"),
                                         seed=ev.seed)
    try:
        est = estimate(bandit, target, reward_model, n_boot=ev.bootstrap, seed=ev.seed)
    except NoExplorationError as exc:
        return {"error": str(exc)}
    out: dict[str, Any] = {"tasks": n, **est}
    tasks_path, outcomes_path = Path(job.paths.tasks), Path(job.paths.outcomes)
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


def targets(m: dict[str, Any]) -> dict[str, Any]:
    """The deployed learned router against the static rules on this world: the targets of
    the deployed-promise issue, each with its measured value (at the deployed dials)."""
    learned, static = m["learned"], m["static"]
    weighted = learned["weighted_true_pass_rate"] - static["weighted_true_pass_rate"]
    high = learned["high_impact_true_pass_rate"] - static["high_impact_true_pass_rate"]
    ratio = learned["cost_per_course"] / static["cost_per_course"]
    return {
        "deployed_weighted_true_pass_>=_static": {"value": weighted, "met": weighted >= 0},
        "deployed_high_impact_true_pass_>=_static-0.005": {"value": high,
                                                            "met": high >= -0.005},
        "deployed_cost_<=_50%_of_static": {"value": ratio, "met": ratio <= 0.5},
    }
