"""Benchmark: one in-process routing decision, and exact replay at scale.

1. `RoutingPolicy.decide` (flatten features, encode 3 tier rows, LightGBM + calibration,
   expected-cost plan, decision record) over 10,000 decisions: p50 / p99, next to a bare
   LightGBM `booster.predict` on one row, as a ratio.
2. Exact replay of 100,000 simulated courses (world generated first, not timed): the static
   policy, and the learned policy including its predictions.

Needs a trained artifact (`make demo` or `router-train`).

    .venv/bin/python perf/policy_speed.py [--decisions 10000] [--courses 100000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from pipeline.world import simulate_world, task_table
from router_model.artifact import load_artifact
from router_model.config import CONF_DIR, Catalog, typed
from router_model.policy import EXAMPLE_TASK, PolicySettings, RoutingPolicy
from router_model.replay import replay
from router_model.routers import RouterContext, build_router

TASK = EXAMPLE_TASK


def timed_us(fn, n: int) -> np.ndarray:
    out = np.empty(n)
    for i in range(n):
        start = time.perf_counter_ns()
        fn()
        out[i] = (time.perf_counter_ns() - start) / 1000
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decisions", type=int, default=10_000)
    parser.add_argument("--courses", type=int, default=100_000)
    args = parser.parse_args()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="router_evaluate")
    OmegaConf.resolve(cfg)
    catalog = Catalog.from_config(cfg)
    policy = RoutingPolicy(catalog, typed(PolicySettings, cfg.router.policy, "router.policy"),
                           load_artifact(cfg.router.artifact))
    for _ in range(500):
        policy.decide(TASK)
    decide = timed_us(lambda: policy.decide(TASK), args.decisions)
    booster = policy.artifact.model.estimator.booster_
    row = np.zeros((1, len(policy.artifact.model.spec.columns)))
    bare = timed_us(lambda: booster.predict(row, num_threads=1), args.decisions)
    batch = timed_us(lambda: policy.decide_many([TASK] * 50), max(100, args.decisions // 50))
    print(f"one decision in-process ({args.decisions:,} runs): p50 {np.median(decide):.0f} us, "
          f"p99 {np.percentile(decide, 99):.0f} us  (target p50 <= 50 us, p99 <= 200 us)")
    print(f"bare booster.predict, one row:            p50 {np.median(bare):.0f} us, "
          f"p99 {np.percentile(bare, 99):.0f} us")
    print(f"ratio decision / bare predict: p50 {np.median(decide) / np.median(bare):.1f}x, "
          f"p99 {np.percentile(decide, 99) / np.percentile(bare, 99):.1f}x")
    print(f"batch of 50 decisions: p50 {np.median(batch):.0f} us "
          f"= {np.median(batch) / 50:.0f} us per task")

    started = time.perf_counter()
    world = simulate_world(cfg.simulate, catalog, n_courses=args.courses, seed=7)
    print(f"\nsimulated {args.courses:,} courses ({world.cube.n_tasks:,} tasks) in "
          f"{time.perf_counter() - started:.1f} s (not part of the replay timing)")
    tasks = task_table(world)
    context = RouterContext(catalog, policy)
    started = time.perf_counter()
    replay(world.cube, build_router("static", cfg.routers, context).start_tiers(tasks), catalog)
    static_s = time.perf_counter() - started
    started = time.perf_counter()
    replay(world.cube, build_router("learned", cfg.routers, context).start_tiers(tasks), catalog)
    learned_s = time.perf_counter() - started
    print(f"exact replay of {args.courses:,} courses: static {static_s:.1f} s, learned "
          f"(incl. predicting {world.cube.n_tasks * 3:,} pass probabilities) {learned_s:.1f} s"
          f"  (target < 30 s)")


if __name__ == "__main__":
    main()
