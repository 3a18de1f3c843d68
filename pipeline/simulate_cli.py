"""`router-simulate`: write the embedded default data (tasks, outcomes, attempt logs)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf

from pipeline.world import (
    attempt_logs,
    calibration_summary,
    outcome_table,
    simulate_world,
    task_table,
)
from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, Catalog
from router_model.decide.replay import replay
from router_model.decide.rules import StaticRules, explore
from router_model.logs.attempts import clear_log_dataset, log_dataset_parts, write_attempts

# The seed note's predictions for the rule policy; the summary checks each one.
SEED_RANGES = {
    "cost_per_course_usd": (0.20, 0.40),
    "course_paths.ideal": (0.60, 0.70),
    "first_tier_success": (0.75, 0.85),
    "final_success": (0.95, 1.00),
}


def _lookup(summary: dict[str, Any], dotted: str) -> float:
    value: Any = summary
    for part in dotted.split("."):
        value = value[part]
    return float(value)


def check_ranges(summary: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each seed-note figure with its measured value and whether it is inside the range."""
    return {k: {"value": _lookup(summary, k), "range": list(r),
                "ok": r[0] <= _lookup(summary, k) <= r[1]} for k, r in SEED_RANGES.items()}


def shifted_world(sim: DictConfig) -> DictConfig:
    """The world with its `evaluation_shift` applied when `shifted` is set: logs of the
    shifted course mix, e.g. recent traffic for router-monitor."""
    if not sim.get("shifted"):
        return sim
    if not sim.get("evaluation_shift"):
        raise ValueError("simulate.shifted=true needs a world with an evaluation_shift "
                         "(simulate=shift)")
    return OmegaConf.merge(sim, sim.evaluation_shift)


def run_simulate(cfg: DictConfig) -> dict[str, Any]:
    """Simulate, write every output under cfg.paths, and return the summary."""
    started = time.perf_counter()
    dataset = not Path(cfg.paths.logs).suffix  # a partitioned dataset folder
    if dataset:  # refuse a folder holding anything else before writing any output
        logs = Path(cfg.paths.logs).resolve()
        inside = [k for k in ("tasks", "outcomes", "simulate_summary")
                  if logs in Path(cfg.paths[k]).resolve().parents]
        if inside:
            raise ValueError(f"paths.logs={str(cfg.paths.logs)[:200]!r} is a dataset folder "
                             f"that would hold paths.{inside[0]}; give the logs a folder of "
                             "their own, e.g. paths.logs=${paths.data_dir}/logs")
        log_dataset_parts(logs)
    catalog = Catalog.from_config(cfg)
    sim = shifted_world(cfg.simulate)
    world = simulate_world(sim, catalog)
    rules = StaticRules(catalog)  # no model: the seed's static starts
    static = rules.static_starts(world.tasks["field"])
    # Calibration is measured on the pure rule policy; the logs add exploration on top.
    rules_only = replay(world.cube, static, catalog)
    summary = calibration_summary(world, rules_only, catalog)
    rng = np.random.default_rng(int(sim.seed) + 1)
    tasks = world.tasks
    eligible = np.column_stack(rules.eligible(
        (tasks["prompt_tokens"] + tasks["context_tokens"]).to_numpy(float),
        tasks["expected_output_tokens"].to_numpy(float)))
    start, explored, propensity = explore(static, eligible, float(sim.epsilon), rng)
    logged = replay(world.cube, start, catalog, record_trace=True)
    n_courses = summary["courses"]
    audited = np.zeros(n_courses, dtype=bool)  # its own generator: the audit draws nothing else
    audited[np.random.default_rng(int(sim.seed) + 2).choice(
        n_courses, min(int(sim.audit_courses), n_courses), replace=False)] = True
    logs = attempt_logs(world, logged, catalog, explored=explored, propensity=propensity,
                        router_version=str(sim.router_version), start_time=str(sim.start_time),
                        courses_per_day=float(sim.courses_per_day), audited=audited)
    paths = cfg.paths
    Path(paths.tasks).parent.mkdir(parents=True, exist_ok=True)
    task_table(world).to_parquet(paths.tasks, index=False)
    outcome_table(world, catalog).to_parquet(paths.outcomes, index=False)
    if dataset:  # this run replaces the dataset's parts
        clear_log_dataset(paths.logs)
    write_attempts(logs, paths.logs, shards=int(sim.get("log_shards") or 0))
    summary["logged_policy"] = {
        "epsilon": float(sim.epsilon),
        "attempt_rows": len(logs),
        "explored_task_share": float(explored[~world.cube.overflow].mean()),
        "cost_per_course_usd": float(logged.cost.sum() / summary["courses"]),
    }
    summary["seed_ranges"] = check_ranges(summary)
    summary["outputs"] = {k: str(paths[k]) for k in ("tasks", "outcomes", "logs")}
    # The summary is a DVC output, byte-identical for a seed: the timing is not part of it.
    Path(paths.simulate_summary).write_text(json.dumps(summary, indent=2))
    return {**summary, "seconds": round(time.perf_counter() - started, 2)}


def format_summary(summary: dict[str, Any]) -> str:
    lines = [f"Simulated {summary['courses']:,} courses, {summary['tasks']:,} tasks, "
             f"{summary['logged_policy']['attempt_rows']:,} logged attempts "
             f"in {summary['seconds']} s.",
             "", "Rule policy (static assignment + ladder) against the seed note:"]
    for key, check in summary["seed_ranges"].items():
        lo, hi = check["range"]
        mark = "ok " if check["ok"] else "OUT"
        lines.append(f"  [{mark}] {key:<24} {check['value']:8.3f}   seed range {lo:.2f}-{hi:.2f}")
    lines.append("  course paths: " + ", ".join(
        f"{k} {v:.1%}" for k, v in summary["course_paths"].items()))
    lines.append(f"  calls per task {summary['calls_per_task']:.3f}, first-call success "
                 f"{summary['task_first_call_success']:.1%}, true pass "
                 f"{summary['task_final_true_pass_rate']:.1%}")
    lines += ["", "Outputs: " + ", ".join(summary["outputs"].values())]
    return "\n".join(lines)


@hydra.main(config_path=CONF_DIR, config_name="router_simulate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    with user_errors("router-simulate"):
        summary = run_simulate(cfg)
    print(format_summary(summary))


if __name__ == "__main__":
    main()
