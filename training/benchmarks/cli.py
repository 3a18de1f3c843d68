"""`router-benchmark`: the hydra entry point; the config and every benchmark file named in
`run` become a `BenchmarkJob` here, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.cli_errors import user_errors
from router_model.config import CONF_DIR, GateConfig, plain, typed
from router_model.decide.settings import PolicySettings
from training.benchmarks.harness import run_benchmark
from training.benchmarks.reports import summary_markdown
from training.benchmarks.settings import BenchmarkJob, BenchmarkSettings, BenchmarkSpec
from training.benchmarks.specs import spec_file
from training.train_cli import train_settings

SHOWN = ("apgr", "cpt50", "aiq", "cost_per_prompt", "op95pct_quality_vs_premium",
         "op95pct_saved_vs_premium", "op100pct_saved_vs_premium")


def hydra_config_dirs() -> list[Path]:
    """File config sources of the running hydra app (none under the compose API)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return []
    return [Path(s.path) for s in HydraConfig.get().runtime.config_sources
            if s.schema == "file"]


def benchmark_spec(node: Any, defaults: dict[str, Any], where: str = "benchmark"
                   ) -> BenchmarkSpec:
    """A benchmark config over `spec_defaults` (what a file may leave out), typed."""
    return typed(BenchmarkSpec, {**defaults, **plain(node)}, where)


def load_spec(settings: BenchmarkSettings, name: str) -> BenchmarkSpec:
    """The benchmark config called `name`; its `name` defaults to the file's stem."""
    path = spec_file(settings.benchmark_dirs, hydra_config_dirs(), name)
    return benchmark_spec(OmegaConf.load(path), {**settings.spec_defaults, "name": path.stem},
                          f"benchmark {path}")


def benchmark_job(cfg: DictConfig) -> BenchmarkJob:
    keys = list(BenchmarkSettings.__dataclass_fields__)
    settings = typed(BenchmarkSettings, {k: cfg[k] for k in keys if k in cfg},
                          "router_benchmark")
    return BenchmarkJob(settings=settings, gate=typed(GateConfig, cfg.get("gate"), "gate"),
                        policy=typed(PolicySettings, cfg.router.policy, "router.policy"),
                        train=train_settings(cfg.get("train")), routers=plain(cfg.routers),
                        cache_dir=cfg.paths.cache_dir,
                        specs=[load_spec(settings, str(n)) for n in settings.run])


@hydra.main(config_path=CONF_DIR, config_name="router_benchmark", version_base="1.3")
def main(cfg: DictConfig) -> None:
    with user_errors("router-benchmark"):
        OmegaConf.resolve(cfg)
        job = benchmark_job(cfg)
        results = []
        for spec in job.specs:
            print(f"== {spec.name}", flush=True)
            result = run_benchmark(job, spec)
            results.append(result)
            for router, m in result["single_call"].items():
                cells = "  ".join(f"{k} {m[k]['value']:.4g}" for k in SHOWN if k in m)
                print(f"  {router:<22} {cells}")
            print(f"  ({result['prompts']:,} prompts, {result['seconds']} s) -> "
                  f"{result['folder']}/", flush=True)
        summary = Path(job.settings.reports_dir).expanduser().resolve() / "summary.md"
        summary.parent.mkdir(parents=True, exist_ok=True)
        summary.write_text(summary_markdown(results))
    print(f"combined table: {summary}")
