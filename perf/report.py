"""`make perf`: every figure of issue 14 in one table, each next to a bare baseline measured
in the same run, its target, the ratio and met / missed; written to reports/perf.json so runs
on different commits can be compared.

The machine is shared, so absolute numbers wander; each target is judged on the ratio to its
baseline wherever the issue gives one (the issue's absolute targets over its own measured
baseline: 20 us / 27 us one-row predict = 0.75x, ...), and sizes are configurable so the run
takes minutes: the replay, simulation and training targets, set at 100k courses and 1M rows,
are scaled linearly to the size used (stated in the table).

    .venv/bin/python perf/report.py [--decisions 10000] [--courses 20000]
        [--train-rows 100000] [--serve-seconds 5] [--gateway-requests 300]
        [--skip serve gateway train replay]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from gateway_overhead import gateway_figures
from policy_speed import (
    TASK,
    decision_figures,
    evaluate_config,
    profile_breakdown,
    replay_figures,
    timed_us,
)
from serve_speed import serve_figures
from train_scale import train_figures

ROOT = Path(__file__).resolve().parents[1]
# The issue's own baselines, to turn its absolute targets into ratios.
ISSUE_BARE_PREDICT_US = 27.0
ISSUE_BARE_ENDPOINT_RPS = 3944.0
ISSUE_STATIC_REPLAY_100K_S = 4.7


def figure(name: str, value: float, unit: str, baseline: str, base_value: float,
           ratio: float, target: str, met: bool | None, size: str = "") -> dict[str, Any]:
    """One row of the table; `met` None: not judged at this size (or a reference row)."""
    return {"figure": name, "value": round(value, 3), "unit": unit, "baseline": baseline,
            "baseline_value": round(base_value, 3), "ratio": round(ratio, 3),
            "target": target, "met": None if met is None else bool(met), "size": size}


def decision_rows(d: dict[str, Any], decisions: int) -> list[dict[str, Any]]:
    bare = d["bare"]["p50_us"]
    size = f"{decisions:,} runs; trees {'compiled' if d['compiled'] else 'NOT compiled'}"
    fast, plain, batch = d["fast"], d["plain"], d["batch"]
    compiled = d["compiled_predict"]
    return [
        figure("compiled one-row predict p50", compiled["p50_us"], "us",
               "bare 1-row predict p50", bare, compiled["p50_us"] / bare, "(reference)", None,
               size),
        figure("one decision p50", fast["p50_us"], "us", "bare 1-row predict p50", bare,
               fast["p50_us"] / bare, "<= 0.75x (20 us)", fast["p50_us"] / bare <= 0.75, size),
        figure("one decision p99", fast["p99_us"], "us", "bare 1-row predict p50", bare,
               fast["p99_us"] / bare, "<= 2.2x (60 us)",
               fast["p99_us"] / bare <= 60 / ISSUE_BARE_PREDICT_US, size),
        figure("one decision p50, plain LightGBM (before)", plain["p50_us"], "us",
               "bare 1-row predict p50", bare, plain["p50_us"] / bare, "(reference)", None,
               size),
        figure("batch of 50, per task", batch["p50_us"], "us", "bare 1-row predict p50",
               bare, batch["p50_us"] / bare, "<= 0.11x (3 us)",
               batch["p50_us"] / bare <= 3 / ISSUE_BARE_PREDICT_US, size),
    ]


def serve_rows(s: dict[str, Any], seconds: int) -> list[dict[str, Any]]:
    bare, one, two, batch = s["bare"], s["route_1w"], s["route_2w"], s["batch50"]
    size = f"{s['generator']} -c16 {seconds}s"
    tasks_per_s = batch["rps"] * 50
    batch_target = 50_000 / ISSUE_BARE_ENDPOINT_RPS
    return [
        figure("POST /v1/route, 1 worker", one["rps"], "req/s", "bare FastAPI+LightGBM",
               bare["rps"], one["rps"] / bare["rps"], ">= 0.9x", one["rps"] / bare["rps"]
               >= 0.9, size),
        figure("POST /v1/route p99", one["p99_ms"], "ms", "bare endpoint p99",
               bare["p99_ms"], one["p99_ms"] / bare["p99_ms"], "<= 8 ms",
               one["p99_ms"] <= 8, size),
        figure("POST /v1/route/batch x50", tasks_per_s, "tasks/s", "bare endpoint req/s",
               bare["rps"], tasks_per_s / bare["rps"], f">= {batch_target:.1f}x (50k/s)",
               tasks_per_s / bare["rps"] >= batch_target, f"{s['generator']} -c4 {seconds}s"),
        figure("serve.workers=2", two["rps"], "req/s", "1 worker", one["rps"],
               two["rps"] / one["rps"], ">= 1.6x", two["rps"] / one["rps"] >= 1.6, size),
    ]


def gateway_rows(g: dict[str, Any]) -> list[dict[str, Any]]:
    """router-gateway against the same call made straight to the simulator (issue 28)."""
    size = f"{g['requests']} sequential requests; router: {g['router']}"
    overhead, direct = g["overhead_p50_ms"], g["direct_p50_ms"]
    return [
        figure("router-gateway overhead p50 (no gate)", overhead, "ms",
               "direct call p50", direct, overhead / direct, "<= 2 ms", overhead <= 2, size),
        figure("  the gate's own time p50 (MiniLM)", g["gate_p50_ms"], "ms", "direct call p50",
               direct, g["gate_p50_ms"] / direct, "(reference)", None, size),
    ]


def replay_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    size = f"{r['courses']:,} courses ({r['tasks']:,} tasks); peak {r['peak_mb']:.0f} MB"
    target = 10.0 / ISSUE_STATIC_REPLAY_100K_S
    return [
        figure("exact replay, learned incl. prediction", r["learned_s"], "s",
               "static replay", r["static_s"], r["learned_s"] / r["static_s"],
               f"<= {target:.1f}x (10 s at 100k)", r["learned_s"] / r["static_s"] <= target,
               size),
        figure("  of which: bare prediction of every tier", r["predict_s"], "s",
               "static replay", r["static_s"], r["predict_s"] / r["static_s"], "(reference)",
               None, size),
        figure("simulate courses", r["simulate_s"], "s", "static replay", r["static_s"],
               r["simulate_s"] / r["static_s"], f"<= {target:.1f}x (10 s at 100k)",
               r["simulate_s"] / r["static_s"] <= target, size),
    ]


def train_rows(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Judged at 1M rows or more only: fixed costs make a linear scaling to fewer rows
    meaningless, so smaller runs show the scaling curve, marked n/a."""
    rows = []
    for t in results:
        judged = t["rows"] >= 1_000_000
        size = f"{t['rows']:,} rows" + ("" if judged else "; targets are for 1M")
        rows.append(figure("router-train", t["seconds"], "s", "one bare LightGBM fit",
                           t["bare_fit_s"], t["seconds"] / t["bare_fit_s"], "<= 25 s at 1M",
                           t["seconds"] <= 25 if judged else None, size))
        rows.append(figure("router-train peak memory", t["peak_mb"], "MB", "-", 0.0, 0.0,
                           "<= 2 GB at 1M", t["peak_mb"] <= 2048 if judged else None, size))
    return rows


