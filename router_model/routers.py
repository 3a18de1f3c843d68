"""The router contract: one small interface every router implements, and a registry by name.

A router maps a frame of tasks to a start tier per task (an index into the ladder, cheap ->
premium). The ladder does the rest. Routers that learn implement `fit`; the others return
themselves. Offline evaluation and the public benchmarks look routers up by name here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from router_model.policy import RoutingPolicy

ROUTERS: dict[str, type[Router]] = {}


def register(cls: type[Router]) -> type[Router]:
    if cls.name in ROUTERS:
        raise ValueError(f"router name {cls.name!r} is registered twice")
    ROUTERS[cls.name] = cls
    return cls


def make_router(name: str, **kwargs: Any) -> Router:
    if name not in ROUTERS:
        raise KeyError(f"unknown router {name!r}; registered: {sorted(ROUTERS)}")
    return ROUTERS[name](**kwargs)


class Router(ABC):
    name: ClassVar[str]

    def fit(self, tasks: pd.DataFrame, outcomes: Any = None) -> Router:
        """Learn from training tasks (and their outcomes); fixed routers ignore this."""
        return self

    @abstractmethod
    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        """Ladder index of the start tier for each task."""


@register
class AlwaysCheapest(Router):
    """The ladder from the cheapest tier: the seed's progressive escalation, no routing."""

    name = "cheapest"

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        return np.zeros(len(tasks), dtype=np.int64)


@register
class AlwaysPremium(Router):
    name = "always-premium"

    def __init__(self, n_tiers: int) -> None:
        self.n_tiers = n_tiers

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        return np.full(len(tasks), self.n_tiers - 1, dtype=np.int64)


@register
class RandomStart(Router):
    name = "random"

    def __init__(self, n_tiers: int, seed: int = 0) -> None:
        self.n_tiers = n_tiers
        self.seed = seed

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        return np.random.default_rng(self.seed).integers(0, self.n_tiers, len(tasks))


@register
class StaticAssignment(Router):
    """The seed's static field assignment (metadata on premium, lessons on the mid tier)."""

    name = "static"

    def __init__(self, policy: RoutingPolicy) -> None:
        self.rules = RoutingPolicy(policy.catalog, policy.settings)  # no model: static starts

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        return self.rules.start_tiers(tasks)["start"]


@register
class LearnedStart(Router):
    """The product: the calibrated model's expected-cost start tier under the knob."""

    name = "learned"

    def __init__(self, policy: RoutingPolicy) -> None:
        if not policy.learned:
            raise ValueError(f"the learned router needs a model ({policy.fallback_reason}); "
                             "run router-train first")
        self.policy = policy

    def start_tiers(self, tasks: pd.DataFrame) -> np.ndarray:
        return self.policy.start_tiers(tasks)["start"]
