"""`router-train` and `router-prepare`: hydra entry points; the config becomes a `TrainJob`
here, once, and nothing below reads a config node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, Catalog, plain, typed
from training.fitting import TrainSettings
from training.settings_cli import paths, router_settings
from training.train import prepare_examples, run_train
from training.train_job import DataSettings, TrainJob
from training.train_report import format_summary


def train_settings(node: Any) -> TrainSettings:
    """conf/train; its estimator entries (a `_target_` inside) become `estimators`."""
    values = plain(node) if node is not None else {}
    estimators = {k: v for k, v in values.items() if isinstance(v, dict) and "_target_" in v}
    rest = {k: v for k, v in values.items() if k not in estimators}
    return typed(TrainSettings, rest, "train", estimators=estimators)


def train_job(cfg: DictConfig) -> TrainJob:
    """A composed router_train config as typed settings."""
    return TrainJob(catalog=Catalog.from_config(cfg), paths=paths(cfg),
                    router=router_settings(cfg), train=train_settings(cfg.get("train")),
                    data=typed(DataSettings, cfg.get("data"), "data"),
                    reports_dir=str(cfg.reports_dir),
                    record=OmegaConf.to_container(cfg, resolve=True))


@hydra.main(config_path=CONF_DIR, config_name="router_train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors("router-train"):
        OmegaConf.resolve(cfg)
        result = run_train(train_job(cfg))
    print(format_summary(result.metrics, result.artifact.path, result.reports_dir,
                         result.seconds))


@hydra.main(config_path=CONF_DIR, config_name="router_prepare", version_base="1.3")
def prepare(cfg: DictConfig) -> None:
    """Write the labelled examples (with their split) for the DVC `prepare` stage."""
    with user_errors("router-prepare"):
        OmegaConf.resolve(cfg)
        out = Path(str(cfg.data.examples))  # router_prepare's one data setting
        data = prepare_examples(Catalog.from_config(cfg), paths(cfg),
                                train_settings(cfg.get("train")), out)
    skipped = data.counts.get("files_quarantined", 0)
    print(f"{data.counts['valid']:,} valid rows, {data.counts['quarantined']:,} quarantined "
          + (f"(including {skipped:,} unreadable files) " if skipped else "")
          + f"-> {data.counts['examples']:,} examples in {out}")
