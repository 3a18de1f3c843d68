"""`router-train` and `router-prepare`: thin hydra entry points."""

from __future__ import annotations

import json
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, Catalog
from training.dataset import load_examples, split_examples
from training.train import run_train
from training.train_report import format_summary


@hydra.main(config_path=CONF_DIR, config_name="router_train", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    with user_errors("router-train"):
        result = run_train(cfg)
    print(format_summary(result.metrics, result.artifact.path, result.reports_dir,
                         result.seconds))


@hydra.main(config_path=CONF_DIR, config_name="router_prepare", version_base="1.3")
def prepare(cfg: DictConfig) -> None:
    """Write the labelled examples (with their split) for the DVC `prepare` stage."""
    OmegaConf.resolve(cfg)
    with user_errors("router-prepare"):
        data = load_examples(cfg.data.logs, Catalog.from_config(cfg),
                             cache_dir=cfg.paths.cache_dir, quarantine_path=cfg.paths.quarantine)
    _, test = split_examples(data.examples, method=str(cfg.train.split),
                             test_size=float(cfg.train.test_size), seed=int(cfg.train.seed))
    out = Path(cfg.data.examples)
    out.parent.mkdir(parents=True, exist_ok=True)
    data.examples.assign(held_out=data.examples.index.isin(test)).to_parquet(out, index=False)
    meta = {"data_hash": data.data_hash, "counts": data.counts,
            "ladder_stats": data.ladder_stats, "reference": data.reference}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    skipped = data.counts.get("files_quarantined", 0)
    print(f"{data.counts['valid']:,} valid rows, {data.counts['quarantined']:,} quarantined "
          + (f"(including {skipped:,} unreadable files) " if skipped else "")
          + f"-> {data.counts['examples']:,} examples in {out}")
