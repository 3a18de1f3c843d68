"""The router contract: one small interface, and a registry that builds routers by name.

A router maps a frame of tasks to a start tier per task (an index into the ladder, cheap ->
premium); the ladder does the rest. Routers that learn implement `fit`. The registry is the
config group `conf/routers`: each entry names a class (`_target_`) and its own settings, the
way RouteLLM's controller builds `ROUTER_CLS[name](**config[name])`. Adding a router is one
class plus one entry there; `always-<tier>` exists for every ladder tier without an entry.
Evaluation, the public benchmarks and serving all build their routers here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import Catalog
from router_model.contract import Decision
from router_model.decide.policy import RoutingPolicy
from router_model.decide.replay import OutcomeCube, replay
from router_model.model.features import flatten_task


@dataclass
class RouterContext:
    """What every router may use: the catalog, the served policy (learned or rules) and a
    seed for anything random."""

    catalog: Catalog
    policy: RoutingPolicy
    seed: int = 0


class Router(ABC):
    """Start tiers for a frame of tasks (flat columns, as `tasks.parquet` holds them)."""

    name: str = ""
    sees_test_outcomes: bool = False  # only the oracle: it is fitted on the routed tasks

    def __init__(self, context: RouterContext) -> None:
        self.context = context

    def fit(self, tasks: pd.DataFrame, outcomes: OutcomeCube | None = None) -> Router:
        """Learn from training tasks (and their outcomes); fixed routers ignore this."""
        return self

    @abstractmethod
    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        """Ladder index of the start tier for each task."""

    def decide(self, tasks: Sequence[Mapping[str, Any]]) -> list[Decision]:
        """Serving: one decision record per request task, this router's start recorded by
        the served policy (its probabilities shown where it has a model)."""
        frame = pd.DataFrame([flatten_task(t) for t in tasks])
        return self.context.policy.decide_many(tasks, starts=self.start_tiers(frame),
                                               router=self.name)


class AlwaysTier(Router):
    """Start every task on one tier: `cheapest` is the seed's ladder with no routing."""

    def __init__(self, context: RouterContext, tier: str) -> None:
        super().__init__(context)
        ladder = context.catalog.ladder
        named = {"cheapest": ladder[0], "premium": ladder[-1]}
        self.tier = named.get(tier, tier)
        if self.tier not in ladder:
            raise ValueError(f"router setting tier={tier!r} is not a ladder tier {ladder}")

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        return np.full(len(tasks), self.context.catalog.ladder.index(self.tier), np.int64)


class RandomStart(Router):
    def __init__(self, context: RouterContext, seed: int | None = None) -> None:
        super().__init__(context)
        self.seed = context.seed if seed is None else seed

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        n_tiers = len(self.context.catalog.ladder)
        return np.random.default_rng(self.seed).integers(0, n_tiers, len(tasks))


class StaticAssignment(Router):
    """The seed's static field assignment (metadata on premium, lessons on the mid tier)."""

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        return self.context.policy.rules.static_starts(tasks["field"])


class LearnedStart(Router):
    """The product: the calibrated model's start tier under the policy's settings. Served,
    it falls back to the rules without a model (and each decision says why); replayed
    offline, it needs one."""

    def __init__(self, context: RouterContext, **settings: float) -> None:
        super().__init__(context)
        policy = context.policy
        self.policy = policy.with_settings(**settings) if settings else policy

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        if not self.policy.learned:
            raise ValueError(f"the learned router needs a model ({self.policy.fallback_reason}"
                             "); run router-train first")
        return self.policy.start_tiers(tasks, quantities=RoutingPolicy.DECISION_QUANTITIES
                                       )["start"]

    def decide(self, tasks: Sequence[Mapping[str, Any]]) -> list[Decision]:
        return self.policy.decide_many(tasks)


class PolicyVariant(Router):
    """A policy the artifact carries a calibrated dial for (router_model.decide.policy's
    POLICY_VARIANTS): the lookup table through the same planner, the lookup table's
    threshold rule, or the learned model under the older threshold rule."""

    def __init__(self, context: RouterContext, variant: str, **settings: Any) -> None:
        super().__init__(context)
        if not context.policy.learned:
            raise ValueError(f"router {variant!r} needs a trained artifact "
                             f"({context.policy.fallback_reason}); run router-train first")
        self.policy = context.policy.variant(variant, **settings)

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        return self.policy.start_tiers(tasks, quantities=RoutingPolicy.DECISION_QUANTITIES
                                       )["start"]


class Oracle(Router):
    """Knows every outcome: per task the start with the best true result, then the lowest
    cost. `fit` must see the outcomes of the very tasks it routes: an upper bound, not a
    router."""

    sees_test_outcomes = True
    outcomes_: OutcomeCube | None = None

    def fit(self, tasks: pd.DataFrame, outcomes: OutcomeCube | None = None) -> Oracle:
        if outcomes is None:
            raise ValueError("the oracle needs the outcome table of the tasks it routes")
        self.outcomes_ = outcomes
        return self

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        cube, catalog = self.outcomes_, self.context.catalog
        if cube is None or cube.n_tasks != len(tasks):
            raise ValueError("fit the oracle on the outcomes of these tasks first")
        runs = [replay(cube, np.full(cube.n_tasks, s), catalog)
                for s in range(len(catalog.ladder))]
        passed = np.column_stack([r.true_pass for r in runs])
        cost = np.column_stack([r.cost for r in runs])
        return np.argmin(np.where(passed, 0.0, 1e9) + cost, axis=1)


def registry_entries(registry: Mapping[str, Any], catalog: Catalog) -> dict[str, Any]:
    """The configured entries plus an `always-<tier>` entry for every ladder tier."""
    always = {f"always-{t}": {"_target_": f"{__name__}.AlwaysTier", "tier": t}
              for t in catalog.ladder}
    return {**always, **dict(registry)}


def build_router(name: str, registry: Mapping[str, Any], context: RouterContext,
                 **overrides: Any) -> Router:
    """The router called `name`, built from its registry entry (plus `overrides`)."""
    from hydra.utils import instantiate

    entries = registry_entries(registry, context.catalog)
    if name not in entries:
        raise KeyError(f"unknown router {name!r}; registered: {sorted(entries)} "
                       "(add an entry with _target_ to conf/routers)")
    router = instantiate(entries[name], _partial_=True, _recursive_=False, **overrides)(context)
    router.name = name
    return router
