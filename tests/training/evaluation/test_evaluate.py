"""Offline evaluation: metric definitions by hand, off-policy estimators with known answers,
the oracle, and a real end-to-end run."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline.world import simulate_world, world_settings
from router_model.decide.policy import RoutingPolicy
from router_model.decide.replay import OutcomeCube, replay
from router_model.decide.routers import Oracle, RouterContext
from router_model.decide.rules import StaticRules
from tests.helpers import compose_config, path_overrides, policy_settings
from training.evaluation.cli import evaluate_job
from training.evaluation.evaluate import course_codes, flip_gate, policy_metrics, run_evaluate
from training.evaluation.off_policy import NoExplorationError, estimate
from training.evaluation.routing_metrics import aiq, apgr, cpt, pgr_curve, points_pgr, savings_ci


def test_pgr_apgr_and_cpt_by_hand():
    weak = np.array([0.0, 0.0, 1.0, 1.0])
    strong = np.array([1.0, 1.0, 1.0, 1.0])
    # a router that prefers exactly the two prompts the strong model fixes
    x, pgr = pgr_curve(np.array([0.9, 0.8, 0.1, 0.2]), weak, strong, n_points=5)
    np.testing.assert_allclose(x, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(pgr, [0, 0.5, 1.0, 1.0, 1.0])
    assert apgr(x, pgr) == pytest.approx(0.25 * (0.25 + 0.75 + 1 + 1))  # trapezoids
    assert cpt(x, pgr, 0.5) == 0.25 and cpt(x, pgr, 0.8) == 0.5


def test_oracle_and_random_apgr_come_out_as_they_should():
    rng = np.random.default_rng(0)
    weak = (rng.random(20_000) < 0.6).astype(float)
    strong = np.maximum(weak, (rng.random(20_000) < 0.5).astype(float))
    x, pgr = pgr_curve(strong - weak, weak, strong)  # oracle: knows who gains
    gain_share = (strong - weak).mean()
    assert apgr(x, pgr) == pytest.approx(1 - gain_share / 2, abs=0.01)
    assert cpt(x, pgr, 1.0) == pytest.approx(gain_share, abs=0.01)
    random_apgr = np.mean([apgr(*pgr_curve(rng.random(20_000), weak, strong))
                           for _ in range(5)])
    assert random_apgr == pytest.approx(0.5, abs=0.01)


def test_points_pgr_joins_operating_points():
    _, pgr = points_pgr([0.5], [0.9], r_weak=0.8, r_strong=1.0)
    assert pgr[50] == pytest.approx(0.5) and pgr[0] == 0 and pgr[-1] == 1


def test_aiq_by_hand():
    # endpoints (0, 0) and (1, 1), one router point (0.2, 0.8): hull 0 -> 0.8 -> 1
    value = aiq([0.2], [0.8], 0.0, 1.0, endpoints=((0.0, 0.0), (1.0, 1.0)))
    expected = 0.5 * 0.2 * 0.8 + 0.8 * (0.8 + 1.0) / 2
    assert value == pytest.approx(expected, abs=1e-3)
    # a point under the chord does not count: AIQ is the hull
    assert aiq([0.5], [0.2], 0.0, 1.0, endpoints=((0.0, 0.0), (1.0, 1.0))) == pytest.approx(
        0.5, abs=1e-3)


def test_savings_ci_agrees_with_scipys_percentile_bootstrap():
    """Noisy per-course costs: our interval matches scipy.stats.bootstrap's percentile
    interval of the same ratio statistic (up to resampling noise), and is not degenerate."""
    from scipy import stats

    rng = np.random.default_rng(1)
    base = rng.uniform(1, 2, 400)
    policy = base * rng.uniform(0.4, 1.0, 400)
    ours = savings_ci(policy, base, n_boot=2000, seed=3)
    theirs = stats.bootstrap((policy, base), lambda p, b: 1 - p.sum() / b.sum(), paired=True,
                             vectorized=False, n_resamples=2000, method="percentile",
                             random_state=4).confidence_interval
    assert ours["ci_high"] - ours["ci_low"] > 0.01
    assert ours["ci_low"] == pytest.approx(theirs.low, abs=0.006)
    assert ours["ci_high"] == pytest.approx(theirs.high, abs=0.006)


def _bandit(n=40_000, seed=0):
    """Two actions, logging policy uniform, reward r(a) known: r(0)=1+x, r(1)=3."""
    rng = np.random.default_rng(seed)
    x = rng.random(n)
    logged = rng.integers(0, 2, n)
    reward = np.where(logged == 0, 1 + x, 3.0) + rng.normal(0, 0.1, n)
    return pd.DataFrame({"course_id": np.arange(n) // 4, "start_index": logged,
                         "propensity": 0.5, "cost": reward}), x


def test_ips_snips_and_dr_recover_a_known_policy_value():
    bandit, x = _bandit()
    target = (x > 0.5).astype(int)  # take action 1 when x > 0.5
    truth = np.mean(np.where(target == 0, 1 + x, 3.0))
    perfect = np.column_stack([1 + x, np.full_like(x, 3.0)])
    biased = perfect + 0.5  # a wrong reward model: DR must still be unbiased
    for q in (perfect, biased):
        est = estimate(bandit, target, {"cost": q}, n_boot=200)["cost"]
        for name in ("ips", "snips", "dr"):
            assert est[name]["value"] == pytest.approx(truth, abs=0.03), name
            assert est[name]["ci_low"] - 0.02 <= truth <= est[name]["ci_high"] + 0.02
    tight = estimate(bandit, target, {"cost": perfect}, n_boot=200)["cost"]
    width = {k: v["ci_high"] - v["ci_low"] for k, v in tight.items()}
    assert width["dr"] < width["ips"]  # a good reward model shrinks the variance


def test_logs_without_exploration_are_refused():
    bandit, _ = _bandit(100)
    bandit["propensity"] = 1.0
    with pytest.raises(NoExplorationError, match="no exploration"):
        estimate(bandit, np.zeros(100, dtype=int), {"cost": np.zeros((100, 2))})


def test_the_oracle_starts_where_the_cheapest_true_pass_is(catalog):
    """Hand-made outcomes: task 0 truly passes only on premium, task 1 on every tier, task 2
    only on the mid tier, so the oracle must start at 2, 0, 1."""
    n, tiers = 3, len(catalog.tier_names)
    quality = np.full((n, tiers, 3), 0.9)
    quality[0, :2] = 0.7  # near misses on the two cheap tiers
    quality[2, 0], quality[2, 2] = 0.7, 0.5
    cost = np.tile(np.array([1.0, 2.0, 10.0, 3.0]), (n, 1))
    cube = OutcomeCube(similarity=quality, quality=quality,
                       schema_valid=np.ones((n, tiers, 3), bool), call_cost=cost,
                       gate_cost=np.zeros((n, tiers)), latency_s=np.ones((n, tiers)),
                       overflow=np.zeros(n, bool))
    tasks = pd.DataFrame({"field": ["exercise"] * n})
    context = RouterContext(catalog, RoutingPolicy(catalog, policy_settings()))
    oracle = Oracle(context).fit(tasks, cube)
    assert oracle.start_tiers(tasks).tolist() == [2, 0, 1]


def test_flipped_gate_flips_at_the_rate(catalog, cfg):
    world = simulate_world(world_settings(cfg.simulate), catalog, n_courses=100, seed=4)
    flipped = flip_gate(world.cube, 0.2, 0.1, np.random.default_rng(0))
    truth = world.cube.quality >= 0.75
    verdict = flipped.similarity >= 0.75
    assert ((verdict != truth)[~truth]).mean() == pytest.approx(0.2, abs=0.02)
    assert ((verdict != truth)[truth]).mean() == pytest.approx(0.1, abs=0.01)


def test_per_course_terms_count_a_course_only_when_every_field_passes(catalog, cfg):
    """router-evaluate's seed terms agree with the generator's per-course count, and a
    course's first attempt fails with any one of its fields."""
    world = simulate_world(world_settings(cfg.simulate), catalog, n_courses=80, seed=5)
    res = replay(world.cube, StaticRules(catalog).static_starts(world.tasks["field"]), catalog)
    course = world.tasks["course_id"].to_numpy()
    m = policy_metrics(res, course_codes(course), np.ones(len(course)))
    first = pd.Series(res.accepted & (res.calls == 1)).groupby(course).all()
    final = pd.Series(~res.flagged).groupby(course).all()
    assert m["course_first_attempt_pass"] == pytest.approx(first.mean())
    assert m["course_final_pass"] == pytest.approx(final.mean())
    assert 0 < m["course_first_attempt_pass"] < (res.accepted & (res.calls == 1)).mean()
    res.calls[course == course[0]] = 2  # one course's fields all retried
    again = policy_metrics(res, course_codes(course), np.ones(len(course)))
    assert again["course_first_attempt_pass"] == pytest.approx(
        m["course_first_attempt_pass"] - first.loc[course[0]] / 80)