@contextlib.contextmanager
def local_service() -> Iterator[Any]:
    """The serving object on the demo artifact, its decision log and compiled trees in a
    temporary folder (no HTTP: what a request costs past the framework)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from router_model.config import CONF_DIR
    from router_model.serve.core import RouterService

    with tempfile.TemporaryDirectory() as tmp, \
            initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="router_serve", overrides=[
            f"serve.decision_log={tmp}/d.jsonl", f"serve.compiled_cache={tmp}",
            f"serve.artifact={ROOT / 'artifacts/router'}"])
        service = RouterService.from_config(OmegaConf.to_container(cfg, resolve=True))
        try:
            yield service
        finally:
            service.close()


def request_profile(n: int = 2000) -> list[dict[str, Any]]:
    """Where a request's time goes past the framework: validation, routing, the decision
    log, the JSON answer (in-process: HTTP parsing is uvicorn's and not profiled here)."""
    import orjson

    from router_model.serve.requests import TaskIn

    with local_service() as service:
        body = orjson.dumps(TASK)

        def one() -> bytes:
            task = TaskIn.model_validate_json(body)
            return orjson.dumps(service.route(task.model_dump(exclude_none=True)))

        for _ in range(300):
            one()
        return profile_breakdown(one, n)


def batch_steps(n: int = 400, size: int = 50) -> dict[str, float]:
    """p50 microseconds per batch of `size` of each step of `POST /v1/route/batch` past the
    framework, timed without a profiler: where the batch endpoint's time goes."""
    import orjson

    from router_model.serve.requests import BatchIn

    with local_service() as service:
        body = orjson.dumps({"tasks": [TASK] * size})
        batch = BatchIn.model_validate_json(body)
        tasks = [t.model_dump(exclude_none=True) for t in batch.tasks]
        decisions = service.route_batch(tasks)
        steps = {"validate the body (pydantic + plain-JSON checks)":
                 lambda: BatchIn.model_validate_json(body),
                 "model_dump of each task": lambda: [t.model_dump(exclude_none=True)
                                                     for t in batch.tasks],
                 "decide_many (encode, predict, plan, records)":
                 lambda: service.policy.decide_many(tasks),
                 "route_batch (decide_many + dicts + decision log)":
                 lambda: service.route_batch(tasks),
                 "encode the answer (orjson)": lambda: orjson.dumps({"decisions": decisions})}
        out = {}
        for name, step in steps.items():
            timed_us(step, 50)
            out[name] = float(np.median(timed_us(step, n)))
        return out


def print_table(rows: list[dict[str, Any]]) -> None:
    head = (f"{'figure':<42} {'value':>15} {'baseline (same run)':>34} {'ratio':>7}  "
            f"{'target':<26} {'':6} size")
    print(head)
    print("-" * len(head))
    for r in rows:
        value = f"{r['value']:,.1f} {r['unit']}"
        base = f"{r['baseline_value']:,.1f} {r['baseline']}" if r["baseline_value"] else "-"
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] else "-"
        verdict = {None: "n/a", True: "met", False: "MISSED"}[r["met"]]
        print(f"{r['figure']:<42} {value:>15} {base:>34} {ratio:>7}  {r['target']:<26} "
              f"{verdict:6} {r['size']}")


