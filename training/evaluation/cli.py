"""`router-evaluate`: a thin hydra entry point over training.evaluation.evaluate."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.config import CONF_DIR
from training.evaluation.evaluate import run_evaluate
from training.evaluation.report import format_summary


@hydra.main(config_path=CONF_DIR, config_name="router_evaluate", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    print(format_summary(run_evaluate(cfg)))