def test_evaluate_end_to_end(trained_router, tmp_path):
    train_cfg, _ = trained_router
    paths = path_overrides(train_cfg)
    cfg = compose_config("router_evaluate", [
        *paths, f"reports_dir={tmp_path}/evaluate", "evaluate.n_courses=400",
        "evaluate.bootstrap=200", "evaluate.gate_error_rates=[0.0,0.2]"])
    OmegaConf.resolve(cfg)
    result = run_evaluate(evaluate_job(cfg), progress=False)
    pol = result["policies"]
    assert set(pol) == set(cfg.evaluate.routers)
    assert pol["always-premium"]["premium_share"] > 0.95 > pol["ladder-from-cheapest"][
        "premium_share"]
    matched = result["matched"]
    # At the ladder's cost the learned frontier is not worse than the ladder, within the
    # sampling noise; where even its cheapest point costs more, there is no such point.
    cheapest = min(p["cost_per_course"] for p in result["sweeps"]["learned"])
    reachable = cheapest <= pol["ladder-from-cheapest"]["cost_per_course"]
    gain = matched["quality_at_cost"]["gain"]
    assert (gain >= -0.005) if reachable else np.isnan(gain)
    # The pooled baselines may mix: never dearer than the best single baseline there.
    weighted = matched["weighted"]
    best = min(weighted["cost_at_target"][b] for b in weighted["baselines"])
    assert weighted["learned"]["best_baseline_cost"] <= best + 1e-9
    # The deployed dial (calibrated on the training logs only) keeps the quality promise on
    # this fresh world: impact-weighted true pass at least static's, high-impact within
    # 0.005 of static's.
    for key, slack in (("weighted_true_pass_rate", 0.0), ("high_impact_true_pass_rate", 0.005)):
        assert pol["learned"][key] >= pol["static"][key] - slack, key
    ope = result["off_policy"]
    assert {"ips", "snips", "dr"} <= set(ope["cost"]) and "exact_replay" in ope
    # the cross-fitted DR estimate of the learned policy's cost: its interval holds the
    # exact replay's answer (on the same logged tasks)
    exact, dr = ope["exact_replay"]["cost"], ope["cost"]["dr"]
    assert dr["ci_low"] <= exact <= dr["ci_high"]
    assert len(result["gate_error_sweep"]) == 2 * len(pol)
    saved = json.loads((tmp_path / "evaluate" / "metrics.json").read_text())
    assert saved["matched"]["weighted"]["learned"]["saving"] == weighted["learned"]["saving"]
    for row in pol.values():  # a course that passed first is never flagged at the end
        assert row["course_first_attempt_pass"] <= row["course_final_pass"]
    assert pol["always-premium"]["course_first_attempt_pass"] > pol["ladder-from-cheapest"][
        "course_first_attempt_pass"]
    seed = result["seed_targets"]["learned"]["course_first_attempt_pass"]
    assert seed["value"] == pol["learned"]["course_first_attempt_pass"]
    assert seed["met"] == (0.75 <= seed["value"] <= 0.85)
    report = (tmp_path / "evaluate" / "report.md").read_text()
    assert "upper bound" in report and "earns its place" in report
    assert "courses passing every field on its first attempt" in report


def test_a_given_task_table_carries_every_feature_the_model_reads(trained_router):
    """tasks.parquet is in the routing layout, so replaying it scores with real features."""
    from training.evaluation.evaluate import evaluation_table

    train_cfg, result = trained_router
    cfg = compose_config("router_evaluate", [
        *path_overrides(train_cfg),
        f"evaluate.tasks={train_cfg.paths.tasks}", f"evaluate.outcomes={train_cfg.paths.outcomes}"])
    OmegaConf.resolve(cfg)
    table = evaluation_table(evaluate_job(cfg))
    spec = result.artifact.model.spec
    assert (set(spec.categorical) | set(spec.numeric)) - {"tier"} <= set(table.tasks.columns)
    assert table.tasks["analysis.domain"].notna().all()
