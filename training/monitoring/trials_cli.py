"""`router-monitor-trials`: the hydra entry point. Every simulate, train, monitor and promote
config of the trials is composed here (the CLI layer); the drift windows and the promotion
trials run `n_jobs` at a time, each in its own folder with its own seeds."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig

from router_model.config import CONF_DIR
from training.monitoring.trials import (
    TrialsSettings,
    drift_summary,
    markdown,
    promotion_summary,
    write_trials,
)
from training.parallel import run_each
from training.settings_cli import compose, folder_paths, orchestrate, root_settings


def trials_settings(cfg: DictConfig) -> TrialsSettings:
    return root_settings(TrialsSettings, cfg, "router_monitor_trials")


def simulate(folder: Path, overrides: list[str]) -> Path:
    from pipeline.simulate_cli import run_simulate

    run_simulate(compose("router_simulate", [*folder_paths(folder), *overrides]))
    return folder / "data"


def train(folder: Path, root: Path, overrides: list[str]) -> Path:
    """A candidate (LATEST untouched unless there is none yet) under `root`; its folder."""
    from training.train import run_train
    from training.train_cli import train_job

    first = not (root / "LATEST").exists()
    result = run_train(train_job(compose("router_train", [
        *folder_paths(folder), f"router.artifact={root}", "train.baseline=null",
        f"train.publish={str(first).lower()}", *overrides])), progress=False)
    shutil.rmtree(folder / "cache", ignore_errors=True)  # each trial's examples, used once
    return result.artifact.path


def corrupt_examples(data: Path, folder: Path, how: str, seed: int) -> Path:
    """The logs' examples with their labels shuffled, flipped, or "optimistic" (every attempt
    of the cheapest tier passed: a model that starts everything there)."""
    from training.train import load_training_examples
    from training.train_cli import train_job

    job = train_job(compose("router_train", [*folder_paths(folder),
                                             f"paths.logs={data}/attempt_logs.parquet"]))
    ex = load_training_examples(job)
    labels = ex.examples["label"].to_numpy()
    cheapest = ex.examples["tier"].to_numpy() == job.catalog.ladder[0]
    labels = {"shuffled": lambda: np.random.default_rng(seed).permutation(labels),
              "flipped": lambda: 1 - labels,
              "optimistic": lambda: np.where(cheapest, 1, labels)}[how]()
    out = folder / f"examples-{how}.parquet"
    ex.examples.assign(label=labels.astype(np.int8)).to_parquet(out, index=False)
    out.with_suffix(".json").write_text(json.dumps({
        "data_hash": f"{ex.data_hash}-{how}", "counts": ex.counts,
        "ladder_stats": ex.ladder_stats, "reference": ex.reference}))
    return out


def one_window(settings: TrialsSettings, root: Path, folder: Path, world: str, i: int
               ) -> dict[str, Any]:
    """One fresh window of recent logs from `world`, watched by router-monitor."""
    from training.monitoring.cli import monitor_job
    from training.monitoring.monitor import run_monitor

    overrides = ["simulate=shift", "simulate.shifted=true"] if world == "shift" else []
    recent = simulate(folder, [*overrides, f"simulate.seed={settings.seed + 100 + i}",
                               f"simulate.n_courses={settings.window_courses}"])
    m = run_monitor(monitor_job(compose("router_monitor", [
        *folder_paths(folder), f"router.artifact={root}",
        f"paths.logs={recent}/attempt_logs.parquet", "monitor.window_days=null",
        "monitor.ope=false"])))
    return {"world": world, "window": i, "alerts": len(m["alerts"]),
            "feature_alerts": sum(a["kind"] == "feature" for a in m["alerts"]),
            "kinds": sorted({a["kind"] for a in m["alerts"]})}


def drift_trials(settings: TrialsSettings, tmp: Path, progress: bool) -> dict[str, Any]:
    ref = tmp / "reference"
    data = simulate(ref, [f"simulate.seed={settings.seed}",
                          f"simulate.n_courses={settings.n_courses}"])
    root = ref / "artifacts" / "router"
    train(ref, root, [f"paths.logs={data}/attempt_logs.parquet", *settings.train_overrides])
    calls = [(settings, root, tmp / f"{w}-{i}", w, i)
             for w in ("default", "shift") for i in range(settings.windows)]
    rows = run_each(one_window, calls, settings.n_jobs, "drift windows", progress)
    return drift_summary(rows, settings.window_courses)


def one_trial(settings: TrialsSettings, folder: Path, i: int) -> list[dict[str, Any]]:
    """A champion, a better and a degraded candidate, judged on a fresh world."""
    from router_model.model.artifact import load_artifact
    from training.monitoring.cli import promote_job
    from training.monitoring.promote import compare

    seed, extra = settings.seed + 1000 + 10 * i, settings.train_overrides
    root = folder / "artifacts" / "router"
    logs = simulate(folder / "champion", [f"simulate.seed={seed}",
                                          f"simulate.n_courses={settings.n_courses}"])
    champion = train(folder / "champion", root, [f"paths.logs={logs}/attempt_logs.parquet",
                                                 *extra])
    more = simulate(folder / "more", [f"simulate.seed={seed + 1}", "simulate.n_courses="
                                      f"{settings.n_courses * settings.better_factor}"])
    better = train(folder / "more", root, [f"paths.logs={more}/attempt_logs.parquet", *extra])
    how = "shuffled" if i % 2 == 0 else "flipped"
    bad_examples = corrupt_examples(logs, folder / "champion", how, seed)
    degraded = train(folder / "champion", root, [f"data.examples={bad_examples}", *extra])
    judge = simulate(folder / "judge", [f"simulate.seed={seed + 2}",
                                        f"simulate.n_courses={settings.judge_courses}"])
    job = promote_job(compose("router_promote", [
        f"router.artifact={root}", f"promote.tasks={judge}/tasks.parquet",
        f"promote.outcomes={judge}/outcomes.parquet", "promote.holdout_share=1.0"]))
    champ, rows = load_artifact(champion), []
    for kind, path in (("better", better), (f"degraded-{how}", degraded)):
        r = compare(job, champ, load_artifact(path))
        rows.append({"trial": i, "candidate": kind, "accepted": r["non_inferior"],
                     "cost_change": r["cost_change"], "quality_change": r["quality_change"],
                     "reasons": r["reasons"]})
    return rows


def run_trials(settings: TrialsSettings, record: dict[str, Any], progress: bool = True
               ) -> dict[str, Any]:
    result: dict[str, Any] = {"config": record}
    with tempfile.TemporaryDirectory(prefix="router-monitor-trials-") as tmp:
        if settings.windows:
            result["drift"] = drift_trials(settings, Path(tmp), progress)
        if settings.trials:
            calls = [(settings, Path(tmp) / f"trial-{i}", i) for i in range(settings.trials)]
            rows = run_each(one_trial, calls, settings.n_jobs, "promotion trials", progress)
            result["promotion"] = promotion_summary([r for pair in rows for r in pair])
    write_trials(result, Path(settings.reports_dir))
    return result


@hydra.main(config_path=CONF_DIR, config_name="router_monitor_trials", version_base="1.3")
def main(cfg: DictConfig) -> None:
    orchestrate(cfg, "router-monitor-trials", trials_settings, run_trials, markdown,
                "{metrics.json,report.md}")
