"""What a start needs no model for: the seed's static tiers, context windows, exploration.

The log world model, the generator and the policy all start tasks from here, so none of
them needs the model, the planner or the artifact code to do what the seed's rules do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import Catalog, check

RULES_VERSION = "rules-static-v1"


@dataclass(frozen=True)
class Fields:
    """Each task's field as a code into the distinct fields: a per-field table is then read
    once per distinct field (many tasks hold a few dozen), not once per task."""

    codes: np.ndarray
    names: list[Any]

    @classmethod
    def of(cls, fields: Fields | pd.Series | Sequence[str]) -> Fields:
        """From a frame's column (compared as text, missing stays missing) or field names."""
        if isinstance(fields, Fields):
            return fields
        if isinstance(fields, pd.Series):
            codes, names = pd.factorize(fields.astype(str), use_na_sentinel=False)
            return cls(codes, list(names))
        index: dict[Any, int] = {}
        codes = [index.setdefault(f, len(index)) for f in fields]
        return cls(np.array(codes, dtype=np.intp), list(index))

    def lookup(self, table: Mapping[str, Any], default: float) -> np.ndarray:
        """Per task, the field's value in `table` (else `default`), as floats."""
        return np.array([table.get(f, default) for f in self.names], dtype=float)[self.codes]


class StaticRules:
    """The seed's rules for a catalog: each field's static tier, and which tiers fit."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.ladder = catalog.ladder
        # Ladder index of each field's static tier (fields whose static tier is off the
        # ladder are left to the cheapest tier, as unknown fields are).
        self.static = {name: catalog.ladder.index(f.static_tier)
                       for name, f in catalog.fields.items() if f.static_tier in catalog.ladder}

    def static_starts(self, fields: Fields | pd.Series | Sequence[str]) -> np.ndarray:
        """The seed's static assignment as ladder indices (cheapest for unknown fields)."""
        return Fields.of(fields).lookup(self.static, 0).astype(np.int64)

    def eligible(self, prompt_total: Any, output: Any) -> list[Any]:
        """Per ladder tier: does the task fit the tier's context window? (floats or arrays)"""
        return [prompt_total + output <= self.catalog.tiers[t].context_window
                for t in self.ladder]


def explore(greedy: np.ndarray, eligible: np.ndarray, epsilon: float,
            rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Epsilon-greedy start tiers over each task's eligible tiers.

    Returns (start, explored?, propensity of the start). The one definition of a propensity:
    the log world model, the generator and serving all draw here. Tasks with one eligible
    tier never explore.
    """
    check(0.0 <= epsilon <= 1.0, "epsilon", epsilon, "must be in [0, 1]")
    greedy = np.asarray(greedy, dtype=np.int64)
    eligible = np.asarray(eligible, dtype=bool)
    n_eligible = eligible.sum(axis=1)
    can = n_eligible > 1
    explored = (rng.random(greedy.size) < epsilon) & can
    # Every task draws from a range of at least two, so one task's eligibility never shifts
    # the random stream of the tasks after it (a range of one draws nothing).
    pick = rng.integers(0, np.where(can, n_eligible, max(eligible.shape[1], 2)))
    random_tier = np.argmax(np.cumsum(eligible, axis=1) > pick[:, None], axis=1)
    start = np.where(explored, random_tier, greedy)
    propensity = np.where(can, (1.0 - epsilon) * (start == greedy)
                          + epsilon / np.maximum(n_eligible, 1), 1.0)
    return start, explored, propensity
