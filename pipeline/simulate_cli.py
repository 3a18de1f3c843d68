"""`router-simulate`: write the embedded default data (tasks, outcomes, attempt logs)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from pipeline.world.calibration import calibration_summary
from pipeline.world.gate_error import read_table
from pipeline.world.settings import WorldSettings, world_settings
from pipeline.world.simulate import SimulatedWorld, simulate_world
from pipeline.world.tables import attempt_logs, outcome_table, task_table
from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, Catalog, Paths, typed
from router_model.decide.gate import gate_version
from router_model.decide.replay import OutcomeCube, ReplayResult, replay
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


@dataclass(frozen=True)
class SimulateJob:
    """router-simulate's composed config, typed once: where to write, the catalog, and the
    world it logs (with its evaluation_shift applied when `simulate.shifted` is set)."""

    paths: Paths
    catalog: Catalog
    world: WorldSettings


def simulate_job(cfg: DictConfig) -> SimulateJob:
    """The settings router-simulate runs on, from its composed config."""
    world = world_settings(cfg.simulate)
    return SimulateJob(paths=typed(Paths, cfg.paths, "paths"), catalog=Catalog.from_config(cfg),
                       world=world.shifted_world() if world.shifted else world)


def run_simulate(cfg: DictConfig) -> dict[str, Any]:
    """Simulate, write every output under cfg.paths, and return the summary."""
    return simulate(simulate_job(cfg))


def _log_folder(paths: Paths) -> bool:
    """Whether the logs go to a partitioned dataset folder; refuses a folder that would hold
    another output, before anything is written."""
    if Path(paths.logs).suffix:
        return False
    logs = Path(paths.logs).resolve()
    inside = [k for k in ("tasks", "outcomes", "simulate_summary")
              if logs in Path(getattr(paths, k)).resolve().parents]
    if inside:
        raise ValueError(f"paths.logs={str(paths.logs)[:200]!r} is a dataset folder "
                         f"that would hold paths.{inside[0]}; give the logs a folder of "
                         "their own, e.g. paths.logs=${paths.data_dir}/logs")
    log_dataset_parts(logs)
    return True


def _logged(job: SimulateJob, world: SimulatedWorld, rules: StaticRules, static: np.ndarray,
            n_courses: int) -> tuple[ReplayResult, pd.DataFrame, np.ndarray]:
    """The logged policy (the rules with epsilon exploration on top) replayed on the world,
    and its attempt logs, a random `audit_courses` of them carrying the audit's verdict."""
    w, catalog, tasks = job.world, job.catalog, world.tasks
    rng = np.random.default_rng(w.seed + 1)
    eligible = np.column_stack(rules.eligible(
        (tasks["prompt_tokens"] + tasks["context_tokens"]).to_numpy(float),
        tasks["expected_output_tokens"].to_numpy(float)))
    start, explored, propensity = explore(static, eligible, w.epsilon, rng)
    logged = replay(world.cube, start, catalog, record_trace=True)
    audited = np.zeros(n_courses, dtype=bool)  # its own generator: the audit draws nothing else
    audited[np.random.default_rng(w.seed + 2).choice(
        n_courses, min(w.audit_courses, n_courses), replace=False)] = True
    logs = attempt_logs(world, logged, catalog, w, explored=explored, propensity=propensity,
                        audited=audited)
    return logged, logs, explored


