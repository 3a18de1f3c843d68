"""Escalation chains inside an attempt log, located with integer codes instead of text.

The examples (training/dataset.py) and the drift reference (training/reference.py) both read
every chain in (task, attempt) order. Done with pandas on a million text ids, that meant
sorting, filtering and grouping strings a dozen times (most of the time it took to read 1M
rows). Here each chain step is found once, as row positions, and callers take their
columns once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from router_model.contract import GATE_VERDICTS

# What an attempt's outcome says, not what the task is: left out of examples and task rows.
OUTCOME_COLUMNS = ("passed", "similarity", "schema_valid", "cost_usd", "latency_ms")


@dataclass(frozen=True)
class Chains:
    """The attempts of a log grouped into chains (one per task), in (task id, attempt) order.

    `order` lists the rows of the log in that order (stable: ties keep the log's order);
    every other array is aligned with it. Chains are numbered in task-id order.
    """

    order: np.ndarray  # row positions of the log, sorted by (task id, attempt)
    chain: np.ndarray  # chain number of each sorted row
    first: np.ndarray  # sorted-row index of each chain's first attempt
    tier: np.ndarray  # tier code of each sorted row
    tier_names: np.ndarray  # tier code -> tier name
    judged: np.ndarray  # each sorted row reached a gate verdict

    @classmethod
    def of(cls, attempts: pd.DataFrame) -> Chains:
        task = pd.factorize(attempts["task_id"], sort=True)[0]
        order = np.lexsort((attempts["attempt"].to_numpy(), task))  # stable, task major
        task = task[order]
        new = np.ones(len(task), dtype=bool)
        new[1:] = task[1:] != task[:-1]
        tier, tier_names = pd.factorize(attempts["tier"].to_numpy()[order], sort=True)
        judged = attempts["error_kind"].isin(GATE_VERDICTS).to_numpy()[order]
        return cls(order=order, chain=np.cumsum(new) - 1, first=np.flatnonzero(new),
                   tier=tier, tier_names=np.asarray(tier_names), judged=judged)

    @property
    def n_chains(self) -> int:
        return len(self.first)

    @property
    def last(self) -> np.ndarray:
        """Sorted-row index of each chain's last attempt."""
        return np.append(self.first[1:], len(self.order))[:self.n_chains] - 1

    def first_judged(self, by_tier: bool = False) -> np.ndarray:
        """Sorted-row indices of the first judged attempt of each chain (or of each tier a
        chain tried, `by_tier`), in (task, attempt) order."""
        return self.first_of(np.flatnonzero(self.judged), by_tier)

    def first_of(self, rows: np.ndarray, by_tier: bool = False) -> np.ndarray:
        """The first of `rows` (ascending sorted-row indices) in each chain, or in each
        (chain, tier) with `by_tier`."""
        key = self.chain[rows]
        if by_tier:
            key = key * len(self.tier_names) + self.tier[rows]
        return rows[np.sort(np.unique(key, return_index=True)[1])]

    def per_chain(self, rows: np.ndarray, values: np.ndarray, fill: float = np.nan
                  ) -> np.ndarray:
        """`values` (one per sorted row in `rows`, at most one row per chain) spread over
        all chains; chains without a row get `fill`."""
        out = np.full(self.n_chains, fill, dtype=float)
        out[self.chain[rows]] = values
        return out

    def start_tier(self) -> np.ndarray:
        """Tier code each sorted row's chain started on."""
        return self.tier[self.first][self.chain]

    def tiers_tried(self) -> np.ndarray:
        """How many distinct tiers each chain tried."""
        tried = np.zeros((self.n_chains, len(self.tier_names)), dtype=bool)
        tried[self.chain, self.tier] = True
        return tried.sum(axis=1)

    def retries(self) -> np.ndarray:
        """Sorted-row indices of judged attempts after their tier's first verdict in the
        chain: the same-tier retries."""
        retry = self.judged.copy()
        retry[self.first_judged(by_tier=True)] = False
        return np.flatnonzero(retry)

    def total(self, values: np.ndarray) -> np.ndarray:
        """Sum over each chain of `values` (one per sorted row)."""
        return np.bincount(self.chain, weights=values, minlength=self.n_chains)
