"""The inverse-propensity weight and the doubly robust term, written once.

Off-policy evaluation (IPS, SNIPS, DR), router-monitor's policy values, router-promote's
logged evidence and the Learn-then-Test guarantee all weigh logged outcomes by the same
1 / propensity and correct a reward model the same way; they import it from here.
"""

from __future__ import annotations

import numpy as np


def inverse_propensity_weights(target: np.ndarray, logged: np.ndarray,
                               propensity: np.ndarray) -> np.ndarray:
    """Per task, 1 / propensity where the target policy starts where the logs did, else 0:
    the one weight every estimator here (IPS, SNIPS, DR) and the guarantee's uses."""
    return (np.asarray(target) == np.asarray(logged)) / np.asarray(propensity, float)


def doubly_robust(q: np.ndarray, reward: np.ndarray, target: np.ndarray, logged: np.ndarray,
                  propensity: np.ndarray) -> np.ndarray:
    """Per task, the doubly robust term whose mean estimates the reward under `target`: the
    reward model `q` (n, T) at the target start, corrected by the logged reward where the
    logs took that start (weighted by 1 / propensity)."""
    rows = np.arange(len(reward))
    w = inverse_propensity_weights(target, logged, propensity)
    return q[rows, target] + w * (reward - q[rows, logged])
