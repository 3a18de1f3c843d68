"""The ladder cost model's expectations against an exact replay of the ladder on the same
tasks: the planner prices starts with the model, evaluation scores them with replay, so the
two must agree wherever the model's assumptions hold."""

from __future__ import annotations

import numpy as np
import pytest

from router_model.decide.ladder_cost import LadderCostModel
from router_model.decide.replay import OutcomeCube, replay
from tests.helpers import policy_settings

P_FIRST = [0.55, 0.75, 0.9]  # first-attempt pass per ladder tier
STATS = {"tiers": {"gpt-oss-20b": {"schema_share": 0.2, "severe_share": 0.3,
                                   "retry_pass_rate": 0.4},
                   "gpt-oss-120b": {"schema_share": 0.1, "severe_share": 0.4,
                                    "retry_pass_rate": 0.5},
                   "qwen3-max": {"schema_share": 0.05, "severe_share": 0.2,
                                 "retry_pass_rate": 0.6}}}
PROMPT, OUTPUT = 3000.0, 900.0


def _draw_cube(catalog, n: int, rng: np.random.Generator) -> OutcomeCube:
    """Outcomes drawn as the model assumes: pass with p (first) or the retry rate (later);
    a failure is a schema error, a severe miss or a near miss in the logged shares."""
    tiers, attempts = len(catalog.tier_names), catalog.gate.retries_per_tier + 1
    g = catalog.gate
    sim = np.full((n, tiers, attempts), 0.5 * (g.pass_threshold + 1.0))
    valid = np.ones((n, tiers, attempts), dtype=bool)
    for t, name in enumerate(catalog.ladder):
        s = STATS["tiers"][name]
        p = np.array([P_FIRST[t]] + [s["retry_pass_rate"]] * (attempts - 1))
        fails = rng.random((n, attempts)) >= p
        kind = rng.random((n, attempts))
        schema = fails & (kind < s["schema_share"])
        severe = fails & ~schema & (kind < s["schema_share"] + s["severe_share"])
        near = fails & ~schema & ~severe
        valid[:, t][schema] = False
        sim[:, t][severe] = 0.5 * g.severe_threshold
        sim[:, t][near] = 0.5 * (g.severe_threshold + g.pass_threshold)
    cost = np.array([catalog.tiers[t].call_cost(PROMPT, OUTPUT) for t in catalog.tier_names])
    latency = np.array([catalog.tiers[t].call_latency_s(OUTPUT) + catalog.gate_latency_s()
                        for t in catalog.tier_names])
    return OutcomeCube(similarity=sim, quality=sim.copy(), schema_valid=valid,
                       call_cost=np.tile(cost, (n, 1)),
                       gate_cost=np.full((n, tiers), catalog.gate_cost(OUTPUT)),
                       latency_s=np.tile(latency, (n, 1)), overflow=np.zeros(n, dtype=bool))


@pytest.mark.parametrize("start", [0, 1, 2])
def test_expected_cost_calls_and_pass_match_a_replay_of_the_same_tasks(catalog, start):
    n = 40_000
    cube = _draw_cube(catalog, n, np.random.default_rng(7 + start))
    result = replay(cube, np.full(n, start), catalog)
    model = LadderCostModel(catalog, policy_settings(latency_usd_per_hour=0.0), STATS)
    cost, latency = model.attempt_cost(PROMPT, OUTPUT)
    expected = model.expectations(P_FIRST, cost, latency)
    observed = {"cost": result.cost, "latency_s": result.latency_s, "calls": result.calls,
                "premium_calls": result.premium_calls, "pass": result.accepted}
    for quantity, values in observed.items():
        mean = float(np.mean(values))
        se = float(np.std(values)) / np.sqrt(n)
        assert abs(expected[quantity][start] - mean) <= 4 * se + 1e-12, (quantity, start)
