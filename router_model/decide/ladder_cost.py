"""The ladder's cost model: what running the rule ladder from each start tier is expected
to cost, take and deliver, given each tier's first-attempt pass probability.

Attempts at a tier pass with the model's probability on the first try and with the tier's
logged retry pass rate afterwards; a failure is a schema error (escalate), a severe miss
(jump to premium) or a near miss (retry) in the proportions the logs show. The compiled
planner (`_planner.pyx`) restates these formulas in C; its tests hold them bit-equal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import chain
from typing import Any

import numpy as np

from router_model.config import Catalog
from router_model.decide.settings import PolicySettings


class LadderCostModel:
    """Expected cost, calls and pass probability of running the ladder from each start tier.

    Attempts at a tier are modelled as passing with the model's probability on the first try
    and with the tier's logged retry pass rate afterwards; a failure is a schema error, a
    severe miss or a near miss in the proportions seen in the logs.
    """

    def __init__(self, catalog: Catalog, settings: PolicySettings,
                 ladder_stats: Mapping[str, Any] | None = None) -> None:
        self.catalog = catalog
        self.settings = settings
        stats = (ladder_stats or {}).get("tiers", {})
        self.schema_share = np.array([stats.get(t, {}).get("schema_share",
                                      settings.default_schema_share) for t in catalog.ladder])
        self.severe_share = np.array([stats.get(t, {}).get("severe_share",
                                      settings.default_severe_share) for t in catalog.ladder])
        retry = [stats.get(t, {}).get("retry_pass_rate", np.nan) for t in catalog.ladder]
        self.retry_pass = np.where(np.isnan(retry), settings.default_retry_pass_rate, retry)
        # Per tier (schema share, severe share, near-miss share, retry pass rate) as Python
        # floats: the one-task programme runs on floats, where numpy scalars cost far more.
        self.tier_constants = [
            (float(fs), float(fv), 1.0 - float(fs) - float(fv), float(rp)) for fs, fv, rp
            in zip(self.schema_share, self.severe_share, self.retry_pass, strict=True)]

    def attempt_cost(self, prompt_total: Any, output: Any) -> tuple[list[Any], list[Any]]:
        """Per-attempt USD (call + gate + price of latency) and seconds, one entry per tier.

        Works on floats (one task) and on arrays (many tasks) alike.
        """
        gate = self.catalog.gate_cost(output)
        gate_s = self.catalog.gate_latency_s()
        price = self.settings.latency_price_per_s
        cost, latency = [], []
        for name in self.catalog.ladder:
            tier = self.catalog.tiers[name]
            seconds = tier.call_latency_s(output) + gate_s
            latency.append(seconds)
            cost.append(tier.call_cost(prompt_total, output) + gate + price * seconds)
        return cost, latency

    QUANTITIES = ("cost", "latency_s", "calls", "premium_calls", "pass", "bad")

    def expectations(self, p_first: Sequence[Any], cost: Sequence[Any],
                     latency: Sequence[Any], false_pass: Sequence[Any] | None = None,
                     quantities: Sequence[str] = QUANTITIES) -> dict[str, list[Any]]:
        """Dynamic programme over (tier, retry) states, from each start tier.

        Inputs and outputs are one entry per ladder tier, each a float (one task: plain
        Python arithmetic, a few microseconds) or an array (many tasks: vectorised).
        `false_pass[t]`: P(truly failing | the gate accepted) at tier t. "bad" is the chance
        that the final output is truly failing: accepted wrongly, or flagged for review.
        `quantities`: which of QUANTITIES to compute (a decision needs cost and bad only).
        """
        L = len(p_first)
        per_attempt = {"cost": cost, "latency_s": latency, "calls": [1.0] * L,
                       "premium_calls": [0.0] * (L - 1) + [1.0], "pass": [1.0] * L,
                       "bad": [0.0] * L if false_pass is None else false_pass}
        flag = [1.0 if q == "bad" else 0.0 for q in quantities]
        on_pass = [1.0 if q in ("pass", "bad") else 0.0 for q in quantities]
        shapes = [x.shape for x in chain(p_first, cost, latency, false_pass or ())
                  if isinstance(x, np.ndarray) and x.ndim]
        if not shapes:  # one task: one programme per quantity on plain floats
            return {q: self._programme(p_first, per_attempt[q], flag[i], on_pass[i])
                    for i, q in enumerate(quantities)}
        # Many tasks: all quantities in one programme, each row of a (quantities, tasks)
        # array doing exactly the arithmetic of its own programme.
        stacked = np.empty((L, len(quantities), *np.broadcast_shapes(*shapes)))
        for i, q in enumerate(quantities):
            for t in range(L):
                stacked[t, i] = per_attempt[q][t]
        values = self._programme(p_first, list(stacked), np.array(flag)[:, None],
                                 np.array(on_pass)[:, None])
        return {q: [v[i] for v in values] for i, q in enumerate(quantities)}

    def _programme(self, p_first: Sequence[Any], now: Sequence[Any], flag: Any, on_pass: Any
                   ) -> list[Any]:
        """A quantity's values from each start tier. An attempt adds `now[t]`, times its
        pass probability when `on_pass` is 1 ("pass" and "bad" count only on a pass; with 0
        the factor is exactly 1.0); a flagged field at the top of the ladder adds `flag`.
        Tiers are solved top down, each tier's retry states from the last retry back, so
        only each tier's first-attempt value is kept. Floats for one quantity of one task,
        or arrays with one row per quantity."""
        R = self.catalog.gate.retries_per_tier
        top = len(p_first) - 1
        first: list[Any] = [0.0] * (top + 1)  # the value of a first attempt at each tier
        for t in range(top, -1, -1):
            fs, fv, fm, retry_pass = self.tier_constants[t]
            escalate = flag if t == top else first[t + 1]
            # A failed attempt below the top: a schema error escalates, a severe miss jumps
            # to the top, a near miss retries (fm x the next state's value, added below).
            jumps = 0.0 if t == top else fs * escalate + fv * first[top]
            retry_gain = (retry_pass * on_pass + (1.0 - on_pass)) * now[t]
            value = escalate  # what follows the last retry: escalate, or the flag at the top
            for k in range(R, -1, -1):
                p = p_first[t] if k == 0 else retry_pass
                gain = (p * on_pass + (1.0 - on_pass)) * now[t] if k == 0 else retry_gain
                after = value if t == top else jumps + fm * value
                value = gain + (1.0 - p) * after
            first[t] = value
        return first
