"""Router metrics with published definitions, and bootstrap confidence intervals.

- PGR / APGR / CPT (RouteLLM, arXiv 2406.18665 section 5): with a weak and a strong model,
  PGR(x) = (r(x) - r_weak) / (r_strong - r_weak) where x is the share of calls sent to the
  strong model; APGR is the area under PGR over x in [0, 1]; CPT(p) is the smallest x whose
  PGR reaches p.
- AIQ (RouterBench, arXiv 2403.12031 section 3): the area under the router's non-decreasing
  convex hull in the (cost, quality) plane, divided by the cost range. Mixing with the
  always-cheapest and always-premium endpoints is always possible, so both are on the hull.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def routing_curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray,
                  n_points: int = 101) -> tuple[np.ndarray, np.ndarray]:
    """Mean of a per-prompt quantity when the highest-scoring share x of prompts goes to the
    strong model, for x on a grid of `n_points`. Returns (x, mean)."""
    order = np.argsort(-np.asarray(scores, dtype=float), kind="stable")
    gain = (np.asarray(strong, float) - np.asarray(weak, float))[order]
    cum_gain = np.concatenate([[0.0], np.cumsum(gain)])
    n = len(gain)
    x = np.linspace(0.0, 1.0, n_points)
    return x, (np.sum(weak) + cum_gain[np.rint(x * n).astype(int)]) / n


def pgr_curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray, n_points: int = 101
              ) -> tuple[np.ndarray, np.ndarray]:
    """Route the highest-scoring share x of prompts to the strong model, for x on a grid.

    `scores`: the router's preference for the strong model per prompt (higher = strong);
    `weak` / `strong`: each prompt's quality under each model. Returns (x, PGR(x)).
    """
    x, perf = routing_curve(scores, weak, strong, n_points)
    r_weak, r_strong = np.mean(weak), np.mean(strong)
    if np.isclose(r_strong, r_weak):
        return x, np.full_like(x, np.nan)
    return x, (perf - r_weak) / (r_strong - r_weak)


def apgr(x: np.ndarray, pgr: np.ndarray) -> float:
    """Average performance gap recovered: area under PGR(x) for x in [0, 1]."""
    return float(np.trapezoid(pgr, x))


def cpt(x: np.ndarray, pgr: np.ndarray, target: float) -> float:
    """Call-performance threshold: the smallest strong-call share whose PGR >= target."""
    reached = np.flatnonzero(pgr >= target - 1e-12)
    return float(x[reached[0]]) if reached.size else float("nan")


def points_pgr(shares: np.ndarray, quality: np.ndarray, r_weak: float, r_strong: float,
               ) -> tuple[np.ndarray, np.ndarray]:
    """PGR curve of a router known only at some operating points (e.g. a knob sweep).

    Points are joined linearly and closed with the endpoints (0, weak) and (1, strong);
    between points, random mixing of two operating points achieves the straight line.
    """
    xs = np.concatenate([[0.0], np.asarray(shares, float), [1.0]])
    rs = np.concatenate([[r_weak], np.asarray(quality, float), [r_strong]])
    order = np.argsort(xs, kind="stable")
    grid = np.linspace(0.0, 1.0, 101)
    r = np.interp(grid, xs[order], rs[order])
    if np.isclose(r_strong, r_weak):
        return grid, np.full_like(grid, np.nan)
    return grid, (r - r_weak) / (r_strong - r_weak)


def upper_hull(costs: np.ndarray, quality: np.ndarray,
               endpoints: tuple[tuple[float, float], ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """The non-decreasing upper convex hull of (cost, quality) points: what mixing the
    router's operating points (and the endpoints) can achieve."""
    pts = list(zip(np.asarray(costs, float), np.asarray(quality, float), strict=True))
    pts = sorted({p for p in [*pts, *endpoints] if np.isfinite(p[0]) and np.isfinite(p[1])})
    hull: list[tuple[float, float]] = []
    for p in pts:  # monotone chain
        while len(hull) >= 2 and _cross(hull[-2], hull[-1], p) >= 0:
            hull.pop()
        hull.append(p)
    return (np.array([h[0] for h in hull]),
            np.maximum.accumulate(np.array([h[1] for h in hull])))


def cost_for_quality(costs: np.ndarray, quality: np.ndarray, target: float,
                     endpoints: tuple[tuple[float, float], ...] = ()) -> float:
    """The least cost at which the router's hull reaches `target` quality (inf if never)."""
    xs, ys = upper_hull(costs, quality, endpoints)
    reached = np.flatnonzero(ys >= target)
    if reached.size == 0:
        return float("inf")
    i = reached[0]
    if i == 0:
        return float(xs[0])
    w = (target - ys[i - 1]) / (ys[i] - ys[i - 1])
    return float(xs[i - 1] + w * (xs[i] - xs[i - 1]))


def aiq(costs: np.ndarray, quality: np.ndarray, c_min: float, c_max: float,
        endpoints: tuple[tuple[float, float], ...] = ()) -> float:
    """RouterBench AIQ on [c_min, c_max]: area under the non-decreasing convex hull / range."""
    xs, ys = upper_hull(costs, quality, endpoints)
    grid = np.linspace(c_min, c_max, 1001)
    curve = np.interp(grid, xs, ys, left=ys[0], right=ys[-1])
    return float(np.trapezoid(curve, grid) / (c_max - c_min)) if c_max > c_min else float(ys[-1])


def _cross(o: tuple[float, float], a: tuple[float, float], b: tuple[float, float]) -> float:
    return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])


def resample_counts(n_units: int, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_units) counts of each unit in a resample with replacement: the one
    bootstrap every interval in this project is built on."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=n_boot)


def percentile_interval(values: Any, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the finite replicate values (NaN when there are none)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(values, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def bootstrap_ci(statistic: Callable[[np.ndarray], np.ndarray], n_units: int, *,
                 n_boot: int = 1000, seed: int = 0, level: float = 0.95
                 ) -> tuple[float, float]:
    """Percentile CI of `statistic(weights)` over units resampled with replacement.

    `statistic` takes a (n_boot, n_units) matrix of resampling counts and returns n_boot
    values, so every replicate is one matrix product (fast for thousands of courses).
    """
    counts = resample_counts(n_units, n_boot, seed).astype(float)
    return percentile_interval(statistic(counts), level)


def savings_ci(policy: np.ndarray, baseline: np.ndarray, **kwargs) -> dict[str, float]:
    """1 - sum(policy) / sum(baseline) per unit (e.g. course cost), with a bootstrap CI."""
    policy = np.asarray(policy, float)
    baseline = np.asarray(baseline, float)
    point = 1.0 - policy.sum() / baseline.sum()
    lo, hi = bootstrap_ci(lambda w: 1.0 - (w @ policy) / (w @ baseline), len(policy), **kwargs)
    return {"value": float(point), "ci_low": lo, "ci_high": hi}
