"""Offline evaluation: what each routing policy costs and delivers, without calling an LLM.

Exact replay runs the ladder over a full outcome table (every tier's outcome for every task)
from each policy's start tiers. The default table is a fresh simulated world (another seed
than the one the router was trained on); any table in the same long form can be given.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig
from tqdm.auto import tqdm

from pipeline.attempt_log import read_attempts
from pipeline.replay import OutcomeCube, ReplayResult, cube_from_table, replay
from pipeline.simulator import simulate_world, task_table
from router_model.config import Catalog, build_catalog
from router_model.policy import PolicySettings, RoutingPolicy
from router_model.routers import make_router
from training.off_policy import NoExplorationError, estimate, logged_bandit
from training.routing_metrics import aiq, apgr, cpt, points_pgr, savings_ci

BASELINES = ("always-premium", "static", "cheapest", "random")


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


def oracle_starts(cube: OutcomeCube, catalog: Catalog) -> np.ndarray:
    """Per task, the start tier with the best true outcome, then the lowest replayed cost."""
    n_ladder = len(catalog.ladder)
    runs = [replay(cube, np.full(cube.n_tasks, s), catalog) for s in range(n_ladder)]
    passed = np.column_stack([r.true_pass for r in runs])
    cost = np.column_stack([r.cost for r in runs])
    score = np.where(passed, 0.0, 1e9) + cost  # passing first, then cheapest
    return np.argmin(score, axis=1)


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


def flip_gate(cube: OutcomeCube, catalog: Catalog, false_pass: float, false_fail: float,
              rng: np.random.Generator) -> OutcomeCube:
    """The gate as the true outcome flipped at the given rates (schema errors stay errors)."""
    thr = catalog.gate.pass_threshold
    truth = cube.quality >= thr
    flip = np.where(truth, rng.random(truth.shape) < false_fail,
                    rng.random(truth.shape) < false_pass)
    verdict = truth ^ flip
    sim = np.where(verdict, np.maximum(cube.quality, thr),
                   np.minimum(cube.quality, np.nextafter(thr, 0)))
    return OutcomeCube(similarity=sim, quality=cube.quality, schema_valid=cube.schema_valid,
                       call_cost=cube.call_cost, gate_cost=cube.gate_cost,
                       latency_s=cube.latency_s, overflow=cube.overflow)


def run_evaluate(cfg: DictConfig, progress: bool = True) -> dict[str, Any]:
    """Replay every policy, sweep the knob and gate error, estimate off-policy, write reports."""
    started = time.perf_counter()
    bar = tqdm(total=5, desc="router-evaluate", unit="step", disable=not progress)

    def step(name: str) -> None:
        bar.set_postfix_str(name)
        bar.update(1)

    catalog = build_catalog(cfg)
    ev = cfg.evaluate
    settings = PolicySettings.from_config(cfg.router.policy)
    policy = RoutingPolicy.from_artifact_path(catalog, settings, cfg.router.artifact,
                                              seed=int(ev.seed))
    if not policy.learned:
        raise RuntimeError(f"router-evaluate needs a trained router at {cfg.router.artifact} "
                           f"({policy.fallback_reason}); run router-train first")
    bar.set_postfix_str("outcome table")
    table = evaluation_table(cfg, catalog)
    tasks, cube = table.tasks, table.cube
    step("replay policies")
    course = tasks["course_id"].to_numpy()
    n_tiers = len(catalog.ladder)

    starts: dict[str, np.ndarray] = {
        "always-premium": make_router("always-premium", n_tiers=n_tiers).start_tiers(tasks),
        "static": make_router("static", policy=policy).start_tiers(tasks),
        "cheapest": make_router("cheapest").start_tiers(tasks),
        "random": make_router("random", n_tiers=n_tiers, seed=int(ev.seed)).start_tiers(tasks),
        "learned": make_router("learned", policy=policy).start_tiers(tasks),
        "oracle": oracle_starts(cube, catalog),
    }
    runs = {name: replay(cube, s, catalog) for name, s in starts.items()}
    metrics = {name: policy_metrics(r, course) for name, r in runs.items()}

    step("knob sweep")
    sweep = []
    p = policy.start_tiers(tasks)["p"]
    for knob in ev.knob_sweep:
        start = policy.with_settings(knob=float(knob)).start_tiers(tasks, p=p)["start"]
        sweep.append({"knob": float(knob),
                      **policy_metrics(replay(cube, start, catalog), course)})

    savings = {}
    learned_cost = per_course(runs["learned"].cost, course)
    learned_calls = per_course(runs["learned"].calls, course)
    for base in (*BASELINES, "oracle"):
        savings[base] = {
            "cost": savings_ci(learned_cost, per_course(runs[base].cost, course),
                               n_boot=int(ev.bootstrap), seed=int(ev.seed)),
            "calls": savings_ci(learned_calls, per_course(runs[base].calls, course),
                                n_boot=int(ev.bootstrap), seed=int(ev.seed)),
        }
    m = metrics
    oracle_gap = m["static"]["cost_per_course"] - m["oracle"]["cost_per_course"]
    recovered = ((m["static"]["cost_per_course"] - m["learned"]["cost_per_course"]) / oracle_gap
                 if oracle_gap > 0 else float("nan"))

    weak, strong = m["cheapest"], m["always-premium"]
    x, pgr = points_pgr([s["premium_share"] for s in sweep],
                        [s["true_pass_rate"] for s in sweep],
                        weak["true_pass_rate"], strong["true_pass_rate"])
    published = {
        "aiq": aiq([s["cost_per_course"] for s in sweep], [s["true_pass_rate"] for s in sweep],
                   weak["cost_per_course"], strong["cost_per_course"],
                   endpoints=((weak["cost_per_course"], weak["true_pass_rate"]),
                              (strong["cost_per_course"], strong["true_pass_rate"]))),
        "apgr": apgr(x, pgr), "cpt50": cpt(x, pgr, 0.5), "cpt80": cpt(x, pgr, 0.8),
        "note": "x = premium-call share, quality = true final pass rate; weak = ladder from "
                "the cheapest tier, strong = always premium.",
    }

    step("gate-error sweep")
    gate_sweep = []
    for rate in ev.gate_error_rates:
        flipped = flip_gate(cube, catalog, float(rate), float(rate),
                            np.random.default_rng(int(ev.seed) + 17))
        oracle = oracle_starts(flipped, catalog)
        for name in ("static", "cheapest", "always-premium", "learned"):
            r = replay(flipped, starts[name], catalog)
            gate_sweep.append({"gate_error": float(rate), "policy": name,
                               **policy_metrics(r, course)})
        gate_sweep.append({"gate_error": float(rate), "policy": "oracle",
                           **policy_metrics(replay(flipped, oracle, catalog), course)})

    by_field = field_breakdown(runs, tasks)
    premium_fields = [f for f, s in catalog.fields.items() if s.static_tier == catalog.premium]
    on_premium_fields = tasks["field"].isin(premium_fields).to_numpy()
    n_courses = len(np.unique(course))
    sources = {
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
    step("off-policy estimates")
    ope = off_policy_section(cfg, catalog, policy) if ev.get("ope") else None
    step("reports")
    result = {
        "table": table.source, "router_version": policy.router_version,
        "knob": policy.settings.knob,
        "knob_calibration": policy.artifact.manifest.get("policy", {}),
        "policies": metrics, "savings_vs": savings, "oracle_savings_recovered": recovered,
        "where_savings_come_from": sources,
        "knob_sweep": sweep, "published_metrics": published, "gate_error_sweep": gate_sweep,
        "off_policy": ope, "targets": targets(metrics, savings, recovered),
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_reports(result, by_field, Path(cfg.reports_dir))
    bar.close()
    return result


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


COLUMNS = [("cost_per_course", "$/course", "{:.4f}"), ("true_pass_rate", "true pass", "{:.4f}"),
           ("gate_pass_rate", "gate pass", "{:.4f}"), ("false_pass_rate", "false pass",
                                                       "{:.4f}"),
           ("calls_per_task", "calls/task", "{:.3f}"), ("premium_share", "premium",
                                                         "{:.3f}"),
           ("latency_s_per_task", "latency s", "{:.2f}")]


def policy_table(metrics: dict[str, dict[str, Any]], markdown: bool = False) -> str:
    names = list(metrics)
    if markdown:
        head = "| policy | " + " | ".join(c[1] for c in COLUMNS) + " |"
        lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
        for n in names:
            lines.append(f"| {n} | " + " | ".join(fmt.format(metrics[n][k])
                                                  for k, _, fmt in COLUMNS) + " |")
        return "\n".join(lines)
    lines = [f"{'policy':<16}" + "".join(f"{c[1]:>12}" for c in COLUMNS)]
    for n in names:
        lines.append(f"{n:<16}" + "".join(f"{fmt.format(metrics[n][k]):>12}"
                                          for k, _, fmt in COLUMNS))
    return "\n".join(lines)


def _ci(s: dict[str, float]) -> str:
    return f"{s['value']:+.1%} [{s['ci_low']:+.1%}, {s['ci_high']:+.1%}]"


def format_summary(result: dict[str, Any]) -> str:
    lines = [f"Exact replay on {result['table']} (router {result['router_version']}, "
             f"knob {result['knob']:.3f})", "", policy_table(result["policies"]), "",
             "Learned policy savings (95% bootstrap CI over courses):"]
    for base, s in result["savings_vs"].items():
        lines.append(f"  vs {base:<15} cost {_ci(s['cost'])}   calls {_ci(s['calls'])}")
    lines.append(f"  oracle savings recovered (vs static): "
                 f"{result['oracle_savings_recovered']:.1%}")
    p = result["published_metrics"]
    lines.append(f"  AIQ {p['aiq']:.4f}  APGR {p['apgr']:.3f}  CPT(50%) {p['cpt50']:.3f}  "
                 f"CPT(80%) {p['cpt80']:.3f}  (x = premium share)")
    src = result["where_savings_come_from"]
    pf = src["premium_field_cost_per_course"]
    cl = src["calls_and_latency_vs_cheapest"]
    ge = src["gate_error_exposure"]
    lines += ["", "Where the learned policy earns its place:",
              f"  cheaper starts on fields static sends to premium: ${pf['static']:.4f} -> "
              f"${pf['learned']:.4f} per course",
              f"  vs the ladder from the cheapest tier: calls/task "
              f"{cl['cheapest']['calls_per_task']:.3f} -> {cl['learned']['calls_per_task']:.3f}, "
              f"latency s/task {cl['cheapest']['latency_s_per_task']:.2f} -> "
              f"{cl['learned']['latency_s_per_task']:.2f}",
              f"  gate-error exposure (accepted but truly failing): cheapest "
              f"{ge['cheapest']:.2%}, static {ge['static']:.2%}, learned {ge['learned']:.2%}"]
    lines += ["", "Targets:"]
    for name, t in result["targets"].items():
        lines.append(f"  [{'met ' if t['met'] else 'MISS'}] {name:<32} {t['value']:.3f}")
    ope = result.get("off_policy")
    if ope and "error" not in ope:
        lines += ["", "Off-policy estimates from the training logs (per task):"]
        for reward in ("cost", "passed"):
            est = "  ".join(f"{k.upper()} {v['value']:.4f}" for k, v in ope[reward].items())
            exact = ope.get("exact_replay", {}).get(reward)
            lines.append(f"  {reward:<6} {est}" + (f"   exact {exact:.4f}" if exact else ""))
    elif ope:
        lines += ["", f"Off-policy: {ope['error']}"]
    lines.append(f"\nReports in {result.get('reports_dir', 'reports/evaluate')} "
                 f"({result['seconds']} s)")
    return "\n".join(lines)


def write_reports(result: dict[str, Any], by_field: pd.DataFrame, reports: Path) -> None:
    reports.mkdir(parents=True, exist_ok=True)
    result["reports_dir"] = str(reports)
    (reports / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    by_field.to_csv(reports / "per_field.csv", index=False)
    pareto_plot(result, reports / "pareto.png")
    (reports / "report.md").write_text(markdown_report(result, by_field))


def pareto_plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    sweep = result["knob_sweep"]
    ax.plot([s["cost_per_course"] for s in sweep], [s["true_pass_rate"] for s in sweep],
            "-o", ms=3, color="tab:blue", label="learned (knob sweep)")
    for s in sweep[:: max(1, len(sweep) // 5)]:
        ax.annotate(f"{s['knob']:.2f}", (s["cost_per_course"], s["true_pass_rate"]),
                    fontsize=7, xytext=(3, -8), textcoords="offset points")
    for name, m in result["policies"].items():
        ax.scatter(m["cost_per_course"], m["true_pass_rate"], s=40, zorder=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("cost per course (USD, log scale)")
    ax.set_ylabel("true final pass rate")
    ax.set_title("Cost vs quality: every policy, exact replay")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def markdown_report(result: dict[str, Any], by_field: pd.DataFrame) -> str:
    lines = [f"# Offline evaluation: {result['router_version']}", "",
             f"Exact replay on {result['table']}; learned knob {result['knob']:.3f}.", "",
             policy_table(result["policies"], markdown=True), "",
             "## Savings of the learned policy (95% bootstrap CI over courses)", "",
             "| vs | cost | calls |", "|---|---|---|"]
    for base, s in result["savings_vs"].items():
        lines.append(f"| {base} | {_ci(s['cost'])} | {_ci(s['calls'])} |")
    src = result["where_savings_come_from"]
    lines += ["", f"Oracle savings recovered (relative to static): "
              f"{result['oracle_savings_recovered']:.1%}", "",
              "## Where the learned policy earns its place", "",
              "| effect | measure | value |", "|---|---|---|",
              f"| cheaper starts where static uses premium ({', '.join(src['premium_fields'])}) "
              f"| $/course on those fields, static -> learned | "
              f"{src['premium_field_cost_per_course']['static']:.4f} -> "
              f"{src['premium_field_cost_per_course']['learned']:.4f} |"]
    for name, v in src["calls_and_latency_vs_cheapest"].items():
        lines.append(f"| fewer calls and less latency | {name}: calls/task, latency s/task | "
                     f"{v['calls_per_task']:.3f}, {v['latency_s_per_task']:.2f} |")
    for name, v in src["gate_error_exposure"].items():
        lines.append(f"| less exposure to gate errors | {name}: accepted but truly failing | "
                     f"{v:.2%} |")
    lines += ["", "## Targets", ""]
    for name, t in result["targets"].items():
        lines.append(f"- {'met' if t['met'] else '**missed**'}: {name} = {t['value']:.3f}")
    lines += ["", "## Where the savings come from: per field", "",
              "| field | static $ | learned $ | static calls/task | learned calls/task | "
              "learned mean start tier |", "|---|---|---|---|---|---|"]
    pivot = by_field.pivot(index="field", columns="policy")
    for f in pivot.index:
        lines.append(f"| {f} | {pivot.loc[f, ('cost', 'static')]:.2f} | "
                     f"{pivot.loc[f, ('cost', 'learned')]:.2f} | "
                     f"{pivot.loc[f, ('calls_per_task', 'static')]:.3f} | "
                     f"{pivot.loc[f, ('calls_per_task', 'learned')]:.3f} | "
                     f"{pivot.loc[f, ('mean_start_tier', 'learned')]:.2f} |")
    lines += ["", "## Gate error (gate = true outcome flipped at the rate)", "",
              "| gate error | policy | $/course | true pass | gate pass | false pass | "
              "calls/task |", "|---|---|---|---|---|---|---|"]
    for g in result["gate_error_sweep"]:
        lines.append(f"| {g['gate_error']:.1f} | {g['policy']} | {g['cost_per_course']:.4f} | "
                     f"{g['true_pass_rate']:.4f} | {g['gate_pass_rate']:.4f} | "
                     f"{g['false_pass_rate']:.4f} | {g['calls_per_task']:.3f} |")
    lines += ["", "## Knob sweep", "", "| knob | $/course | true pass | premium share | "
              "calls/task |", "|---|---|---|---|---|"]
    for s in result["knob_sweep"]:
        lines.append(f"| {s['knob']:.2f} | {s['cost_per_course']:.4f} | "
                     f"{s['true_pass_rate']:.4f} | {s['premium_share']:.3f} | "
                     f"{s['calls_per_task']:.3f} |")
    p = result["published_metrics"]
    lines += ["", f"AIQ {p['aiq']:.4f}, APGR {p['apgr']:.3f}, CPT(50%) {p['cpt50']:.3f}, "
              f"CPT(80%) {p['cpt80']:.3f}. {p['note']}", ""]
    ope = result.get("off_policy")
    if ope and "error" not in ope:
        lines += ["## Off-policy estimates from the training logs", "",
                  "| reward | IPS | SNIPS | DR | exact replay | logging policy |",
                  "|---|---|---|---|---|---|"]
        for reward in ("cost", "passed"):
            cells = [f"{v['value']:.4f} [{v['ci_low']:.4f}, {v['ci_high']:.4f}]"
                     for v in ope[reward].values()]
            exact = ope.get("exact_replay", {}).get(reward, float("nan"))
            logged = ope.get("logging_policy", {}).get(reward, float("nan"))
            lines.append(f"| {reward} | " + " | ".join(cells) + f" | {exact:.4f} | "
                         f"{logged:.4f} |")
        lines.append(f"\nEffective sample size {ope['effective_sample_size']['value']:.0f} of "
                     f"{ope['tasks']:,} tasks; the target matches the logged start on "
                     f"{ope['matched_share']['value']:.1%}.")
    elif ope:
        lines += ["## Off-policy estimates", "", ope["error"]]
    lines += ["", "![pareto](pareto.png)", ""]
    return "\n".join(lines)
