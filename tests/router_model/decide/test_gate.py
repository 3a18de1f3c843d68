"""The seed's rule ladder, one rule at a time, and the replay engine that runs it."""

from __future__ import annotations

import numpy as np
import pytest

from router_model.decide.gate import Action, Gate
from router_model.decide.replay import OutcomeCube, replay

RULES = Gate(n_ladder=3, retries_per_tier=2, pass_threshold=0.75, severe_threshold=0.60)


def step(tier, retry, sim, valid=True, transient=False):
    action, nxt, nretry, reason = RULES.next_step(
        np.array([tier]), np.array([retry]), np.array([sim]), np.array([valid]),
        np.array([transient]), threshold=RULES.pass_thresholds(None, 1))
    return Action(int(action[0])), int(nxt[0]), int(nretry[0]), reason[0]


@pytest.mark.parametrize("tier", [0, 1, 2, 3])
def test_pass_accepts_on_any_tier(tier):
    assert step(tier, 0, 0.75)[0] == Action.ACCEPT


def test_schema_error_escalates_one_tier_even_with_retries_left():
    assert step(0, 0, 0.95, valid=False) == (Action.ESCALATE, 1, 0, "schema_error")
    assert step(1, 1, 0.95, valid=False) == (Action.ESCALATE, 2, 0, "schema_error")


def test_mid_similarity_retries_then_escalates():
    assert step(0, 0, 0.70) == (Action.RETRY, 0, 1, "mid_similarity")
    assert step(0, 1, 0.60) == (Action.RETRY, 0, 2, "mid_similarity")
    assert step(0, 2, 0.74) == (Action.ESCALATE, 1, 0, "retry_limit")


def test_severe_similarity_jumps_to_premium():
    assert step(0, 0, 0.59) == (Action.JUMP_PREMIUM, 2, 0, "severe_similarity")
    assert step(1, 2, 0.10) == (Action.JUMP_PREMIUM, 2, 0, "severe_similarity")


def test_premium_failures_retry_then_flag_for_review():
    assert step(2, 0, 0.50) == (Action.RETRY, 2, 1, "severe_similarity")
    assert step(2, 1, 0.95, valid=False) == (Action.RETRY, 2, 2, "schema_error")
    assert step(2, 2, 0.70) == (Action.FLAG_FOR_REVIEW, 2, 2, "exhausted")


def test_overflow_tier_has_nowhere_to_go_so_it_retries_then_flags():
    assert step(3, 0, 0.50) == (Action.RETRY, 3, 1, "severe_similarity")
    assert step(3, 2, 0.70) == (Action.FLAG_FOR_REVIEW, 3, 2, "exhausted")


def test_transient_errors_retry_like_mid_failures():
    assert step(0, 0, float("nan"), transient=True) == (Action.RETRY, 0, 1, "mid_similarity")
    assert step(0, 2, float("nan"), transient=True)[0] == Action.ESCALATE


def _cube(sims, valid=None, n_att=3):
    """One task per row of `sims`: {tier: [attempt sims]} with quality = similarity."""
    n = len(sims)
    sim = np.zeros((n, 4, n_att))
    for i, by_tier in enumerate(sims):
        for t, values in by_tier.items():
            sim[i, t, : len(values)] = values
    ok = np.ones_like(sim, dtype=bool) if valid is None else valid
    cost = np.tile([1.0, 3.0, 40.0, 10.0], (n, 1))
    return OutcomeCube(similarity=sim, quality=sim.copy(), schema_valid=ok, call_cost=cost,
                       gate_cost=np.zeros((n, 4)), latency_s=np.ones((n, 4)),
                       overflow=np.zeros(n, dtype=bool))


def test_replay_follows_the_ladder_and_keeps_the_best_attempt(catalog):
    cube = _cube([
        {0: [0.80]},                                   # pass first time at 20B
        {0: [0.70, 0.72, 0.74], 1: [0.90]},             # 3 mid fails, escalate, pass
        {0: [0.50], 2: [0.90]},                        # severe -> jump to premium
        {0: [0.70, 0.71, 0.72], 1: [0.65, 0.66, 0.67], 2: [0.70, 0.73, 0.69]},  # flag
    ])
    res = replay(cube, np.zeros(4, dtype=int), catalog, record_trace=True)
    assert res.calls.tolist() == [1, 4, 2, 9]
    assert res.cost.tolist() == [1.0, 6.0, 41.0, 3 + 9 + 120]
    assert res.accepted.tolist() == [True, True, True, False]
    assert res.flagged.tolist() == [False, False, False, True]
    assert res.final_tier.tolist() == [0, 1, 2, 2]
    assert res.final_similarity[3] == pytest.approx(0.73)  # best attempt kept, never dropped
    assert res.reached_premium.tolist() == [False, False, True, True]
    assert len(res.trace) == res.calls.sum()


def test_replay_sends_overflow_to_the_overflow_tier(catalog):
    cube = _cube([{3: [0.60, 0.80]}])
    cube.overflow[:] = True
    res = replay(cube, np.array([0]), catalog)
    assert res.final_tier.tolist() == [3] and res.calls.tolist() == [2]
