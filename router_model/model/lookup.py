"""The lookup-table predictor: per (field, tier) first-attempt pass rates from the logs.

A simple baseline with the learned model's interface, so the same planner, the same knob
calibration and the same replay can be run on it: whatever the learned router claims, it
claims against this table fed through identical machinery.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd


class LookupTable:
    """`table[field][tier]` -> pass rate; unknown fields take each tier's mean rate."""

    def __init__(self, table: Mapping[str, Mapping[str, float]], ladder: Sequence[str]) -> None:
        self.ladder = list(ladder)
        self.rates = pd.DataFrame(table).T.reindex(columns=self.ladder)
        self.fallback = self.rates.mean(axis=0).fillna(0.5)

    def __call__(self, tasks: pd.DataFrame) -> np.ndarray:
        """(n, L) pass probabilities for a frame of tasks with a `field` column."""
        rows = self.rates.reindex(tasks["field"].astype(str).to_numpy())
        return rows.fillna(self.fallback).to_numpy(dtype=float)
