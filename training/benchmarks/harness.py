"""Routers side by side on real public outcome tables (`router-benchmark`).

For each benchmark: load the long table (`benchmark_data`), compute prompt features (family,
MiniLM token count, text statistics, cached MiniLM embeddings), fit every learned router on
the training folds only and predict the held-out folds, then score

- single-call mode (as RouteLLM and RouterBench evaluate routers): PGR / APGR / CPT for
  two-model benchmarks, AIQ, cost saved against always-premium at 95% of its quality, and
  the share of the oracle's savings recovered; each with a bootstrap CI over prompts;
- start tier + ladder, with the gate as the true outcome flipped at the configured rates:
  true quality, cost and calls per prompt against the ladder from the cheapest model.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf

from router_model.config import CONF_DIR, Catalog
from router_model.embeddings import embed
from router_model.policy import LadderCostModel, PolicySettings, RoutingPolicy
from router_model.replay import OutcomeCube, replay
from router_model.routers import RouterContext, build_router
from training.benchmarks.data import OutcomeTable, build_table, folds, load_long_table
from training.benchmarks.routers import cheapest_meeting
from training.benchmarks.text_features import text_statistics, token_counts
from training.evaluation.compare import quality_at
from training.evaluation.routing_metrics import (
    aiq,
    apgr,
    cost_for_quality,
    cpt,
    percentile_interval,
    resample_counts,
    routing_curve,
)


def load_spec(name: str) -> DictConfig:
    path = Path(CONF_DIR) / "benchmark" / f"{name}.yaml"
    if not path.exists():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise FileNotFoundError(f"no benchmark config {path.name}; known: {known}")
    return OmegaConf.load(path)


def public_root(cfg: DictConfig) -> Path:
    root = Path(str(cfg.public_data))
    return root if root.is_absolute() else (Path(CONF_DIR).parent / root).resolve()


def prompt_features(table: OutcomeTable, cache_dir: str | None, progress: bool
                    ) -> pd.DataFrame:
    """One row per prompt: family, MiniLM token count, text statistics, embedding."""
    texts = table.prompts["prompt"].tolist()
    stats = text_statistics(texts)
    frame = pd.DataFrame({"prompt_id": table.prompts["prompt_id"].to_numpy(),
                          "field": table.prompts["family"].to_numpy(),
                          "prompt_tokens": token_counts(texts),
                          "context_tokens": 0.0, "expected_output_tokens": np.nan})
    frame = pd.concat([frame, stats.add_prefix("analysis.")], axis=1)
    frame["embedding"] = list(embed(texts, cache_dir, progress=progress))
    return frame


def out_of_fold_probabilities(cfg: DictConfig, spec: DictConfig, table: OutcomeTable,
                              tasks: pd.DataFrame) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """P(pass) per prompt and model for every learned router, each prompt predicted by a
    router that never saw it. Returns the matrices and the mask of predicted prompts."""
    learned = [str(n) for n in cfg.learned_routers]
    probs = {name: np.full(table.score.shape, np.nan) for name in learned}
    covered = np.zeros(table.n, dtype=bool)
    context = benchmark_context(cfg, table)
    for train, test in folds(table, spec.split):
        for name in learned:
            router = build_router(name, cfg.routers, context)
            router.fit(tasks.iloc[train], table.passed[train])
            probs[name][test] = router.pass_probabilities(tasks.iloc[test])
        covered[test] = True
    return probs, covered


@dataclass
class Curve:
    """A router's operating points: cost per prompt, mean score, strong-call share."""

    cost: np.ndarray
    quality: np.ndarray
    strong_share: np.ndarray


def single_call_curve(p: np.ndarray, table: OutcomeTable, idx: np.ndarray) -> Curve:
    """Two models: route the prompts with the largest predicted gain to the strong one.
    More models: start at the cheapest whose P(pass) clears a threshold, swept."""
    score, cost = table.score[idx], table.cost[idx]
    if score.shape[1] == 2:
        gain = p[:, 1] - p[:, 0]
        points = min(len(idx) + 1, 401)
        x, quality = routing_curve(gain, score[:, 0], score[:, 1], points)
        _, spend = routing_curve(gain, cost[:, 0], cost[:, 1], points)
        return Curve(cost=spend, quality=quality, strong_share=x)
    grid = np.unique(np.concatenate([[0.0, 1.0 + 1e-9],
                                     np.quantile(p, np.linspace(0, 1, 201))]))
    rows = np.arange(len(idx))
    points = []
    for tau in grid:
        start = cheapest_meeting(p, tau)
        points.append((cost[rows, start].mean(), score[rows, start].mean(),
                       (start == score.shape[1] - 1).mean()))
    c, q, s = map(np.array, zip(*points, strict=True))
    return Curve(cost=c, quality=q, strong_share=s)


