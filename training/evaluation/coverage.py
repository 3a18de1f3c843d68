"""`router-guarantee-coverage`: does the Learn-then-Test guarantee hold as often as it says?

Each deployment draws fresh logs, trains, certifies the cheapest lam whose first-attempt pass
is at least `first_pass_min` with probability >= 1 - delta (training/guarantee.py), and also
takes the point-calibrated lam (the model's own expectation meets the target, no guarantee);
then a fresh world is replayed and the realized first-attempt pass of both is measured. The
coverage is the share of deployments where the certified lam's realized pass met the target;
it should be >= 1 - delta. The cost of the guarantee is the certified lam's cost against the
point one's.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from router_model.config import CONF_DIR, Catalog, typed
from router_model.decide.policy import RoutingPolicy
from router_model.decide.replay import replay
from router_model.decide.settings import PolicySettings
from training.evaluation.seeds import compose


def realized(policy: RoutingPolicy, world: Any, lam: float, catalog: Catalog
             ) -> dict[str, float]:
    """First-attempt gate pass (tasks on the ladder) and cost per course under `lam`."""
    from pipeline.world import task_table

    tasks = task_table(world)
    start = policy.with_settings(lam=lam).start_tiers(tasks)["start"]
    cube = world.cube
    rows = np.flatnonzero(~cube.overflow)
    s = start[rows]
    first = cube.schema_valid[rows, s, 0] & (cube.similarity[rows, s, 0]
                                             >= cube.pass_threshold[rows])
    res = replay(cube, start, catalog)
    return {"first_pass": float(first.mean()),
            "cost_per_course": float(res.cost.sum() / tasks["course_id"].nunique()),
            "true_pass": float(res.true_pass.mean())}


def one_deployment(cfg: DictConfig, seed: int, folder: Path) -> dict[str, Any]:
    from pipeline.simulate_cli import run_simulate
    from pipeline.world import simulate_world
    from training.train import run_train

    paths = [f"paths.data_dir={folder}/data", f"paths.artifacts_dir={folder}/artifacts",
             f"paths.reports_dir={folder}/reports", f"paths.cache_dir={folder}/cache"]
    sim_cfg = compose("router_simulate", [*paths, f"simulate.seed={seed}",
                                          f"simulate.n_courses={int(cfg.n_courses)}",
                                          f"simulate.epsilon={float(cfg.epsilon)}"])
    run_simulate(sim_cfg)
    target = float(cfg.first_pass_min)
    train_cfg = compose("router_train", [
        *paths, "train.baseline=null", *cfg.train_overrides,
        "router.calibrate.bad_vs_static=null", f"router.calibrate.first_pass_min={target}",
        f"router.guarantee.first_pass_min={target}", f"router.guarantee.delta={cfg.delta}"])
    trained = run_train(train_cfg, progress=False).metrics
    catalog = Catalog.from_config(train_cfg)
    policy = RoutingPolicy(catalog, typed(PolicySettings, train_cfg.router.policy,
                                          "router.policy"),
                           _load(train_cfg.router.artifact))
    world = simulate_world(sim_cfg.simulate, catalog, n_courses=int(cfg.eval_courses),
                           seed=seed + 5000)
    g = trained["guarantee"]
    point = trained["calibration"]["policy"]["value"]  # the point calibration, kept apart
    out: dict[str, Any] = {"seed": seed, "certified": g["certified"], "lam_point": point,
                           "point": realized(policy, world, point, catalog)}
    if g["certified"]:
        out["lam_guaranteed"] = g["value"]
        out["guaranteed"] = realized(policy, world, g["value"], catalog)
    return out


def _load(path: str) -> Any:
    from router_model.model.artifact import load_artifact

    return load_artifact(path)


def run_coverage(cfg: DictConfig, progress: bool = True) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory(prefix="router-coverage-") as tmp:
        for k in tqdm(range(int(cfg.deployments)), desc="deployments", disable=not progress):
            runs.append(one_deployment(cfg, int(cfg.first_seed) + k, Path(tmp) / str(k)))
    target = float(cfg.first_pass_min)
    cert = [r for r in runs if r["certified"]]
    held = [r["guaranteed"]["first_pass"] >= target for r in cert]
    point_held = [r["point"]["first_pass"] >= target for r in runs]
    cost_ratio = [r["guaranteed"]["cost_per_course"] / r["point"]["cost_per_course"]
                  for r in cert]
    result = {
        "first_pass_min": target, "delta": float(cfg.delta), "deployments": len(runs),
        "certified": len(cert),
        "coverage": float(np.mean(held)) if held else float("nan"),
        "point_calibration_coverage": float(np.mean(point_held)),
        "guarantee_cost_ratio_mean": float(np.mean(cost_ratio)) if cost_ratio else float("nan"),
        "runs": runs, "config": OmegaConf.to_container(cfg, resolve=True),
    }
    out = Path(cfg.reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    return result


def summary(result: dict[str, Any]) -> str:
    return (f"Guarantee: first-attempt pass >= {result['first_pass_min']} with probability >= "
            f"{1 - result['delta']:.2f}; {result['certified']} of {result['deployments']} "
            f"deployments certified a lam; realized coverage {result['coverage']:.0%} "
            f"(point calibration without the guarantee: "
            f"{result['point_calibration_coverage']:.0%}); the guaranteed lam costs "
            f"{result['guarantee_cost_ratio_mean']:.2f}x the point one per course.")


@hydra.main(config_path=CONF_DIR, config_name="router_coverage", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    print(summary(run_coverage(cfg)))
    print(f"Reports in {cfg.reports_dir}/metrics.json")
