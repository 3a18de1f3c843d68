"""`router-monitor-trials`: does the watch work? Measured over many simulated deployments.

Drift: one reference artifact trained on the default world; then `windows` fresh windows of
recent logs from the default world (any alert there is a false alarm) and from the `shift`
world (a window without a feature-drift alert is a miss).

Promotion: per trial, a champion trained on `n_courses` of logs; a better candidate trained on
`better_factor` times as many; a degraded one trained on the same logs with labels shuffled
(even trials) or flipped (odd trials). Each candidate is judged by router-promote's rule on a
fresh world, exactly replayed; every count is what that rule decided.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from router_model.config import CONF_DIR, Catalog
from router_model.model.artifact import load_artifact
from training.evaluation.seeds import compose
from training.monitoring.monitor import run_monitor
from training.monitoring.promote import compare


def paths(folder: Path) -> list[str]:
    return [f"paths.data_dir={folder}/data", f"paths.artifacts_dir={folder}/artifacts",
            f"paths.reports_dir={folder}/reports", f"paths.cache_dir={folder}/cache"]


def simulate(folder: Path, overrides: list[str]) -> Path:
    from pipeline.simulate_cli import run_simulate

    run_simulate(compose("router_simulate", [*paths(folder), *overrides]))
    return folder / "data"


def train(folder: Path, root: Path, overrides: list[str]) -> Path:
    """A candidate (LATEST untouched unless there is none yet) under `root`; its folder."""
    from training.train import run_train

    first = not (root / "LATEST").exists()
    result = run_train(compose("router_train", [
        *paths(folder), f"router.artifact={root}", "train.baseline=null",
        f"train.publish={str(first).lower()}", *overrides]), progress=False)
    shutil.rmtree(folder / "cache", ignore_errors=True)  # each trial's examples, used once
    return result.artifact.path


def corrupt_examples(data: Path, folder: Path, how: str, seed: int) -> Path:
    """The logs' examples with their labels shuffled or flipped: a model that must lose."""
    from training.train import load_training_examples

    cfg = compose("router_train", [*paths(folder), f"data.logs={data}/attempt_logs.parquet"])
    ex = load_training_examples(cfg)
    labels = ex.examples["label"].to_numpy()
    labels = (np.random.default_rng(seed).permutation(labels) if how == "shuffled"
              else 1 - labels)
    out = folder / f"examples-{how}.parquet"
    ex.examples.assign(label=labels.astype(np.int8)).to_parquet(out, index=False)
    out.with_suffix(".json").write_text(json.dumps({
        "data_hash": f"{ex.data_hash}-{how}", "counts": ex.counts,
        "ladder_stats": ex.ladder_stats, "reference": ex.reference}))
    return out


def drift_trials(cfg: DictConfig, tmp: Path, progress: bool) -> dict[str, Any]:
    ref = tmp / "reference"
    data = simulate(ref, [f"simulate.seed={cfg.seed}", f"simulate.n_courses={cfg.n_courses}"])
    root = ref / "artifacts" / "router"
    train(ref, root, [f"data.logs={data}/attempt_logs.parquet", *cfg.train_overrides])
    rows = []
    worlds = [("default", []), ("shift", ["simulate=shift", "simulate.shifted=true"])]
    jobs = [(w, o, i) for w, o in worlds for i in range(int(cfg.windows))]
    for world, overrides, i in tqdm(jobs, desc="drift windows", disable=not progress):
        folder = tmp / f"{world}-{i}"
        recent = simulate(folder, [*overrides, f"simulate.seed={int(cfg.seed) + 100 + i}",
                                   f"simulate.n_courses={cfg.window_courses}"])
        m = run_monitor(compose("router_monitor", [
            *paths(folder), f"router.artifact={root}",
            f"monitor.logs={recent}/attempt_logs.parquet", "monitor.window_days=null",
            "monitor.ope=false"]))
        rows.append({"world": world, "window": i, "alerts": len(m["alerts"]),
                     "feature_alerts": sum(a["kind"] == "feature" for a in m["alerts"]),
                     "kinds": sorted({a["kind"] for a in m["alerts"]})})
    frame = pd.DataFrame(rows)
    default, shift = frame[frame.world == "default"], frame[frame.world == "shift"]
    return {"windows": rows, "window_courses": int(cfg.window_courses),
            "false_alarm_rate": float((default["alerts"] > 0).mean()),
            "shift_recall": float((shift["feature_alerts"] > 0).mean())}


