"""Operating points chosen on training prompts only, then applied to held-out prompts.

A router's knob is a threshold: with two models, call the strong one when the predicted gain
P(strong passes) - P(weak passes) reaches it; with more, start at the cheapest model whose
P(pass) reaches it. The threshold is picked on out-of-fold predictions for the *training*
prompts (cross-fitted inside the training fold): the cheapest threshold whose training
quality reaches the target share of always-premium's training quality. The held-out
prompts are then routed with that threshold and their outcome is what is reported.
"""

from __future__ import annotations

import numpy as np


def route(p: np.ndarray, threshold: float) -> np.ndarray:
    """Start (single call) index per prompt at a knob value."""
    if p.shape[1] == 2:
        return (p[:, 1] - p[:, 0] >= threshold).astype(np.int64)
    ok = p >= threshold
    ok[:, -1] = True
    return np.argmax(ok, axis=1)


def candidate_thresholds(p: np.ndarray) -> np.ndarray:
    """Knob values spanning every distinct routing of `p` (quantiles plus both extremes)."""
    knob = p[:, 1] - p[:, 0] if p.shape[1] == 2 else p.ravel()
    inner = np.quantile(knob, np.linspace(0, 1, 201)) if len(knob) else np.array([])
    return np.unique(np.concatenate([[-np.inf, np.inf], inner]))


def choose_threshold(p: np.ndarray, score: np.ndarray, cost: np.ndarray, share: float
                     ) -> float:
    """The cheapest knob whose mean score on these (training) prompts reaches `share` x the
    premium model's; the best-scoring knob when none does."""
    rows = np.arange(len(p))
    target = share * score[:, -1].mean()
    best: tuple[float, float] | None = None
    fallback: tuple[float, float] = (-np.inf, -np.inf)
    for tau in candidate_thresholds(p):
        start = route(p, tau)
        quality, spend = score[rows, start].mean(), cost[rows, start].mean()
        if quality >= target - 1e-12 and (best is None or spend < best[0]):
            best = (spend, tau)
        fallback = max(fallback, (quality, tau))
    return float(best[1] if best is not None else fallback[1])


def oracle_starts(score: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Per prompt, the cheapest model with the best score: an upper bound, not a router."""
    best = score >= score.max(axis=1, keepdims=True) - 1e-12
    return np.argmin(np.where(best, cost, np.inf), axis=1)


def ladder_from_cheapest(passed: np.ndarray, cost: np.ndarray) -> tuple[np.ndarray,
                                                                        np.ndarray]:
    """Multi-call baseline with a perfect gate: try models cheap -> premium until one passes.
    Returns the final model per prompt and the summed cost of the calls made."""
    stop = passed.copy()
    stop[:, -1] = True
    final = np.argmax(stop, axis=1)
    spent = np.cumsum(cost, axis=1)[np.arange(len(cost)), final]
    return final, spent
