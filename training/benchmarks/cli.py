"""`router-benchmark`: a thin hydra entry point over training.benchmarks.harness."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.config import CONF_DIR
from training.benchmarks.harness import run_benchmark, summary_markdown


@hydra.main(config_path=CONF_DIR, config_name="router_benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    results = []
    for name in cfg.run:
        print(f"== {name}", flush=True)
        result = run_benchmark(cfg, str(name))
        results.append(result)
        for router, m in result["single_call"].items():
            cells = "  ".join(f"{k} {v['value']:.3f}" for k, v in m.items()
                              if k in ("apgr", "cpt50", "aiq", "saved_at_95pct_premium",
                                       "saved_at_premium"))
            print(f"  {router:<20} {cells}")
        print(f"  ({result['prompts']:,} prompts, {result['seconds']} s) -> "
              f"{cfg.reports_dir}/{name}/", flush=True)
    summary = Path(cfg.reports_dir) / "summary.md"
    summary.write_text(summary_markdown(results))
    print(f"combined table: {summary}")
