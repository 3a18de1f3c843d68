"""Benchmark: in-process routing decisions, and exact replay at scale.

1. `RoutingPolicy.decide` (flatten features, encode 3 tier rows, trees + calibration,
   expected-cost plan, decision record): p50 / p99 over `--decisions` runs, compiled and
   plain LightGBM, next to a bare LightGBM `booster.predict` on one row measured in the
   same run; a batch of 50 decisions per task; a cProfile breakdown of one decision.
2. Exact replay of `--courses` simulated courses: simulating the world, the static policy's
   replay (the baseline) and the learned policy's, including its predictions.

Needs a trained artifact (`make demo` or `router-train`). Prints numbers; asserts nothing.

    .venv/bin/python perf/policy_speed.py [--decisions 10000] [--courses 100000]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf
from train_scale import peak_rss_mb

from pipeline.world import simulate_world, task_table, world_settings
from router_model.config import CONF_DIR, Catalog, typed
from router_model.contract import EXAMPLE_TASK
from router_model.decide.policy import RoutingPolicy
from router_model.decide.replay import replay
from router_model.decide.routers import RouterContext, build_router
from router_model.decide.settings import PolicySettings

TASK = EXAMPLE_TASK


def timed_us(fn: Callable[[], Any], n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - start) / 1000
    return out


def timed_together(fns: dict[str, tuple[Callable[[], Any], int]], rounds: int
                   ) -> dict[str, np.ndarray]:
    """`timed_us` of each (function, block): `rounds` turns, each running every function
    `block` times. On a shared machine whose speed drifts by a third within seconds, every
    function meets the same slow and fast spells, so their ratios hold from run to run."""
    parts: dict[str, list[np.ndarray]] = {name: [] for name in fns}
    for _ in range(max(1, rounds)):
        for name, (fn, block) in fns.items():
            parts[name].append(timed_us(fn, block))
    return {name: np.concatenate(chunks) for name, chunks in parts.items()}


def evaluate_config() -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="router_evaluate")
    OmegaConf.resolve(cfg)
    return cfg


def policy_for(cfg: DictConfig, compiled_cache: str | None) -> RoutingPolicy:
    return RoutingPolicy.from_artifact_path(
        Catalog.from_config(cfg), typed(PolicySettings, cfg.router.policy, "router.policy"),
        cfg.router.artifact, compiled_cache=compiled_cache)


def profile_breakdown(fn: Callable[[], Any], n: int, top: int = 8) -> list[dict[str, Any]]:
    """Where the time of `fn` goes: the functions with the most own time, as shares."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(n):
        fn()
    profiler.disable()
    stats = pstats.Stats(profiler).stats
    total = sum(s[2] for s in stats.values()) or 1.0
    rows = sorted(stats.items(), key=lambda kv: -kv[1][2])[:top]
    return [{"function": f"{name} ({file.rsplit('/', 1)[-1]}:{line})",
             "share": round(s[2] / total, 3), "us_per_call": round(s[2] / n * 1e6, 1)}
            for (file, line, name), s in rows]


def decision_figures(cfg: DictConfig, decisions: int, cache: str) -> dict[str, Any]:
    """One decision (compiled and plain), a batch of 50, and the bare one-row predict."""
    fast, plain = policy_for(cfg, cache), policy_for(cfg, None)
    if plain.artifact is None:
        raise SystemExit(f"perf: no trained router at {cfg.router.artifact}: run make demo "
                         "(or router-simulate && router-train) first, or make perf")
    booster = plain.artifact.model.estimator.booster_
    row = np.zeros((1, len(plain.artifact.model.spec.columns)))
    batch = [TASK] * 50
    for _ in range(500):
        fast.decide(TASK)
        plain.decide(TASK)
        booster.predict(row, num_threads=1)
    compiled = fast.artifact.model.compiled or plain.artifact.model.estimator
    runs = timed_together({"bare": (lambda: booster.predict(row, num_threads=1), 100),
                           "compiled_predict": (lambda: compiled.predict(row), 100),
                           "fast": (lambda: fast.decide(TASK), 100),
                           "plain": (lambda: plain.decide(TASK), 100),
                           "batch": (lambda: fast.decide_many(batch), 2)}, decisions // 100)
    runs["batch"] = runs["batch"] / 50
    out = {k: {"p50_us": float(np.median(v)), "p99_us": float(np.percentile(v, 99))}
           for k, v in runs.items()}
    out["compiled"] = fast.artifact.model.compiled is not None
    out["profile"] = profile_breakdown(lambda: fast.decide(TASK), 2000)
    return out


def replay_figures(cfg: DictConfig, courses: int, cache: str) -> dict[str, Any]:
    """Simulate `courses`, then replay the static policy (baseline) and the learned one.

    The learned time is split: its start tiers (encoding, predicting, planning), and the
    bare prediction of every task on every ladder tier (the trees alone, no encoding), the
    floor any learned replay pays."""
    catalog = Catalog.from_config(cfg)
    started = time.perf_counter()
    world = simulate_world(world_settings(cfg.simulate), catalog, n_courses=courses, seed=7)
    simulate_s = time.perf_counter() - started
    tasks = task_table(world)
    context = RouterContext(catalog, policy_for(cfg, cache))
    started = time.perf_counter()
    replay(world.cube, build_router("static", cfg.routers, context).start_tiers(tasks), catalog)
    static_s = time.perf_counter() - started
    learned = build_router("learned", cfg.routers, context)
    started = time.perf_counter()
    start = learned.start_tiers(tasks)
    learned_start_s = time.perf_counter() - started
    replay(world.cube, start, catalog)
    learned_s = time.perf_counter() - started
    model = context.policy.artifact.model
    X = model.spec.encode(tasks)
    started = time.perf_counter()
    model.predict_tiers(X, catalog.ladder)
    predict_s = time.perf_counter() - started
    return {"courses": courses, "tasks": int(world.cube.n_tasks), "simulate_s": simulate_s,
            "static_s": static_s, "learned_s": learned_s, "learned_start_s": learned_start_s,
            "predict_s": predict_s, "peak_mb": peak_rss_mb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--courses", type=int, default=100_000)
    args = parser.parse_args()
    cfg = evaluate_config()
    with tempfile.TemporaryDirectory() as cache:
        d = decision_figures(cfg, args.decisions, cache)
        r = replay_figures(cfg, args.courses, cache)
    bare = d["bare"]["p50_us"]
    for name in ("bare", "compiled_predict", "fast", "plain", "batch"):
        print(f"{name:>6}: p50 {d[name]['p50_us']:7.1f} us  p99 {d[name]['p99_us']:7.1f} us  "
              f"p50 / bare predict {d[name]['p50_us'] / bare:.2f}x")
    print(f"replay of {r['courses']:,} courses ({r['tasks']:,} tasks): simulate "
          f"{r['simulate_s']:.1f} s, static {r['static_s']:.2f} s, learned "
          f"{r['learned_s']:.2f} s ({r['learned_s'] / r['static_s']:.1f}x static; start tiers "
          f"{r['learned_start_s']:.2f} s, of which the bare prediction of every tier "
          f"{r['predict_s']:.2f} s)")


if __name__ == "__main__":
    main()
