"""The world's random draws: faster than numpy's per-draw paths, and bit for bit the same.

The world draws everything from one seeded generator in a fixed order, so a faster draw must
take the same values from the generator and leave it in the same state.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def weighted_choice(rng: np.random.Generator, table: Mapping[str, list[float]], size: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """`size` names drawn by share from `table` (name: [share, offset]), with their offsets."""
    names = list(table)
    shares = np.array([float(table[k][0]) for k in names])
    offsets = np.array([float(table[k][1]) for k in names])
    idx = rng.choice(len(names), size=size, p=shares / shares.sum())
    return np.array(names, dtype=object)[idx], offsets[idx]


def uniform_ints(rng: np.random.Generator, bounds: Any, size: int) -> np.ndarray:
    """Integers drawn uniformly from [low, high], both included."""
    lo, hi = int(bounds[0]), int(bounds[1])
    return rng.integers(lo, hi + 1, size=size)


def summed_uniform_ints(rng: np.random.Generator, bounds: Any, counts: np.ndarray
                        ) -> np.ndarray:
    """Row i: the sum of counts[i] uniform integer draws (e.g. exercises over a section's
    lessons). One draw of counts.sum() integers takes the same values from the generator, and
    leaves it in the same state, as one draw per row in row order: the world is unchanged,
    without a Python loop over rows."""
    totals = np.concatenate(([0], np.cumsum(uniform_ints(rng, bounds, int(counts.sum())))))
    ends = np.cumsum(counts)
    return totals[ends] - totals[ends - counts]


def scaled_normal(z: np.ndarray, sd: float, out: np.ndarray | None = None) -> np.ndarray:
    """Standard normal draws `z` as numpy's normal(0, sd) turns them into values, bit for bit:
    0.0 + sd * z (the added loc makes -0.0 into 0.0)."""
    out = np.multiply(z, sd, out=out)
    out += 0.0
    return out


def fast_normal(rng: np.random.Generator, sd: float, size: Any) -> np.ndarray:
    """rng.normal(0, sd, size) bit for bit, at half the cost: numpy's normal with scalar
    arguments takes a per-draw path, standard_normal a filling one."""
    draws = rng.standard_normal(size)
    return scaled_normal(draws, sd, out=draws)
