"""Off-policy estimates of a new routing policy from bandit logs alone.

The logs hold, for each task, the start tier the logging policy chose and its propensity. A
new policy's value is estimated with inverse propensity scoring (IPS), self-normalised IPS
(SNIPS) and doubly robust (DR) estimators, with bootstrap confidence intervals over courses.
Without exploration (propensity 1 everywhere) none of them can see an alternative start, so
such logs are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from router_model.config import Catalog
from training.evaluation.routing_metrics import bootstrap_ci
from training.propensity import doubly_robust, inverse_propensity_weights


class NoExplorationError(ValueError):
    """The logs never explored, so no other policy can be evaluated from them."""


def logged_bandit(attempts: pd.DataFrame, catalog: Catalog) -> pd.DataFrame:
    """One row per task: logged start tier, its propensity, the chain's cost and outcome."""
    a = attempts.sort_values(["task_id", "attempt"], kind="stable")
    a = a.assign(total_cost=a["cost_usd"] + catalog.gate_cost(a["completion_tokens"]))
    grouped = a.groupby("task_id", sort=False)
    first = grouped.head(1).set_index("task_id")
    last = grouped.tail(1).set_index("task_id")
    bandit = first.drop(columns=["cost_usd", "total_cost", "passed"]).assign(
        start_index=first["tier"].map({t: i for i, t in enumerate(catalog.tier_names)}),
        cost=grouped["total_cost"].sum(),
        passed=last["passed"].astype(float),
        calls=grouped.size(),
        expected_output_tokens=first["completion_tokens"].astype(float),
    )
    return bandit.reset_index()


def explored_share(bandit: pd.DataFrame) -> float:
    """Share of logged tasks whose start tier was drawn at random (0 for empty logs)."""
    return float((bandit["start_source"] == "exploration").mean()) if len(bandit) else 0.0


def check_exploration(bandit: pd.DataFrame) -> None:
    explored = (bandit["propensity"] < 1.0 - 1e-9).any()
    if not explored:
        raise NoExplorationError(
            "these logs have no exploration (propensity 1 on every decision), so they say "
            "nothing about start tiers the logging policy never chose. Log with exploration "
            "(router.policy.epsilon > 0 when serving, simulate.epsilon > 0 in the simulator) "
            "or evaluate by exact replay on an outcome table instead.")


def crossfit_reward_model(bandit: pd.DataFrame, n_tiers: int, rewards: tuple[str, ...],
                          folds: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Each reward predicted for every start tier by gradient-boosted trees fitted on the
    other folds of courses only: the doubly robust estimator's reward model never sees the
    task it corrects (cross-fitting), unlike the planner fitted on these same logs."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.model_selection import GroupKFold

    numeric = [c for c in bandit.columns if c.startswith("analysis.")
               and pd.api.types.is_numeric_dtype(bandit[c])]
    base = pd.concat([pd.get_dummies(bandit["field"].astype(str), prefix="field", dtype=float),
                      bandit[["prompt_tokens", "context_tokens", "expected_output_tokens",
                              *numeric]].astype(float)], axis=1).to_numpy()

    def with_tier(tier: np.ndarray) -> np.ndarray:
        return np.column_stack([base, np.eye(n_tiers)[tier]])

    logged = bandit["start_index"].to_numpy(np.int64)
    out = {name: np.zeros((len(bandit), n_tiers)) for name in rewards}
    groups = bandit["course_id"].to_numpy()
    for fit_rows, held in GroupKFold(n_splits=folds).split(base, groups=groups):
        X = with_tier(logged)[fit_rows]
        for name in rewards:
            model = HistGradientBoostingRegressor(max_iter=150, random_state=seed).fit(
                X, bandit[name].to_numpy(float)[fit_rows])
            for t in range(n_tiers):
                out[name][held, t] = model.predict(with_tier(np.full(len(base), t))[held])
    return out


def with_overflow(bandit: pd.DataFrame, catalog: Catalog, starts: np.ndarray) -> np.ndarray:
    """Tasks the logs sent to the overflow tier go there under any policy (the ladder does)."""
    overflow = catalog.tier_index(catalog.gate.overflow_tier)
    return np.where(bandit["start_index"].to_numpy() == overflow, overflow, starts)


def dr_terms(bandit: pd.DataFrame, target: np.ndarray, q: np.ndarray, reward: str
             ) -> np.ndarray:
    """`doubly_robust` of the bandit frame's `reward` column under `target` start indices."""
    return doubly_robust(q, bandit[reward].to_numpy(float), np.asarray(target, dtype=np.int64),
                         bandit["start_index"].to_numpy(np.int64),
                         bandit["propensity"].to_numpy(float))


def estimate(bandit: pd.DataFrame, target: np.ndarray, reward_model: dict[str, np.ndarray],
             *, n_boot: int = 1000, seed: int = 0) -> dict[str, dict[str, Any]]:
    """IPS, SNIPS and DR estimates of each reward under the target start tiers.

    `target`: the new policy's start index per task (catalog.tier_names order).
    `reward_model`: per reward name, a (n, T) matrix of its predicted value for each start.
    """
    check_exploration(bandit)
    logged = bandit["start_index"].to_numpy(np.int64)
    target = np.asarray(target, dtype=np.int64)
    w = inverse_propensity_weights(target, logged, bandit["propensity"].to_numpy(float))
    course_codes, course_index = np.unique(bandit["course_id"].to_numpy(), return_inverse=True)
    n_courses = len(course_codes)

    def per_course(values: np.ndarray) -> np.ndarray:
        return np.bincount(course_index, weights=values, minlength=n_courses)

    tasks_c = per_course(np.ones(len(bandit)))
    w_c = per_course(w)
    out: dict[str, dict[str, Any]] = {}
    for name, q in reward_model.items():
        r = bandit[name].to_numpy(float)
        wr_c = per_course(w * r)
        dr_c = per_course(dr_terms(bandit, target, q, name))
        estimators = {
            "ips": lambda c, wr_c=wr_c: (c @ wr_c) / (c @ tasks_c),
            "snips": lambda c, wr_c=wr_c: (c @ wr_c) / (c @ w_c),
            "dr": lambda c, dr_c=dr_c: (c @ dr_c) / (c @ tasks_c),
        }
        ones = np.ones((1, n_courses))
        out[name] = {}
        for est, fn in estimators.items():
            lo, hi = bootstrap_ci(fn, n_courses, n_boot=n_boot, seed=seed)
            out[name][est] = {"value": float(fn(ones)[0]), "ci_low": lo, "ci_high": hi}
    out["effective_sample_size"] = {"value": float(w.sum() ** 2 / max((w ** 2).sum(), 1e-12))}
    out["matched_share"] = {"value": float((target == logged).mean())}
    return out
