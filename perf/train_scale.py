"""Benchmark: build the dataset and train the router on 10k, 100k and 1M attempt rows.

For each size, logs are simulated first (not timed), then a fresh process runs what
`router-train` does (read + validate logs, build examples, split, fit and calibrate LightGBM,
evaluate, save the artifact) with the dataset cache off, and reports wall time and peak memory,
next to the baseline: one plain LightGBM fit on the same training rows, in the same process.

    .venv/bin/python perf/train_scale.py              # 10k, 100k, 1M rows
    .venv/bin/python perf/train_scale.py --rows 100000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from router_model.config import CONF_DIR

ROWS_PER_COURSE = 30.3  # attempt rows per simulated course at the default config


def compose_cfg(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name=name, overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def peak_rss_mb() -> float:
    """This process's peak resident memory. VmHWM, not ru_maxrss: Linux carries the
    parent's peak into a child's ru_maxrss across fork + exec."""
    with open("/proc/self/status") as status:
        kb = next(line.split()[1] for line in status if line.startswith("VmHWM:"))
    return int(kb) / 1024


def bare_fit_seconds(cfg) -> float:
    """The baseline: one plain LightGBM fit (same settings, same training rows), without
    reading logs, calibration folds, evaluation or saving."""
    from hydra.utils import instantiate

    from router_model.model.features import FeatureSpec
    from training.train import load_training_examples, split_examples
    from training.train_cli import train_job

    examples = load_training_examples(train_job(cfg)).examples
    train_idx, _ = split_examples(examples, method=str(cfg.train.split),
                                  test_size=float(cfg.train.test_size), seed=int(cfg.train.seed))
    rows = examples.iloc[train_idx]
    spec = FeatureSpec.from_config(cfg.router.features).fit(rows)
    X, y = spec.encode(rows), rows["label"].to_numpy(int)
    estimator = instantiate(cfg.train.lightgbm, categorical_features=tuple(
        spec.categorical_indices))
    start = time.perf_counter()
    estimator.fit(X, y)
    return time.perf_counter() - start


def child(workdir: str, baseline: bool) -> None:
    """Runs in a fresh process so peak memory is the training's own."""
    from training.train import run_train
    from training.train_cli import train_job

    cfg = compose_cfg("router_train", [
        f"paths.data_dir={workdir}/data", f"paths.artifacts_dir={workdir}/artifacts",
        f"paths.reports_dir={workdir}/reports",
        f"paths.cache_dir={workdir}/cache",  # empty: the examples are built, as a first run's
        f"train.baseline={'logreg' if baseline else 'null'}"])
    start = time.perf_counter()
    result = run_train(train_job(cfg), progress=False)
    seconds = time.perf_counter() - start
    peak_mb = peak_rss_mb()
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb,
                      "bare_fit_s": bare_fit_seconds(cfg),
                      "rows": result.metrics["data"]["valid"],
                      "examples": result.metrics["data"]["examples"],
                      "phases": result.seconds,
                      "ece": result.metrics["overall"]["ece"]}))


def train_figures(sizes: list[int], baseline: bool = False) -> list[dict]:
    """For each size: simulate logs (not timed), then train in a fresh process."""
    from pipeline.simulate_cli import run_simulate

    out = []
    for rows in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            courses = max(10, round(rows / ROWS_PER_COURSE))
            run_simulate(compose_cfg("router_simulate", [
                f"paths.data_dir={tmp}/data", f"simulate.n_courses={courses}"]))
            cmd = [sys.executable, __file__, "--child", tmp]
            done = subprocess.run(cmd + (["--baseline"] if baseline else []),
                                  check=True, stdout=subprocess.PIPE, text=True).stdout
            out.append(json.loads(done.strip().splitlines()[-1]))
    return out


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
    print(f"{'rows':>10} {'examples':>10} {'seconds':>8} {'bare fit':>8} {'peak MB':>8}  phases")
    for r in train_figures(args.rows, args.baseline):
        phases = ", ".join(f"{k} {v}" for k, v in r["phases"].items())
        print(f"{r['rows']:>10,} {r['examples']:>10,} {r['seconds']:>8.1f} "
              f"{r['bare_fit_s']:>8.1f} {r['peak_mb']:>8.0f}  {phases}")


if __name__ == "__main__":
    main()