def print_profile(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title} (cProfile, own time):")
    for r in rows:
        print(f"  {r['share']:6.1%}  {r['us_per_call']:7.1f} us  {r['function']}")


def commit() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                          capture_output=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--courses", type=int, default=20_000)
    parser.add_argument("--train-rows", type=int, nargs="*", default=[100_000])
    parser.add_argument("--serve-seconds", type=int, default=5)
    parser.add_argument("--skip", nargs="*", default=[], choices=["serve", "gateway", "train",
                                                                    "replay"])
    parser.add_argument("--gateway-requests", type=int, default=300)
    parser.add_argument("--out", default=str(ROOT / "reports" / "perf.json"))
    args = parser.parse_args()
    started = time.perf_counter()
    cfg = evaluate_config()
    rows: list[dict[str, Any]] = []
    report: dict[str, Any] = {"commit": commit(), "date": datetime.now(UTC).isoformat(),
                              "machine": {"cpus": os.cpu_count(),
                                          "python": platform.python_version()},
                              "args": vars(args)}
    with tempfile.TemporaryDirectory() as cache:
        decision = decision_figures(cfg, args.decisions, cache)
        rows += decision_rows(decision, args.decisions)
        report["profile_decision"] = decision.pop("profile")
        report["profile_request"] = request_profile()
        report["batch_steps_us"] = batch_steps()
        report["decision"] = decision
        if "serve" not in args.skip:
            report["serve"] = serve_figures(args.serve_seconds, 16,
                                            str(ROOT / "artifacts" / "router"), cache)
            rows += serve_rows(report["serve"], args.serve_seconds)
        if "gateway" not in args.skip:
            report["gateway"] = gateway_figures(args.gateway_requests)
            rows += gateway_rows(report["gateway"])
        if "replay" not in args.skip:
            report["replay"] = replay_figures(cfg, args.courses, cache)
            rows += replay_rows(report["replay"])
    if "train" not in args.skip:
        report["train"] = train_figures(args.train_rows)
        rows += train_rows(report["train"])
    report["figures"] = rows
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(f"make perf at {report['commit']}, {report['machine']['cpus']} cores (shared: "
          "judge the ratios)\n")
    print_table(rows)
    print_profile("one decision, compiled trees", report["profile_decision"])
    print_profile("one request past the framework (validate, route, log, encode)",
                  report["profile_request"])
    print("\na batch of 50 past the framework, p50 per batch (no profiler):")
    for name, us in report["batch_steps_us"].items():
        print(f"  {us:8.1f} us  ({us / 50:5.1f} us per task)  {name}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"\nwritten to {out} ({report['seconds']} s)")


if __name__ == "__main__":
    main()
