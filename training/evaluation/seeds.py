"""`router-evaluate-seeds`: simulate -> train -> evaluate again and again, one training seed
at a time, in every configured world, so no headline rests on one lucky seed.

Each run draws fresh logs (seed s), trains on them, calibrates on their held-out courses and
replays a fresh evaluation world (seed s + the evaluation offset). Per world it reports the
mean, the worst seed and a t-interval of the mean over seeds: an interval that includes the
model's variance, not only the evaluation courses'.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import hydra
import numpy as np
from omegaconf import DictConfig, OmegaConf
from scipy import stats
from tqdm.auto import tqdm

from router_model.config import CONF_DIR

# What each run contributes to the summary, from router-evaluate's result.
HEADLINES = {
    "saving_vs_best_baseline": lambda r: r["headline"]["learned"]["saving"]["value"],
    "saving_vs_best_baseline_ci_low": lambda r: r["headline"]["learned"]["saving"]["ci_low"],
    "saving_vs_static_at_its_quality": lambda r: 1.0 - r["headline"]["learned"][
        "policy_cost"] / r["policies"]["static"]["cost_per_course"],
    "learned_cost_at_static_quality": lambda r: r["headline"]["learned"]["policy_cost"],
    "best_baseline_cost_at_static_quality": lambda r: r["headline"]["learned"][
        "best_baseline_cost"],
    "learned_true_pass_at_calibrated_lam": lambda r: r["policies"]["learned"][
        "true_pass_rate"],
    "static_true_pass": lambda r: r["policies"]["static"]["true_pass_rate"],
    "learned_gain_at_ladder_cost": lambda r: r["headline"]["quality_at_cost"]["gain"],
}


def compose(name: str, overrides: list[str]) -> DictConfig:
    """Another command's config, composed from the same tree (inside a hydra app or not)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():  # inside a hydra app: its search path
        cfg = hydra_compose(config_name=name, overrides=overrides)
    else:
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            cfg = hydra_compose(config_name=name, overrides=overrides)
    OmegaConf.resolve(cfg)
    return cfg


def one_run(cfg: DictConfig, world: str, seed: int, folder: Path) -> dict[str, Any]:
    """simulate -> train -> evaluate for one (world, training seed); the headline numbers."""
    from pipeline.simulate_cli import run_simulate
    from training.evaluation.evaluate import run_evaluate
    from training.train import run_train

    paths = [f"paths.data_dir={folder}/data", f"paths.artifacts_dir={folder}/artifacts",
             f"paths.reports_dir={folder}/reports", f"paths.cache_dir={folder}/cache"]
    world_cfg = [f"simulate={world}", f"simulate.seed={seed}",
                 f"simulate.n_courses={int(cfg.n_courses)}"]
    run_simulate(compose("router_simulate", [*paths, *world_cfg]))
    run_train(compose("router_train", [*paths, "train.baseline=null",
                                       *cfg.train_overrides]), progress=False)
    result = run_evaluate(compose("router_evaluate", [
        *paths, *world_cfg, f"evaluate.n_courses={int(cfg.eval_courses)}", "evaluate.ope=false",
        "evaluate.gate_error_rates=[]", f"evaluate.bootstrap={int(cfg.bootstrap)}"]),
        progress=False)
    return {k: float(fn(result)) for k, fn in HEADLINES.items()}


def summarise(values: list[float]) -> dict[str, float]:
    """Mean, worst and best seed, and a 95% t-interval of the mean over seeds."""
    v = np.asarray(values, dtype=float)
    half = (stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v))
            if len(v) > 1 else float("nan"))
    return {"mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
            "ci_low": float(v.mean() - half), "ci_high": float(v.mean() + half),
            "seeds": len(v)}


def run_seeds(cfg: DictConfig, progress: bool = True) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {}
    jobs = [(str(w), int(s)) for w in cfg.worlds for s in cfg.seeds]
    with tempfile.TemporaryDirectory(prefix="router-seeds-") as tmp:
        for world, seed in tqdm(jobs, desc="router-evaluate-seeds", disable=not progress):
            started = time.perf_counter()
            row = one_run(cfg, world, seed, Path(tmp) / f"{world}-{seed}")
            runs.setdefault(world, []).append({"seed": seed, **row,
                                               "seconds": round(time.perf_counter() - started)})
    summary = {w: {k: summarise([r[k] for r in rows]) for k in HEADLINES}
               for w, rows in runs.items()}
    result = {"runs": runs, "summary": summary,
              "config": OmegaConf.to_container(cfg, resolve=True)}
    out = Path(cfg.reports_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2))
    (out / "report.md").write_text(markdown(result))
    return result


def markdown(result: dict[str, Any]) -> str:
    cfg = result["config"]
    lines = ["# The learned router over training seeds and worlds", "",
             f"Seeds {cfg['seeds']}; {cfg['n_courses']:,} simulated courses of logs per run, "
             f"a fresh {cfg['eval_courses']:,}-course evaluation world each time. Savings are "
             "at the static assignment's true pass rate, against the pooled simple baselines "
             "(lookup table through the planner, lookup threshold, static, ladder from the "
             "cheapest, always-mid, always-premium, random).", "",
             "| world | headline | mean | worst seed | best seed | 95% t-interval of the mean |",
             "|---|---|---|---|---|---|"]
    for world, rows in result["summary"].items():
        for key, s in rows.items():
            lines.append(f"| {world} | {key} | {s['mean']:.4f} | {s['min']:.4f} | "
                         f"{s['max']:.4f} | [{s['ci_low']:.4f}, {s['ci_high']:.4f}] |")
    lines += ["", "## Every run", "", "| world | seed | saving vs best baseline [CI low] | "
              "saving vs static | learned true pass | static true pass | seconds |",
              "|---|---|---|---|---|---|---|"]
    for world, rows in result["runs"].items():
        for r in rows:
            lines.append(f"| {world} | {r['seed']} | {r['saving_vs_best_baseline']:+.2%} "
                         f"[{r['saving_vs_best_baseline_ci_low']:+.2%}] | "
                         f"{r['saving_vs_static_at_its_quality']:.2%} | "
                         f"{r['learned_true_pass_at_calibrated_lam']:.4f} | "
                         f"{r['static_true_pass']:.4f} | {r['seconds']} |")
    return "\n".join(lines) + "\n"


@hydra.main(config_path=CONF_DIR, config_name="router_evaluate_seeds", version_base="1.3")
def main(cfg: DictConfig) -> None:
    OmegaConf.resolve(cfg)
    result = run_seeds(cfg)
    print(markdown(result))
    print(f"Reports in {cfg.reports_dir}/{{metrics.json,report.md}}")
