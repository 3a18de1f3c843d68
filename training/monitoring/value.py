"""What each policy would be worth on recent traffic, from the logged propensities alone.

The serving policy and the simple baselines are scored by SNIPS and by a cross-fitted doubly
robust estimator on the same recent logs. With too little exploration these estimates cannot
be trusted, and the report says so rather than printing confident numbers.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import Catalog
from training.evaluation.off_policy import (
    NoExplorationError,
    crossfit_reward_model,
    estimate,
    explored_share,
    logged_bandit,
    with_overflow,
)


def policy_values(attempts: pd.DataFrame, catalog: Catalog,
                  policies: Mapping[str, Any], *, min_exploration: float, min_ess: float,
                  n_boot: int, seed: int) -> dict[str, Any]:
    """SNIPS and DR (cost, gate pass) per policy; `policies` maps a name to a callable
    giving start indices for a bandit frame."""
    bandit = logged_bandit(attempts, catalog)
    explored = explored_share(bandit)
    out: dict[str, Any] = {"tasks": len(bandit), "explored_share": explored, "policies": {},
                           "warnings": []}
    if explored == 0.0:
        out["warnings"].append(str(NoExplorationError.__doc__))
        return out
    reward_model = crossfit_reward_model(bandit, len(catalog.tier_names), ("cost", "passed"),
                                         seed=seed)
    for name, starts_for in policies.items():
        target = with_overflow(bandit, catalog, np.asarray(starts_for(bandit), np.int64))
        est = estimate(bandit, target, reward_model, n_boot=n_boot, seed=seed)
        out["policies"][name] = {k: est[k] for k in ("cost", "passed")} | {
            "effective_sample_size": est["effective_sample_size"]["value"],
            "matched_share": est["matched_share"]["value"]}
        if est["effective_sample_size"]["value"] < min_ess:
            out["warnings"].append(
                f"policy {name}: effective sample size {est['effective_sample_size']['value']:.0f}"
                f" < monitor.min_ess={min_ess:g}; its estimates are not to be trusted")
    if explored < min_exploration:
        out["warnings"].append(
            f"only {explored:.1%} of recent tasks explored (< monitor.min_exploration="
            f"{min_exploration:g}); off-policy estimates of other policies are unreliable. "
            "Raise router.policy.epsilon when serving")
    return out
