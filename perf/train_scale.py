"""Benchmark: build the dataset and train the router on 10k, 100k and 1M attempt rows.

For each size, logs are simulated first (not timed), then a fresh process runs what
`router-train` does (read + validate logs, build examples, split, fit and calibrate LightGBM,
evaluate, save the artifact) with the dataset cache off, and reports wall time and peak memory.

    .venv/bin/python perf/train_scale.py              # 10k, 100k, 1M rows
    .venv/bin/python perf/train_scale.py --rows 100000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from router_model.config import CONF_DIR

ROWS_PER_COURSE = 30.3  # attempt rows per simulated course at the default config
TARGET_SECONDS_1M = 60.0


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def child(workdir: str, baseline: bool) -> None:
    """Runs in a fresh process so peak memory is the training's own."""
    from training.train import run_train

    cfg = compose_cfg("router_train", [
        f"paths.data_dir={workdir}/data", f"paths.artifacts_dir={workdir}/artifacts",
        f"paths.reports_dir={workdir}/reports", "paths.cache_dir=null",
        f"train.baseline={'logreg' if baseline else 'null'}"])
    start = time.perf_counter()
    result = run_train(cfg, progress=False)
    seconds = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb,
                      "rows": result.metrics["data"]["valid"],
                      "examples": result.metrics["data"]["examples"],
                      "phases": result.metrics["seconds"],
                      "ece": result.metrics["overall"]["ece"]}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--baseline", action="store_true",
                        help="also fit the logistic baseline, as router-train does by default")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.baseline)
        return

    from pipeline.simulate_cli import run_simulate

    print(f"{'rows':>10} {'examples':>10} {'seconds':>8} {'peak MB':>8}  phases")
    for rows in args.rows:
        with tempfile.TemporaryDirectory() as tmp:
            courses = max(10, round(rows / ROWS_PER_COURSE))
            run_simulate(compose_cfg("router_simulate", [
                f"paths.data_dir={tmp}/data", f"simulate.n_courses={courses}"]))
            cmd = [sys.executable, __file__, "--child", tmp]
            out = subprocess.run(cmd + (["--baseline"] if args.baseline else []),
                                 check=True, capture_output=True, text=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
            phases = ", ".join(f"{k} {v}" for k, v in r["phases"].items())
            print(f"{r['rows']:>10,} {r['examples']:>10,} {r['seconds']:>8.1f} "
                  f"{r['peak_mb']:>8.0f}  {phases}")
            if rows >= 1_000_000:
                print(f"  target: under {TARGET_SECONDS_1M:.0f} s at 1M rows -> "
                      f"{r['seconds'] / TARGET_SECONDS_1M:.2f} of the budget")


if __name__ == "__main__":
    main()