def promotion_trials(cfg: DictConfig, tmp: Path, progress: bool) -> dict[str, Any]:
    catalog = Catalog.from_config(compose("router_promote", []))
    rows = []
    for i in tqdm(range(int(cfg.trials)), desc="promotion trials", disable=not progress):
        folder = tmp / f"trial-{i}"
        seed = int(cfg.seed) + 1000 + 10 * i
        root = folder / "artifacts" / "router"
        logs = simulate(folder / "champion", [f"simulate.seed={seed}",
                                              f"simulate.n_courses={cfg.n_courses}"])
        champion = train(folder / "champion", root, [f"data.logs={logs}/attempt_logs.parquet",
                                                     *cfg.train_overrides])
        more = simulate(folder / "more", [f"simulate.seed={seed + 1}", "simulate.n_courses="
                                          f"{int(cfg.n_courses) * int(cfg.better_factor)}"])
        better = train(folder / "more", root, [f"data.logs={more}/attempt_logs.parquet",
                                               *cfg.train_overrides])
        how = "shuffled" if i % 2 == 0 else "flipped"
        bad_examples = corrupt_examples(logs, folder / "champion", how, seed)
        degraded = train(folder / "champion", root, [f"data.examples={bad_examples}",
                                                     *cfg.train_overrides])
        judge = simulate(folder / "judge", [f"simulate.seed={seed + 2}",
                                            f"simulate.n_courses={cfg.judge_courses}"])
        pcfg = compose("router_promote", [
            f"router.artifact={root}", f"promote.tasks={judge}/tasks.parquet",
            f"promote.outcomes={judge}/outcomes.parquet", "promote.holdout_share=1.0"])
        champ = load_artifact(champion)
        for kind, path in (("better", better), (f"degraded-{how}", degraded)):
            r = compare(pcfg, catalog, champ, load_artifact(path))
            rows.append({"trial": i, "candidate": kind, "accepted": r["non_inferior"],
                         "cost_change": r["cost_change"], "quality_change": r["quality_change"],
                         "reasons": r["reasons"]})
    frame = pd.DataFrame(rows)
    good = frame[frame.candidate == "better"]
    bad = frame[frame.candidate != "better"]
    return {"trials": rows, "accepted_better": float(good["accepted"].mean()),
            "refused_degraded": float((~bad["accepted"].astype(bool)).mean())}


def markdown(result: dict[str, Any]) -> str:
    d, p = result.get("drift"), result.get("promotion")
    lines = ["# router-monitor and router-promote, measured", ""]
    if d:
        lines += [f"Drift, {len(d['windows']) // 2} windows of {d['window_courses']:,} courses "
                  "per world:", f"- false-alarm rate on the default world: "
                  f"{d['false_alarm_rate']:.1%} (target <= 5%)",
                  f"- recall of feature-drift alerts on `shift`: {d['shift_recall']:.1%} "
                  "(target >= 95%)", ""]
    if p:
        n = len(p["trials"]) // 2
        lines += [f"Promotion, {n} trials:",
                  f"- better candidates (trained on more logs) accepted: "
                  f"{p['accepted_better']:.1%} (target >= 90%)",
                  f"- degraded candidates (shuffled or flipped labels) refused: "
                  f"{p['refused_degraded']:.1%} (target 100%)", "",
                  "| trial | candidate | accepted | cost change | quality change |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['trial']} | {r['candidate']} | {r['accepted']} | "
                  f"{r['cost_change']:+.2%} | {r['quality_change']:+.4f} |" for r in p["trials"]]
    return "\n".join(lines) + "\n"


def run_trials(cfg: DictConfig, progress: bool = True) -> dict[str, Any]:
    result: dict[str, Any] = {"config": OmegaConf.to_container(cfg, resolve=True)}
    with tempfile.TemporaryDirectory(prefix="router-monitor-trials-") as tmp:
        if int(cfg.windows):
            result["drift"] = drift_trials(cfg, Path(tmp), progress)
        if int(cfg.trials):
            result["promotion"] = promotion_trials(cfg, Path(tmp), progress)
    out = Path(cfg.reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "report.md").write_text(markdown(result))
    return result


@hydra.main(config_path=CONF_DIR, config_name="router_monitor_trials", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    print(markdown(run_trials(cfg)))
    print(f"Reports in {cfg.reports_dir}/{{metrics.json,report.md}}")
