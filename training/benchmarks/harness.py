"""Routers side by side on real public outcome tables (`router-benchmark`).

For each benchmark: load the long table, compute prompt features (family, MiniLM token
count, text statistics, cached MiniLM embeddings), fit every learned router on the training
folds only and predict the held-out folds, then score

- single-call mode (as RouteLLM and RouterBench evaluate routers): PGR / APGR / CPT for
  two-model benchmarks and AIQ over the whole knob, plus the held-out outcome at operating
  points chosen on training prompts (95% and 100% of premium quality); every fixed baseline
  (always-<model>, ladder-from-cheapest) as a row; bootstrap CIs over prompts;
- start tier + ladder, with the gate as the true outcome flipped at the configured rates:
  the product's planner with lam chosen on training prompts, against the ladder from the
  cheapest model.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import Catalog, plain
from router_model.decide.gate import flip_mask
from router_model.decide.ladder_cost import LadderCostModel
from router_model.decide.policy import RoutingPolicy
from router_model.decide.replay import OutcomeCube, replay
from router_model.decide.routers import RouterContext, build_router
from router_model.decide.settings import PolicySettings
from training.benchmarks.data import OutcomeTable, build_table, folds, load_long_table
from training.benchmarks.operating import (
    choose_threshold,
    ladder_from_cheapest,
    oracle_starts,
    route,
)
from training.benchmarks.reports import write_benchmark_reports
from training.benchmarks.settings import BenchmarkJob, BenchmarkSpec
from training.benchmarks.specs import data_path
from training.benchmarks.text_features import prompt_features
from training.evaluation.routing_metrics import (
    aiq,
    apgr,
    cost_for_quality,
    cpt,
    percentile_interval,
    resample_counts,
    routing_curve,
)
from training.parallel import run_each

RANDOM = "random"


@dataclass
class CrossFit:
    """Held-out predictions and the starts at operating points chosen on training prompts."""

    probs: dict[str, np.ndarray]
    starts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # router, target
    ladder_starts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # rate
    covered: np.ndarray | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # fitting time per router


def fit_predict(job: BenchmarkJob, name: str, context: RouterContext, tasks: pd.DataFrame,
                passed: np.ndarray, train: np.ndarray, test: np.ndarray,
                **overrides: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """P(pass) on `test` from router `name` fitted on `train` (random: uniform noise), and
    the settings it chose by inner validation (reused for the operating point's refits)."""
    if name == RANDOM:
        rng = np.random.default_rng([job.settings.seed, len(train), len(test), int(test[0])])
        return rng.random((len(test), passed.shape[1])), {}
    router = build_router(name, job.routers, context, **overrides)
    router.fit(tasks.iloc[train], passed[train])
    chosen = {"min_child_samples_grid": [router.min_child_samples_]} \
        if hasattr(router, "min_child_samples_") else {}
    return router.pass_probabilities(tasks.iloc[test]), chosen


def inner_out_of_fold(job: BenchmarkJob, name: str, context: RouterContext,
                      tasks: pd.DataFrame, passed: np.ndarray, train: np.ndarray,
                      chosen: dict[str, Any]) -> np.ndarray:
    """Cross-fitted P(pass) for the training prompts themselves (inner K-fold), with the
    settings the router chose on the same training prompts."""
    from sklearn.model_selection import KFold

    k = min(job.settings.operating_point.inner_folds, len(train))
    p = np.full((len(train), passed.shape[1]), np.nan)
    for fit, val in KFold(n_splits=k, shuffle=True, random_state=job.settings.seed).split(
            train):
        p[val] = fit_predict(job, name, context, tasks, passed, train[fit], train[val],
                             **chosen)[0]
    return p


def cross_fit(job: BenchmarkJob, spec: BenchmarkSpec, table: OutcomeTable,
              tasks: pd.DataFrame) -> CrossFit:
    """Every learned router per outer fold: held-out P(pass), and knob / lam values chosen on
    the fold's training prompts (never on its test prompts). The folds are independent and
    seeded on their own, so they run `n_jobs` at a time with the same numbers."""
    names = [RANDOM, *job.settings.learned_routers]
    splits = folds(table, spec.split)
    fitted = run_each(fit_fold, [(job, names, table, tasks, train, test)
                                 for train, test in splits], job.settings.n_jobs,
                      "cross-fitting folds", progress=False)
    out = CrossFit(probs={n: np.full(table.score.shape, np.nan) for n in names},
                   covered=np.zeros(table.n, dtype=bool))
    for (_, test), fold in zip(splits, fitted, strict=True):
        for name, (p_test, starts, ladder, seconds) in fold.items():
            out.probs[name][test] = p_test
            for label, start in starts.items():
                out.starts.setdefault(name, {}).setdefault(
                    label, np.zeros(table.n, np.int64))[test] = start
            for rate, start in ladder.items():
                out.ladder_starts.setdefault(name, {}).setdefault(
                    rate, np.zeros(table.n, np.int64))[test] = start
            out.seconds[name] = out.seconds.get(name, 0.0) + seconds
        out.covered[test] = True
    return out


def fit_fold(job: BenchmarkJob, names: list[str], table: OutcomeTable, tasks: pd.DataFrame,
             train: np.ndarray, test: np.ndarray) -> dict[str, tuple[Any, ...]]:
    """Each router on one outer fold: its held-out P(pass), its starts at the knob chosen
    per quality target and at the lam chosen per gate error rate (both on cross-fitted
    predictions for the fold's training prompts), and its fitting seconds."""
    context = benchmark_context(job, table)
    op = job.settings.operating_point
    out = {}
    for name in names:
        clock = time.perf_counter()
        p_test, chosen = fit_predict(job, name, context, tasks, table.passed, train, test)
        p_train = inner_out_of_fold(job, name, context, tasks, table.passed, train, chosen)
        starts = {target_label(share): route(p_test, choose_threshold(
            p_train, table.score[train], table.cost[train], float(share)))
            for share in op.quality_shares}
        ladder = {} if name == RANDOM else {
            str(rate): planned_starts(context.catalog, p_test, table.cost[test], float(rate),
                                      choose_lam(job, context.catalog, p_train, table, train,
                                                 float(rate)), job.policy)
            for rate in job.settings.gate_error_rates}
        out[name] = (p_test, starts, ladder, time.perf_counter() - clock)
    return out


def target_label(share: float) -> str:
    return f"{round(float(share) * 100)}pct"


def curve_points(p: np.ndarray, table: OutcomeTable, idx: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The frontier over the knob on prompts `idx`: (cost, mean score, strong share).
    Two models: prompts ranked by predicted gain (RouteLLM's curve)."""
    score, cost = table.score[idx], table.cost[idx]
    if score.shape[1] == 2:
        gain = p[:, 1] - p[:, 0]
        points = min(len(idx) + 1, 401)
        x, quality = routing_curve(gain, score[:, 0], score[:, 1], points)
        _, spend = routing_curve(gain, cost[:, 0], cost[:, 1], points)
        return spend, quality, x
    rows = np.arange(len(idx))
    grid = np.unique(np.concatenate([[0.0, 1.0 + 1e-9], np.quantile(p, np.linspace(0, 1,
                                                                                   201))]))
    starts = [route(p, tau) for tau in grid]
    return (np.array([cost[rows, s].mean() for s in starts]),
            np.array([score[rows, s].mean() for s in starts]),
            np.array([(s == score.shape[1] - 1).mean() for s in starts]))


def curve_metrics(p: np.ndarray, table: OutcomeTable, idx: np.ndarray) -> dict[str, float]:
    """APGR / CPT (two models) and AIQ over the whole knob, and the hull's saving at 95% /
    100% of premium quality: an upper bound, as the hull's point is picked on these prompts."""
    score, cost = table.score[idx], table.cost[idx]
    cheap = (cost[:, 0].mean(), score[:, 0].mean())
    premium = (cost[:, -1].mean(), score[:, -1].mean())
    spend, quality, share = curve_points(p, table, idx)
    out = {"aiq": aiq(spend, quality, cheap[0], premium[0], endpoints=(cheap, premium))}
    for label, target in (("hull_saved_at_95pct_premium", 0.95), ("hull_saved_at_premium", 1)):
        c = cost_for_quality(spend, quality, target * premium[1], (cheap, premium))
        out[label] = 1.0 - c / premium[0]
    if score.shape[1] == 2 and premium[1] != cheap[1]:
        pgr = (quality - cheap[1]) / (premium[1] - cheap[1])
        out.update(apgr=apgr(share, pgr), cpt50=cpt(share, pgr, 0.5), cpt80=cpt(share, pgr, 0.8))
    return out


def point_metrics(final: np.ndarray, spent: np.ndarray, table: OutcomeTable, idx: np.ndarray,
                  prefix: str = "") -> dict[str, float]:
    """Held-out outcome of one routing: cost per prompt, mean score, both against
    always-premium, and the premium call share."""
    rows = np.arange(len(idx))
    score = table.score[idx]
    q, c = score[rows, final].mean(), spent.mean()
    return {f"{prefix}cost_per_prompt": float(c), f"{prefix}mean_score": float(q),
            f"{prefix}quality_vs_premium": float(q / score[:, -1].mean()),
            f"{prefix}saved_vs_premium": float(1.0 - c / table.cost[idx, -1].mean()),
            f"{prefix}premium_share": float((final == score.shape[1] - 1).mean())}


def single_call_row(router: str, fit: CrossFit, table: OutcomeTable, idx: np.ndarray
                    ) -> dict[str, float]:
    """All single-call metrics of one row on the prompts `idx` (a bootstrap sample)."""
    cost = table.cost[idx]
    rows = np.arange(len(idx))
    if router.startswith("always-"):
        j = [f"always-{short(m)}" for m in table.models].index(router)
        start = np.full(len(idx), j)
        return point_metrics(start, cost[:, j], table, idx)
    if router == "ladder-from-cheapest":
        return point_metrics(*ladder_from_cheapest(table.passed[idx], cost), table, idx)
    if router == "oracle":
        start = oracle_starts(table.score[idx], cost)
        best = (table.score[idx] >= table.score[idx].max(axis=1, keepdims=True) - 1e-12)
        p = best.astype(float) if cost.shape[1] > 2 else np.column_stack(
            [1.0 - (table.score[idx, 1] > table.score[idx, 0]), best[:, 1]])
        return {**point_metrics(start, cost[rows, start], table, idx),
                **curve_metrics(p, table, idx)}
    out = curve_metrics(fit.probs[router][idx], table, idx)
    for i, (label, starts) in enumerate(fit.starts[router].items()):
        s = starts[idx]
        if i == 0:  # the first target is the router's operating point
            out.update(point_metrics(s, cost[rows, s], table, idx))
        out.update(point_metrics(s, cost[rows, s], table, idx, prefix=f"op{label}_"))
    return out


def short(model: str) -> str:
    return model.split("/")[-1]


def with_ci(fn: Any, idx: np.ndarray, n_boot: int, seed: int) -> dict[str, Any]:
    """Point values of fn(idx) with 95% percentile CIs from resampling the prompts."""
    point = fn(idx)
    samples = [fn(np.repeat(idx, c)) for c in resample_counts(len(idx), n_boot, seed + 1)]
    out = {}
    for key, value in point.items():
        lo, hi = percentile_interval([s.get(key, np.nan) for s in samples])
        out[key] = {"value": float(value), "ci_low": lo, "ci_high": hi}
    return out


def benchmark_catalog(job: BenchmarkJob, table: OutcomeTable) -> Catalog:
    """A catalog whose ladder is the benchmark's models. The gate is conf/gate's, with no
    retries and no severe jump (each prompt has one recorded response per model)."""
    tiers = {f"m{j}": {"model_id": m, "provider": "benchmark", "base_url": "-",
                       "api_key_env": "-", "price_in_per_m": 0.0, "price_out_per_m": 0.0,
                       "context_window": 10**9, "ladder_rank": j, "first_token_s": 0.0,
                       "deployments": {}, "request": {
                           "reasoning_effort": None, "max_tokens_param": "max_tokens",
                           "response_format": None, "extra_body": {}},
                       "output_tokens_per_s": 1.0} for j, m in enumerate(table.models)}
    tiers["unused-overflow"] = {**tiers["m0"], "ladder_rank": None}
    gate = replace(job.gate, severe_threshold=0.0, retries_per_tier=0,
                   context_overflow_tokens=10**12, overflow_tier="unused-overflow",
                   validation_tier="m0", validation_prompt_overhead_tokens=0,
                   validation_output_tokens=0, embedding_price_per_m=0.0)
    return Catalog.from_config({"tiers": tiers, "fields": {}, "gate": plain(gate)})


def benchmark_context(job: BenchmarkJob, table: OutcomeTable) -> RouterContext:
    catalog = benchmark_catalog(job, table)
    return RouterContext(catalog, RoutingPolicy(catalog, job.policy), seed=job.settings.seed)


def ladder_metrics(catalog: Catalog, starts: dict[str, np.ndarray], table: OutcomeTable,
                   idx: np.ndarray, rate: float, seed: int) -> dict[str, dict[str, float]]:
    """Start tier + ladder with a gate that flips the true verdict at `rate` both ways."""
    n, K = len(idx), len(table.models)
    truth = table.passed[idx]
    rng = np.random.default_rng(seed)
    verdict = truth ^ flip_mask(truth, rate, rate, rng)
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
                   lam: float, policy: PolicySettings) -> np.ndarray:
    """The product's expected-loss planner on a benchmark: `p` is each model's predicted true
    pass; with a gate that flips at `rate`, the gate passes with p(1-r) + (1-p)r, of which
    (1-p)r / that is a false pass. Start where cost + lam x P(bad outcome) is least."""
    stats = {"tiers": {t: {"schema_share": 0.0, "severe_share": 0.0} for t in catalog.ladder}}
    model = LadderCostModel(catalog, policy, stats)
    gate_pass = p * (1 - rate) + (1 - p) * rate
    false_pass = (1 - p) * rate / np.maximum(gate_pass, 1e-12)
    e = model.expectations(list(gate_pass.T), list(cost.T), [np.zeros(len(p))] * p.shape[1],
                           list(false_pass.T))
    loss = np.column_stack(e["cost"]) + lam * np.column_stack(e["bad"])
    return np.argmin(loss, axis=1)


def choose_lam(job: BenchmarkJob, catalog: Catalog, p_train: np.ndarray, table: OutcomeTable,
               train: np.ndarray, rate: float) -> float:
    """On training prompts: the cheapest lam whose true pass reaches the ladder from the
    cheapest model's (the most passing lam when none does)."""
    seed = job.settings.seed
    starts = {"ladder": np.zeros(len(train), np.int64)}
    starts |= {str(lam): planned_starts(catalog, p_train, table.cost[train], rate, float(lam),
                                        job.policy)
               for lam in job.settings.ladder_lam_sweep}
    runs = ladder_metrics(catalog, starts, table, train, rate, seed)
    goal = runs.pop("ladder")["true_pass_rate"]
    met = [(m["cost_per_prompt"], float(k)) for k, m in runs.items()
           if m["true_pass_rate"] >= goal - 1e-12]
    if met:
        return min(met)[1]
    return max((m["true_pass_rate"], float(k)) for k, m in runs.items())[1]


def ladder_section(job: BenchmarkJob, catalog: Catalog, fit: CrossFit, table: OutcomeTable,
                   idx: np.ndarray, rate: float) -> dict[str, Any]:
    """Held-out start tier + ladder: each router at its training-chosen lam, the ladder from
    the cheapest model, and (an upper bound) the router's lam frontier read on these prompts."""
    seed = job.settings.seed
    ladder = ladder_metrics(catalog, {"ladder-from-cheapest": np.zeros(len(idx), np.int64)},
                            table, idx, rate, seed)["ladder-from-cheapest"]
    chosen = ladder_metrics(catalog, {n: s[str(rate)][idx] for n, s in
                                      fit.ladder_starts.items()}, table, idx, rate, seed)
    out: dict[str, Any] = {"ladder-from-cheapest": ladder, "chosen": chosen, "frontiers": {},
                           "vs_ladder": {}}
    for name in fit.ladder_starts:
        p = fit.probs[name][idx]
        starts = {str(lam): planned_starts(catalog, p, table.cost[idx], rate, float(lam),
                                           job.policy)
                  for lam in job.settings.ladder_lam_sweep}
        points = ladder_metrics(catalog, starts, table, idx, rate, seed)
        out["frontiers"][name] = [{"lam": float(k), **m} for k, m in points.items()]
        c = np.array([m["cost_per_prompt"] for m in points.values()])
        q = np.array([m["true_pass_rate"] for m in points.values()])
        out["vs_ladder"][name] = {
            "hull_cost_at_ladder_quality": cost_for_quality(c, q, ladder["true_pass_rate"]
                                                            - 1e-12)}
    return out


def single_call_rows(table: OutcomeTable, fit: CrossFit) -> list[str]:
    always = [f"always-{short(m)}" for m in table.models]
    return [RANDOM, *always, "ladder-from-cheapest",
            *(n for n in fit.probs if n != RANDOM), "oracle"]


def run_benchmark(job: BenchmarkJob, spec: BenchmarkSpec, progress: bool = True
                  ) -> dict[str, Any]:
    """Fit, predict and score one benchmark; write its reports; return its metrics."""
    started = time.perf_counter()
    settings = job.settings
    long = load_long_table(data_path(settings.public_data, spec), job.cache_dir)
    table = build_table(spec, long, max_prompts=settings.max_prompts, seed=settings.seed)
    tasks = prompt_features(table.prompts, settings.embedding, job.cache_dir, progress)
    fit = cross_fit(job, spec, table, tasks)
    idx = np.flatnonzero(fit.covered)
    single = {router: with_ci(lambda s, r=router: single_call_row(r, fit, table, s), idx,
                              settings.bootstrap, settings.seed)
              for router in single_call_rows(table, fit)}
    catalog = benchmark_catalog(job, table)
    result = {
        "name": spec.name, "models": table.models, "prompts": len(idx),
        "families": int(table.prompts["family"].nunique()), "dropped": table.dropped,
        "split": spec.split, "grouped": spec.group or None, "published": spec.published or {},
        "operating_targets": [float(s) for s in settings.operating_point.quality_shares],
        "embedding": plain(settings.embedding),
        "collapsed_embeddings": tasks.attrs["collapsed"],
        "premium_score": float(table.score[idx, -1].mean()),
        "cheap_score": float(table.score[idx, 0].mean()),
        "single_call": single,
        "frontiers": {n: frontier(fit.probs[n][idx], table, idx) for n in fit.probs},
        "ladder": {str(rate): ladder_section(job, catalog, fit, table, idx, float(rate))
                   for rate in settings.gate_error_rates},
        "seconds": round(time.perf_counter() - started, 1),
        "fit_seconds": {n: round(v, 1) for n, v in fit.seconds.items()},
    }
    result["folder"] = str(write_benchmark_reports(result, Path(settings.reports_dir)
                                                   / spec.name))
    return result


def frontier(p: np.ndarray, table: OutcomeTable, idx: np.ndarray, points: int = 21
             ) -> list[dict[str, float]]:
    """The held-out (cost, mean score) frontier over the knob, thinned to `points`."""
    spend, quality, share = curve_points(p, table, idx)
    keep = np.unique(np.linspace(0, len(spend) - 1, points).round().astype(int))
    return [{"cost_per_prompt": float(spend[i]), "mean_score": float(quality[i]),
             "premium_share": float(share[i])} for i in keep]
