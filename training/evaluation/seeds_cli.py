"""`router-evaluate-seeds`: the hydra entry point. It composes every run's simulate, train
and evaluate configs here (the CLI layer) and runs them, `n_jobs` at a time."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from router_model.config import CONF_DIR
from training.evaluation.seeds import HEADLINES, SeedsSettings, markdown, seeds_report
from training.parallel import run_each
from training.settings_cli import compose, folder_paths, orchestrate, root_settings


def seeds_settings(cfg: DictConfig) -> SeedsSettings:
    return root_settings(SeedsSettings, cfg, "router_evaluate_seeds")


def run_configs(settings: SeedsSettings, world: str, seed: int, folder: Path
                ) -> tuple[DictConfig, DictConfig, DictConfig]:
    """simulate, train and evaluate configs of one (world, training seed) run in `folder`."""
    paths = folder_paths(folder)
    world_cfg = [f"simulate={world}", f"simulate.seed={seed}",
                 f"simulate.n_courses={settings.n_courses}"]
    return (compose("router_simulate", [*paths, *world_cfg]),
            compose("router_train", [*paths, "train.baseline=null",
                                     *settings.train_overrides]),
            compose("router_evaluate", [
                *paths, *world_cfg, f"evaluate.n_courses={settings.eval_courses}",
                "evaluate.ope=false", "evaluate.gate_error_rates=[]",
                f"evaluate.bootstrap={settings.bootstrap}", *settings.evaluate_overrides]))


def one_run(configs: tuple[DictConfig, DictConfig, DictConfig]) -> dict[str, float]:
    """simulate -> train -> evaluate for one (world, training seed); the headline numbers."""
    from pipeline.simulate_cli import run_simulate
    from training.evaluation.cli import evaluate_job
    from training.evaluation.evaluate import run_evaluate
    from training.train import run_train
    from training.train_cli import train_job

    started = time.perf_counter()
    simulate, train, evaluate = configs
    run_simulate(simulate)
    trained = run_train(train_job(train), progress=False)
    # the run's own model, published or not (one that loses to its lookup table is not)
    evaluate = evaluate.copy()
    OmegaConf.update(evaluate, "router.artifact", str(trained.artifact.path))
    result = run_evaluate(evaluate_job(evaluate), progress=False)
    return {**{k: float(fn(result)) for k, fn in HEADLINES.items()},
            "seconds": round(time.perf_counter() - started)}


def run_seeds(settings: SeedsSettings, record: dict[str, Any], progress: bool = True
              ) -> dict[str, Any]:
    jobs = [(w, s) for w in settings.worlds for s in settings.seeds]
    with tempfile.TemporaryDirectory(prefix="router-seeds-") as tmp:
        calls = [(run_configs(settings, w, s, Path(tmp) / f"{w}-{s}"),) for w, s in jobs]
        rows = run_each(one_run, calls, settings.n_jobs, "router-evaluate-seeds", progress)
    runs: dict[str, list[dict[str, Any]]] = {}
    for (world, seed), row in zip(jobs, rows, strict=True):
        seconds = row.pop("seconds")
        runs.setdefault(world, []).append({"seed": seed, **row, "seconds": seconds})
    return seeds_report(runs, Path(settings.reports_dir), record)


@hydra.main(config_path=CONF_DIR, config_name="router_evaluate_seeds", version_base="1.3")
def main(cfg: DictConfig) -> None:
    orchestrate(cfg, "router-evaluate-seeds", seeds_settings, run_seeds, markdown,
                "{metrics.json,report.md}")