def single_call_metrics(p: np.ndarray | None, kind: str, table: OutcomeTable,
                        idx: np.ndarray, rng: np.random.Generator) -> dict[str, float]:
    """The published metrics for one router on the prompts `idx`."""
    score, cost = table.score[idx], table.cost[idx]
    K = score.shape[1]
    cheap = (cost[:, 0].mean(), score[:, 0].mean())
    premium = (cost[:, -1].mean(), score[:, -1].mean())
    if kind == "oracle":  # the cheapest model with the best score on each prompt
        best = score.max(axis=1, keepdims=True)
        p = (score >= best - 1e-12).astype(float)
        p = p if K > 2 else np.column_stack([1 - (score[:, 1] > score[:, 0]), p[:, 1]])
    elif kind == "random":
        p = rng.random(score.shape)
    out: dict[str, float] = {}
    if kind in ("always-cheap", "always-premium"):
        c, q = cheap if kind == "always-cheap" else premium
        curve = Curve(np.array([c]), np.array([q]), np.array([float(kind == "always-premium")]))
    else:
        curve = single_call_curve(p, table, idx)
    out["cost_per_prompt"] = float(curve.cost[-1] if kind == "always-premium"
                                   else curve.cost.min())
    out["aiq"] = aiq(curve.cost, curve.quality, cheap[0], premium[0],
                     endpoints=(cheap, premium))
    for label, share in (("saved_at_95pct_premium", 0.95), ("saved_at_premium", 1.0)):
        c = cost_for_quality(curve.cost, curve.quality, share * premium[1], (cheap, premium))
        out[label] = 1.0 - c / premium[0]
    if K == 2 and kind not in ("always-cheap", "always-premium"):
        x, pgr = curve.strong_share, (curve.quality - cheap[1]) / (premium[1] - cheap[1])
        out["apgr"], out["cpt50"], out["cpt80"] = apgr(x, pgr), cpt(x, pgr, 0.5), cpt(
            x, pgr, 0.8)
    return out


