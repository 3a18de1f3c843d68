"""`router-evaluate`: the hydra entry point; the config becomes an `EvaluateJob` here."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from pipeline.world import world_settings
from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, Catalog, plain, typed
from training.evaluation.evaluate import EvaluateJob, EvaluateSettings, run_evaluate
from training.evaluation.report import format_summary
from training.settings_cli import paths, router_settings


def evaluate_job(cfg: DictConfig) -> EvaluateJob:
    """A composed router_evaluate config as typed settings; the evaluation world is
    conf/simulate with its evaluation_shift (if any) merged in."""
    simulate = cfg.simulate
    world = world_settings(simulate)
    return EvaluateJob(catalog=Catalog.from_config(cfg), paths=paths(cfg),
                       router=router_settings(cfg),
                       evaluate=typed(EvaluateSettings, cfg.get("evaluate"), "evaluate"),
                       world=world.shifted_world(), world_seed=world.seed,
                       shifted=bool(world.evaluation_shift), routers=plain(cfg.routers),
                       reports_dir=str(cfg.reports_dir))


@hydra.main(config_path=CONF_DIR, config_name="router_evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors("router-evaluate"):
        OmegaConf.resolve(cfg)
        result = run_evaluate(evaluate_job(cfg))
    print(format_summary(result))