def simulate(job: SimulateJob) -> dict[str, Any]:
    """Simulate, write every output under the job's paths, and return the summary."""
    started = time.perf_counter()
    dataset = _log_folder(job.paths)
    catalog, paths = job.catalog, job.paths
    world = simulate_world(job.world, catalog)
    rules = StaticRules(catalog)  # no model: the seed's static starts
    static = rules.static_starts(world.tasks["field"])
    # Calibration is measured on the pure rule policy; the logs add exploration on top.
    summary = calibration_summary(world, replay(world.cube, static, catalog), catalog)
    logged, logs, explored = _logged(job, world, rules, static, summary["courses"])
    Path(paths.tasks).parent.mkdir(parents=True, exist_ok=True)
    task_table(world).to_parquet(paths.tasks, index=False)
    outcome_table(world, catalog).to_parquet(paths.outcomes, index=False)
    if dataset:  # this run replaces the dataset's parts
        clear_log_dataset(paths.logs)
    write_attempts(logs, paths.logs, shards=job.world.log_shards)
    summary["logged_policy"] = {
        "epsilon": job.world.epsilon,
        "attempt_rows": len(logs),
        "explored_task_share": float(explored[~world.cube.overflow].mean()),
        "cost_per_course_usd": float(logged.cost.sum() / summary["courses"]),
    }
    summary["seed_ranges"] = check_ranges(summary)
    summary["gate"] = gate_versions(job)
    summary["gate_vs_truth"] = gate_vs_truth(world.cube, catalog)
    summary["outputs"] = {k: str(getattr(paths, k)) for k in ("tasks", "outcomes", "logs")}
    # The summary is a DVC output, byte-identical for a seed: the timing is not part of it.
    Path(paths.simulate_summary).write_text(json.dumps(summary, indent=2))
    return {**summary, "seconds": round(time.perf_counter() - started, 2)}


def gate_vs_truth(cube: OutcomeCube, catalog: Catalog) -> dict[str, dict[str, float]]:
    """Per ladder tier, every task's first attempt: how often the gate passes it, how often
    it is truly good, the share of gate passes that are truly bad, and how well the two
    verdicts agree (phi): what a router trained on gate verdicts can learn of the truth."""
    thr = (np.full(cube.n_tasks, catalog.gate.pass_threshold) if cube.pass_threshold is None
           else cube.pass_threshold)
    out = {}
    for t, tier in enumerate(catalog.ladder):
        valid = cube.schema_valid[:, t, 0]
        gate = valid & (cube.similarity[:, t, 0] >= thr)
        true = valid & (cube.quality[:, t, 0] >= thr)
        both = gate.std() > 0 and true.std() > 0
        out[tier] = {"gate_pass": float(gate.mean()), "true_pass": float(true.mean()),
                     "bad_among_gate_passes": float((~true[gate]).mean()) if gate.any()
                     else float("nan"),
                     "phi": float(np.corrcoef(gate, true)[0, 1]) if both else float("nan")}
    return out


def gate_versions(job: SimulateJob) -> dict[str, Any]:
    """The gate the world's error table was measured for, and the gate conf/gate describes
    now: when they differ, the simulated gate is not the one the generator runs."""
    table = read_table(job.world.gate_error)
    current = gate_version(job.catalog.gate)
    measured = table.gate_version if table is not None else None
    return {"table": job.world.gate_error, "measured_for": measured, "current": current,
            "match": measured == current}


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
    lines.append(f"  per course, strictly: every field passed on its first call "
                 f"{summary['course_first_attempt_pass']:.1%} (seed 75-85%), none flagged "
                 f"{summary['course_final_pass']:.1%}, every field truly good "
                 f"{summary['course_true_final_pass']:.1%}")
    lines.append(f"  calls per task {summary['calls_per_task']:.3f}, first-call success "
                 f"{summary['task_first_call_success']:.1%}, true pass "
                 f"{summary['task_final_true_pass_rate']:.1%}")
    lines.append("  first attempts, gate verdict against the truth (what a router of gate "
                 "labels can learn):")
    for tier, g in summary["gate_vs_truth"].items():
        lines.append(f"    {tier:<14} gate pass {g['gate_pass']:.1%}, truly good "
                     f"{g['true_pass']:.1%}, truly bad among gate passes "
                     f"{g['bad_among_gate_passes']:.1%}, agreement phi {g['phi']:.2f}")
    gate = summary.get("gate", {})
    if gate.get("measured_for") and not gate.get("match"):
        lines.append(f"  WARNING: the gate error table was measured for gate "
                     f"{gate['measured_for']}, conf/gate is {gate['current']}: rerun "
                     "router-gate-calibrate calibrate.world_error.courses=60")
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