def with_ci(fn: Any, idx: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Point values of fn(idx) with 95% percentile CIs from resampling the prompts."""
    point = fn(idx, np.random.default_rng(seed))
    counts = resample_counts(len(idx), n_boot, seed + 1)
    samples = [fn(np.repeat(idx, c), np.random.default_rng(seed + 2 + b))
               for b, c in enumerate(counts)]
    out = {}
    for key, value in point.items():
        lo, hi = percentile_interval([s.get(key, np.nan) for s in samples])
        out[key] = {"value": float(value), "ci_low": lo, "ci_high": hi}
    return out


def benchmark_catalog(cfg: DictConfig, table: OutcomeTable) -> Catalog:
    """A catalog whose ladder is the benchmark's models. The gate is conf/gate's, with no
    retries and no severe jump (each prompt has one recorded response per model)."""
    tiers = {f"m{j}": {"model_id": m, "provider": "benchmark", "base_url": "-",
                       "api_key_env": "-", "price_in_per_m": 0.0, "price_out_per_m": 0.0,
                       "context_window": 10**9, "ladder_rank": j, "first_token_s": 0.0,
                       "output_tokens_per_s": 1.0} for j, m in enumerate(table.models)}
    tiers["unused-overflow"] = {**tiers["m0"], "ladder_rank": None}
    gate = OmegaConf.merge(cfg.gate, {
        "severe_threshold": 0.0, "retries_per_tier": 0, "context_overflow_tokens": 10**12,
        "overflow_tier": "unused-overflow", "validation_tier": "m0",
        "validation_prompt_overhead_tokens": 0, "validation_output_tokens": 0,
        "embedding_price_per_m": 0.0})
    return Catalog.from_config({"tiers": tiers, "fields": {}, "gate": gate})


def benchmark_context(cfg: DictConfig, table: OutcomeTable) -> RouterContext:
    catalog = benchmark_catalog(cfg, table)
    return RouterContext(catalog, RoutingPolicy(catalog, PolicySettings()), seed=int(cfg.seed))


def ladder_metrics(catalog: Catalog, starts: dict[str, np.ndarray], table: OutcomeTable,
                   idx: np.ndarray, rate: float, seed: int) -> dict[str, dict[str, float]]:
    """Start tier + ladder with a gate that flips the true verdict at `rate` both ways."""
    n, K = len(idx), len(table.models)
    truth = table.passed[idx]
    rng = np.random.default_rng(seed)
    verdict = truth ^ (rng.random(truth.shape) < rate)
    shape = (n, K + 1, 1)
    # The gate sees similarity 1 for a passing verdict and 0 (a near miss: no retries, no
    # severe jump in this catalog) otherwise; quality is the truth on the same scale.
    cube = OutcomeCube(
        similarity=np.pad(np.where(verdict, 1.0, 0.0), ((0, 0), (0, 1)))[:, :, None],
        quality=np.pad(truth.astype(float), ((0, 0), (0, 1)))[:, :, None],
        schema_valid=np.ones(shape, dtype=bool),
        call_cost=np.pad(table.cost[idx], ((0, 0), (0, 1))),
        gate_cost=np.zeros((n, K + 1)), latency_s=np.ones((n, K + 1)),
        overflow=np.zeros(n, dtype=bool))
    out = {}
    rows = np.arange(n)
    for name, start in starts.items():
        r = replay(cube, start, catalog)
        final = np.minimum(r.final_tier, K - 1)
        out[name] = {"true_pass_rate": float(r.true_pass.mean()),
                     "mean_score": float(table.score[idx][rows, final].mean()),
                     "cost_per_prompt": float(r.cost.mean()),
                     "calls_per_prompt": float(r.calls.mean())}
    return out


def planned_starts(catalog: Catalog, p: np.ndarray, cost: np.ndarray, rate: float,
                   lam: float) -> np.ndarray:
    """The product's expected-loss planner on a benchmark: `p` is each model's predicted true
    pass; with a gate that flips at `rate`, the gate passes with p(1-r) + (1-p)r, of which
    (1-p)r / that is a false pass. Start where cost + lam x P(bad outcome) is least."""
    stats = {"tiers": {t: {"schema_share": 0.0, "severe_share": 0.0} for t in catalog.ladder}}
    model = LadderCostModel(catalog, PolicySettings(), stats)
    gate_pass = p * (1 - rate) + (1 - p) * rate
    false_pass = (1 - p) * rate / np.maximum(gate_pass, 1e-12)
    e = model.expectations(list(gate_pass.T), list(cost.T), [np.zeros(len(p))] * p.shape[1],
                           list(false_pass.T))
    loss = np.column_stack(e["cost"]) + lam * np.column_stack(e["bad"])
    return np.argmin(loss, axis=1)


def ladder_frontiers(cfg: DictConfig, catalog: Catalog, probs: dict[str, np.ndarray],
                     table: OutcomeTable, idx: np.ndarray, rate: float) -> dict[str, Any]:
    """Per learned router, the planner swept over `ladder_lam_sweep`; against the ladder from
    the cheapest model: the router's cost at the ladder's true pass, and its true pass at the
    ladder's cost (upper hull of the swept points)."""
    seed = int(cfg.seed)
    ladder = ladder_metrics(catalog, {"ladder-from-cheapest": np.zeros(len(idx), np.int64)},
                            table, idx, rate, seed)["ladder-from-cheapest"]
    out: dict[str, Any] = {"ladder-from-cheapest": ladder, "frontiers": {}, "vs_ladder": {}}
    for name, p in probs.items():
        starts = {str(lam): planned_starts(catalog, p[idx], table.cost[idx], rate, float(lam))
                  for lam in cfg.ladder_lam_sweep}
        points = ladder_metrics(catalog, starts, table, idx, rate, seed)
        cost = np.array([m["cost_per_prompt"] for m in points.values()])
        quality = np.array([m["true_pass_rate"] for m in points.values()])
        out["frontiers"][name] = [{"lam": float(k), **m} for k, m in points.items()]
        out["vs_ladder"][name] = {
            "cost_at_ladder_quality": cost_for_quality(cost, quality,
                                                       ladder["true_pass_rate"] - 1e-12),
            "quality_at_ladder_cost": quality_at(cost, quality, ladder["cost_per_prompt"])}
    return out


def run_benchmark(cfg: DictConfig, name: str, progress: bool = True) -> dict[str, Any]:
    started = time.perf_counter()
    spec = load_spec(name)
    long = load_long_table(public_root(cfg) / str(spec.data), cfg.paths.cache_dir)
    table = build_table(spec, long, max_prompts=cfg.max_prompts, seed=int(cfg.seed))
    tasks = prompt_features(table, cfg.paths.cache_dir, progress)
    probs, covered = out_of_fold_probabilities(cfg, spec, table, tasks)
    idx = np.flatnonzero(covered)
    n_boot, seed = int(cfg.bootstrap), int(cfg.seed)
    single = {}
    for router in ("random", "always-cheap", "always-premium", *probs, "oracle"):
        p_all = probs.get(router)

        def fn(sample: np.ndarray, rng: np.random.Generator, router: str = router,
               p_all: np.ndarray | None = p_all) -> dict[str, float]:
            p = p_all[sample] if p_all is not None else None
            return single_call_metrics(p, router, table, sample, rng)

        single[router] = with_ci(fn, idx, n_boot, seed)
    for key in ("saved_at_95pct_premium", "saved_at_premium"):
        oracle_saved = single["oracle"][key]["value"]
        for m in single.values():
            m[f"oracle_share_{key.removeprefix('saved_at_')}"] = {
                "value": m[key]["value"] / oracle_saved if oracle_saved > 0 else float("nan")}
    catalog = benchmark_catalog(cfg, table)
    ladder = {str(rate): ladder_frontiers(cfg, catalog, probs, table, idx, float(rate))
              for rate in cfg.gate_error_rates}
    result = {
        "name": name, "models": table.models, "prompts": len(idx),
        "families": int(table.prompts["family"].nunique()), "dropped": table.dropped,
        "split": OmegaConf.to_container(spec.split), "published": OmegaConf.to_container(
            spec.published), "premium_score": float(table.score[idx, -1].mean()),
        "cheap_score": float(table.score[idx, 0].mean()),
        "single_call": single, "ladder": ladder,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_benchmark_reports(result, probs, table, idx, Path(cfg.reports_dir) / name)
    return result


def write_benchmark_reports(result: dict[str, Any], probs: dict[str, np.ndarray],
                            table: OutcomeTable, idx: np.ndarray, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.json").write_text(json.dumps(result, indent=2, default=float))
    curve_plot(probs, table, idx, folder / "curve.png", result["name"])
    ladder_plot(result, folder / "ladder.png")
    (folder / "report.md").write_text(benchmark_markdown(result))


def ladder_plot(result: dict[str, Any], path: Path) -> None:
    """Each learned router's lam frontier (cost vs true pass) per gate error, with the
    ladder from the cheapest model as a point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = list(result["ladder"])
    fig, axes = plt.subplots(1, len(rates), figsize=(5 * len(rates), 4), squeeze=False)
    for ax, rate in zip(axes[0], rates, strict=True):
        section = result["ladder"][rate]
        for name, points in section["frontiers"].items():
            ax.plot([p["cost_per_prompt"] for p in points],
                    [p["true_pass_rate"] for p in points], "-o", ms=3, label=name)
        lad = section["ladder-from-cheapest"]
        ax.scatter(lad["cost_per_prompt"], lad["true_pass_rate"], marker="x", s=60, c="k",
                   zorder=3, label="ladder-from-cheapest")
        ax.set_title(f"{result['name']}: gate error {float(rate):.1f}")
        ax.set_xlabel("cost per prompt (USD)")
        ax.set_ylabel("true pass rate")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def curve_plot(probs: dict[str, np.ndarray], table: OutcomeTable, idx: np.ndarray,
               path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for name, p in probs.items():
        curve = single_call_curve(p[idx], table, idx)
        ax.plot(curve.cost, curve.quality, label=name, lw=1.3)
    rng = np.random.default_rng(0)
    rand = single_call_curve(rng.random((len(idx), len(table.models))), table, idx)
    ax.plot(rand.cost, rand.quality, label="random", lw=1, ls=":", color="grey")
    for j, m in enumerate(table.models):
        ax.scatter(table.cost[idx, j].mean(), table.score[idx, j].mean(), zorder=3,
                   label=f"always {m.split('/')[-1]}")
    ax.set_xlabel("cost per prompt (USD)")
    ax.set_ylabel("mean score")
    ax.set_title(f"{title}: single-call routing, held-out prompts")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _v(m: dict[str, Any], key: str, pct: bool = False) -> str:
    if key not in m:
        return "-"
    v = m[key]
    if "ci_low" not in v:
        return f"{v['value']:.1%}" if pct else f"{v['value']:.3f}"
    if pct:
        return f"{v['value']:.1%} [{v['ci_low']:.1%}, {v['ci_high']:.1%}]"
    return f"{v['value']:.3f} [{v['ci_low']:.3f}, {v['ci_high']:.3f}]"


SINGLE_COLUMNS = (("apgr", "APGR", False), ("cpt50", "CPT(50%)", True),
                  ("cpt80", "CPT(80%)", True), ("aiq", "AIQ", False),
                  ("saved_at_95pct_premium", "saved @95% premium quality", True),
                  ("oracle_share_95pct_premium", "share of oracle's (95%)", True),
                  ("saved_at_premium", "saved @premium quality", True),
                  ("oracle_share_premium", "share of oracle's (100%)", True))


def single_call_table(result: dict[str, Any], with_name: bool = False) -> list[str]:
    head = ("| benchmark " if with_name else "") + "| router | " + " | ".join(
        c[1] for c in SINGLE_COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(SINGLE_COLUMNS) + 1 + with_name)]
    for router, m in result["single_call"].items():
        cells = " | ".join(_v(m, key, pct) for key, _, pct in SINGLE_COLUMNS)
        lines.append((f"| {result['name']} " if with_name else "") + f"| {router} | {cells} |")
    return lines


def benchmark_markdown(result: dict[str, Any]) -> str:
    pub = result["published"]
    lines = [f"# {result['name']}", "",
             f"{result['prompts']:,} held-out prompts in {result['families']} families; "
             f"models (cheap -> premium): {', '.join(result['models'])}; split "
             f"{result['split']}. Mean score: cheap {result['cheap_score']:.3f}, premium "
             f"{result['premium_score']:.3f}. Dropped: {result['dropped']}.", "",
             "## Single-call routing (95% bootstrap CI over prompts)", "",
             *single_call_table(result), ""]
    if pub.get("apgr") is not None:
        lines += [f"Published best ({pub['source']}): APGR {pub['apgr']:.3f}, CPT(50%) "
                  f"{pub['cpt50']:.1%}. Our routers are trained on in-domain folds of this "
                  "benchmark; RouteLLM's were not.", ""]
    lines += ["## Start tier + ladder (the expected-loss planner swept over lam; gate = true "
              "verdict flipped at the rate)", "",
              "| gate error | router | cost / prompt at the ladder's true pass | true pass at "
              "the ladder's cost |", "|---|---|---|---|"]
    for rate, section in result["ladder"].items():
        lad = section["ladder-from-cheapest"]
        lines.append(f"| {float(rate):.1f} | ladder-from-cheapest | "
                     f"{lad['cost_per_prompt']:.6f} | {lad['true_pass_rate']:.4f} |")
        for router, v in section["vs_ladder"].items():
            lines.append(f"| {float(rate):.1f} | {router} | {v['cost_at_ladder_quality']:.6f}"
                         f" | {v['quality_at_ladder_cost']:.4f} |")
    lines += ["", "![curve](curve.png)", "", "![ladder frontiers](ladder.png)", ""]
    return "\n".join(lines)


def summary_markdown(results: list[dict[str, Any]]) -> str:
    lines = ["# Router benchmarks: summary", "", "Single-call routing on held-out prompts "
             "(95% bootstrap CI over prompts).", ""]
    head = single_call_table(results[0], with_name=True)[:2]
    lines += head
    for r in results:
        lines += single_call_table(r, with_name=True)[2:]
    return "\n".join(lines) + "\n"
