"""Reload time against model size: what an artifact costs the service to load, check and
compile (issue 29). No asserts; numbers on the machine it runs on.

For each forest size (trees x leaves) a LightGBM model is fitted on synthetic rows and saved
as an artifact; then, in this process:

- `load`: `load_artifact` (files read within their caps, manifest schema, sha256, the
  booster's structural check, LightGBM parsing the checked text);
- `reload`: `RouterService.reload()` until the new model serves (load, probe, one example
  decision, swap), through LightGBM;
- `compiled (cold)`: from the swap until the compiled trees serve, compiling in the child
  process with an empty cache;
- `reload (warm)`: a second service on the same compile cache, start to compiled trees.

    .venv/bin/python perf/reload_time.py [--sizes 40x7 300x15 150x31 150x255]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def synthetic_model(trees: int, leaves: int, rows: int = 60_000):
    from router_model.model.features import FeatureSpec
    from router_model.model.pass_model import (
        LightGBMPassClassifier,
        PassModel,
        SigmoidCalibrator,
    )

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({
        "field": rng.choice(["exercise", "lesson_content", "course_title"], rows),
        "tier": rng.choice(["gpt-oss-20b", "gpt-oss-120b", "qwen3-max"], rows),
        "analysis.domain": rng.choice(["programming", "history", "arts", "math"], rows),
        "prompt_tokens": rng.integers(100, 20_000, rows).astype(float),
        "context_tokens": rng.integers(0, 90_000, rows).astype(float),
        "expected_output_tokens": rng.integers(50, 3_000, rows).astype(float),
        "analysis.complexity": rng.random(rows)})
    logit = (1.5 - 2.5 * frame["analysis.complexity"] + np.sin(frame["prompt_tokens"] / 900)
             + (frame["tier"] == "qwen3-max") * 1.5)
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    spec = FeatureSpec(categorical=("field", "tier", "analysis.domain"),
                       numeric=("prompt_tokens", "context_tokens", "expected_output_tokens",
                                "analysis.complexity")).fit(frame)
    estimator = LightGBMPassClassifier(n_estimators=trees, num_leaves=leaves,
                                       min_child_samples=5,
                                       categorical_features=tuple(spec.categorical_indices))
    estimator.fit(spec.encode(frame), y)
    return PassModel(spec=spec, calibrated=None, kind="lightgbm", estimator=estimator,
                     calibrator=SigmoidCalibrator(-1.0, 0.0))


def service_for(root: Path, tmp: Path, cache: Path, wait_s: float):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from router_model.config import CONF_DIR
    from router_model.serve.core import RouterService

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(config_name="router_serve", overrides=[
            f"serve.artifact={root}", f"serve.decision_log={tmp}/d-{time.time_ns()}.jsonl",
            f"serve.compiled_cache={cache}", "serve.reload_poll_s=0",
            f"serve.compile_wait_s={wait_s}"])
    return RouterService.from_config(OmegaConf.to_container(cfg, resolve=True))


def wait_compiled(service, limit_s: float = 900) -> float:
    started = time.perf_counter()
    while service.trees == "compiling" and time.perf_counter() - started < limit_s:
        time.sleep(0.02)
    return time.perf_counter() - started


def measure(trees: int, leaves: int, tmp: Path) -> dict[str, float | str]:
    from router_model.model.artifact import BOOSTER_FILE, load_artifact, save_artifact

    model = synthetic_model(trees, leaves)
    root, cache = tmp / f"root-{trees}x{leaves}", tmp / f"cache-{trees}x{leaves}"
    folder = save_artifact(model, root, data_hash="d" * 64, config={}, metrics={}).path
    started = time.perf_counter()
    load_artifact(root)
    load_s = time.perf_counter() - started
    service = service_for(root, tmp, cache, 0)  # serving the first version
    wait_compiled(service)
    # A new version (same trees, another manifest) published; the compile cache emptied,
    # so the reload compiles from scratch.
    save_artifact(model, root, data_hash="e" * 64, config={}, metrics={})
    for child in (cache / "compiled").glob("*"):
        child.unlink()
    started = time.perf_counter()
    result = service.reload()
    reload_s = time.perf_counter() - started
    assert result["reloaded"], result
    cold_s = wait_compiled(service)
    cold_state = service.trees
    service.close()
    started = time.perf_counter()
    warm = service_for(root, tmp, cache, 600)  # a restart: the compiled object is cached
    warm_s = time.perf_counter() - started
    warm_state = warm.trees
    warm.close()
    return {"size": f"{trees} x {leaves}",
            "booster_mb": (folder / BOOSTER_FILE).stat().st_size / 1e6,
            "load_s": load_s, "reload_s": reload_s, "compile_cold_s": cold_s,
            "cold_state": cold_state, "start_warm_s": warm_s, "warm_state": warm_state}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", nargs="+", default=["40x7", "300x15", "150x31", "150x255"])
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            trees, leaves = map(int, size.split("x"))
            rows.append(measure(trees, leaves, Path(tmp)))
            r = rows[-1]
            print(f"{r['size']}: booster {r['booster_mb']:.2f} MB, load {r['load_s']:.2f} s, "
                  f"reload {r['reload_s']:.2f} s, compiled after {r['compile_cold_s']:.1f} s "
                  f"({r['cold_state']}), warm start {r['start_warm_s']:.2f} s "
                  f"({r['warm_state']})", flush=True)
    print("\n| trees x leaves | booster.txt | load + check | reload (serving, LightGBM) "
          "| compiled trees after (cold cache) | start, cached compile |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['booster_mb']:.2f} MB | {r['load_s']:.2f} s | "
              f"{r['reload_s']:.2f} s | {r['compile_cold_s']:.1f} s | "
              f"{r['start_warm_s']:.2f} s |")


if __name__ == "__main__":
    main()
