"""`router-guarantee-coverage`: the hydra entry point. Each deployment's simulate and train
configs are composed here (the CLI layer); deployments run `n_jobs` at a time."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig

from router_model.config import CONF_DIR
from training.evaluation.coverage import (
    CoverageSettings,
    coverage_report,
    deployment_row,
    summary,
)
from training.parallel import run_each
from training.settings_cli import compose, folder_paths, orchestrate, root_settings


def coverage_settings(cfg: DictConfig) -> CoverageSettings:
    return root_settings(CoverageSettings, cfg, "router_coverage")


def deployment_configs(settings: CoverageSettings, seed: int, folder: Path
                       ) -> tuple[DictConfig, DictConfig]:
    """The simulate and train configs of one deployment in `folder`."""
    paths = folder_paths(folder)
    return (compose("router_simulate", [*paths, f"simulate.seed={seed}",
                                        f"simulate.n_courses={settings.n_courses}",
                                        f"simulate.epsilon={settings.epsilon}",
                                        f"simulate.audit_courses={settings.audit_courses}"]),
            compose("router_train", [
                *paths, "train.baseline=null", *settings.train_overrides,
                "router.guarantee.enabled=true", f"router.guarantee.delta={settings.delta}",
                f"router.guarantee.margin={settings.margin}"]))


def one_deployment(seed: int, eval_courses: int, configs: tuple[DictConfig, DictConfig]
                   ) -> dict[str, Any]:
    """Fresh logs, a trained and certified policy, then a fresh world to realize it on."""
    from pipeline.simulate_cli import run_simulate
    from pipeline.world import simulate_world, world_settings
    from router_model.decide.policy import RoutingPolicy
    from router_model.model.artifact import load_artifact
    from training.train import run_train
    from training.train_cli import train_job

    sim_cfg, train_cfg = configs
    run_simulate(sim_cfg)
    job = train_job(train_cfg)
    result = run_train(job, progress=False)  # its artifact, published or not
    trained = result.metrics
    policy = RoutingPolicy(job.catalog, job.router.policy, load_artifact(result.artifact.path))
    world = simulate_world(world_settings(sim_cfg.simulate), job.catalog, n_courses=eval_courses,
                           seed=seed + 5000)
    return deployment_row(seed, trained, policy, world, job.catalog)


def run_coverage(settings: CoverageSettings, record: dict[str, Any], progress: bool = True
                 ) -> dict[str, Any]:
    seeds = [settings.first_seed + k for k in range(settings.deployments)]
    with tempfile.TemporaryDirectory(prefix="router-coverage-") as tmp:
        calls = [(s, settings.eval_courses, deployment_configs(settings, s, Path(tmp) / str(k)))
                 for k, s in enumerate(seeds)]
        runs = run_each(one_deployment, calls, settings.n_jobs, "deployments", progress)
    return coverage_report(settings, runs, record)


@hydra.main(config_path=CONF_DIR, config_name="router_coverage", version_base="1.3")
def main(cfg: DictConfig) -> None:
    orchestrate(cfg, "router-guarantee-coverage", coverage_settings, run_coverage, summary,
                "metrics.json")
