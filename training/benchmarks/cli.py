"""`router-benchmark`: a thin hydra entry point over training.benchmarks.harness."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.config import CONF_DIR
from training.benchmarks.harness import run_benchmark
from training.benchmarks.reports import summary_markdown

SHOWN = ("apgr", "cpt50", "aiq", "cost_per_prompt", "op95pct_quality_vs_premium",
         "op95pct_saved_vs_premium", "op100pct_saved_vs_premium")


@hydra.main(config_path=CONF_DIR, config_name="router_benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    results = []
    for name in cfg.run:
        print(f"== {name}", flush=True)
        result = run_benchmark(cfg, str(name))
        results.append(result)
        for router, m in result["single_call"].items():
            cells = "  ".join(f"{k} {m[k]['value']:.4g}" for k in SHOWN if k in m)
            print(f"  {router:<22} {cells}")
        print(f"  ({result['prompts']:,} prompts, {result['seconds']} s) -> "
              f"{result['folder']}/", flush=True)
    summary = Path(str(cfg.reports_dir)).expanduser().resolve() / "summary.md"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(summary_markdown(results))
    print(f"combined table: {summary}")
