"""The routing policy: expected cost by hand, quality requirements, fallbacks, decisions."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from router_model.config import Catalog
from router_model.contract import EXAMPLE_TASK
from router_model.decide.ladder_cost import LadderCostModel
from router_model.decide.policy import RoutingPolicy
from router_model.decide.rules import Fields
from router_model.model.artifact import load_artifact
from tests.helpers import compose_config, policy_settings

TASK = EXAMPLE_TASK


def test_expected_cost_without_retries_matches_hand_computation():
    catalog = Catalog.from_config(compose_config(overrides=["gate.retries_per_tier=0"]))
    stats = {"tiers": {t: {"schema_share": 0.0, "severe_share": 0.0, "retry_pass_rate": 0.5}
                       for t in catalog.ladder}}
    model = LadderCostModel(catalog, policy_settings(), stats)
    e = model.expectations([0.5, 0.8, 1.0], [1.0, 3.0, 40.0], [0.0, 0.0, 0.0])
    # start 0: 1 + 0.5 * (3 + 0.2 * 40) = 6.5; start 1: 3 + 0.2 * 40 = 11; start 2: 40
    np.testing.assert_allclose(e["cost"], [6.5, 11.0, 40.0])
    np.testing.assert_allclose(e["calls"], [1 + 0.5 * (1 + 0.2), 1.2, 1.0])
    np.testing.assert_allclose(e["pass"], [1.0, 1.0, 1.0])
    # the same numbers for many tasks at once (arrays in every slot)
    many = model.expectations([np.full(4, 0.5), np.full(4, 0.8), np.ones(4)],
                              [np.full(4, 1.0), np.full(4, 3.0), np.full(4, 40.0)],
                              [np.zeros(4)] * 3)
    np.testing.assert_allclose(np.column_stack(many["cost"]), [[6.5, 11.0, 40.0]] * 4)


def test_expected_cost_with_retries_and_failure_mix_matches_hand_computation():
    catalog = Catalog.from_config(compose_config(overrides=["gate.retries_per_tier=1"]))
    stats = {"tiers": {t: {"schema_share": 0.1, "severe_share": 0.1, "retry_pass_rate": 0.5}
                       for t in catalog.ladder}}
    model = LadderCostModel(catalog, policy_settings(), stats)
    e = model.expectations([0.5, 0.8, 0.9], [1.0, 3.0, 40.0], [0.0, 0.0, 0.0])
    # Worked by hand, V(tier, retries used):
    # V(2,1) = 40; V(2,0) = 40 + 0.1 * 40 = 44
    # V(1,1) = 3 + 0.5 * (0.1*44 + 0.1*44 + 0.8*44) = 25
    # V(1,0) = 3 + 0.2 * (0.1*44 + 0.1*44 + 0.8*25) = 8.76
    # V(0,1) = 1 + 0.5 * (0.1*8.76 + 0.1*44 + 0.8*8.76) = 7.142
    # V(0,0) = 1 + 0.5 * (0.1*8.76 + 0.1*44 + 0.8*7.142) = 6.4948
    np.testing.assert_allclose(e["cost"], [6.4948, 8.76, 44.0])
    # final pass from premium: 0.9 + 0.1 * 0.5 = 0.95
    assert e["pass"][2] == pytest.approx(0.95)


def test_latency_price_is_added_to_the_cost(catalog):
    """An hour of wall time at 36 USD prices each second at 0.01 USD."""
    cheap = LadderCostModel(catalog, policy_settings(latency_usd_per_hour=0.0))
    timed = LadderCostModel(catalog, policy_settings(latency_usd_per_hour=36.0))
    c0, lat = cheap.attempt_cost(10_000.0, 1000.0)
    c1, _ = timed.attempt_cost(10_000.0, 1000.0)
    np.testing.assert_allclose(np.subtract(c1, c0), 0.01 * np.asarray(lat))
    assert lat[2] > lat[0]  # premium is the slow one


def test_the_threshold_rule_needs_more_confidence_on_high_impact_fields(catalog):
    policy = RoutingPolicy(catalog, policy_settings(rule="threshold", knob=0.8,
                                                   impact_slope=0.02))
    assert policy.choice.required_pass_prob(np.array([10.0]))[0] == pytest.approx(0.9)
    assert policy.choice.required_pass_prob(np.array([3.0]))[0] == pytest.approx(0.76)
    p = np.array([[0.85, 0.95, 0.99], [0.85, 0.95, 0.99]])
    args = (np.array([3.0, 10.0]), np.array([5000.0, 5000.0]), np.array([500.0, 500.0]),
            ["exercise", "course_title"])
    assert policy.choice.plan(p, *args)["start"].tolist() == [0, 1]
    knob_one = RoutingPolicy(catalog, policy_settings(rule="threshold", knob=1.0))
    assert knob_one.choice.plan(p, *args)["start"].tolist() == [2, 2]


def test_expected_loss_trades_cost_against_bad_outcomes(catalog):
    """lam = 0 starts where the expected cost is least; a large lam buys quality; a field
    of higher impact starts higher at the same lam; starts_for agrees with plan_columns."""
    p = np.array([[0.80, 0.95, 0.99]] * 2)
    impact = np.array([3.0, 10.0])
    prompt, output = np.array([5000.0, 5000.0]), np.array([500.0, 500.0])
    false_pass = [np.full(2, 0.10), np.full(2, 0.03), np.full(2, 0.005)]  # by tier

    def starts(lam: float) -> list[int]:
        policy = RoutingPolicy(catalog, policy_settings(lam=lam))
        cols = policy.choice.plan_columns(list(p.T), impact, prompt, output, false_pass)
        plan = {k: np.column_stack(v) for k, v in cols.items()
                if k in ("eligible", "expected_cost", "expected_bad")}
        again = policy.choice.starts_for({**plan, "p_plan": p, "impact": impact,
                                          "fields": ["exercise", "course_title"]})
        assert again.tolist() == np.asarray(cols["start"]).tolist()
        return again.tolist()

    assert starts(0.0) == [0, 0]
    assert starts(1000.0) == [2, 2]
    middle = [starts(lam) for lam in (0.01, 0.03, 0.1, 0.3, 1.0)]
    assert any(low < high for low, high in middle)  # impact 10 climbs before impact 3
    assert all(low <= high for low, high in middle)


def test_bad_outcome_counts_false_passes_and_flags(catalog):
    model = LadderCostModel(catalog, policy_settings(), {"tiers": {
        t: {"schema_share": 0.0, "severe_share": 0.0, "retry_pass_rate": 0.0}
        for t in catalog.ladder}})
    # Premium start: passes with 0.9, of which 10% is false; else retries that never pass,
    # then a flag: bad = 0.9 * 0.1 + 0.1 * 1.
    e = model.expectations([1.0, 1.0, 0.9], [1.0, 1.0, 1.0], [0.0] * 3, [0.0, 0.0, 0.1])
    assert e["bad"][2] == pytest.approx(0.9 * 0.1 + 0.1)
    assert e["bad"][0] == pytest.approx(0.0)


@pytest.fixture(scope="module")
def learned(trained_router, catalog):
    cfg, _ = trained_router
    return RoutingPolicy(catalog, policy_settings(), load_artifact(cfg.router.artifact), seed=1)


def test_learned_decision_record_has_everything(learned):
    d = learned.decide(TASK).to_dict()
    assert d["source"] == "learned" and d["propensity"] == 1.0
    assert d["router_version"] == learned.artifact.router_version
    assert set(d["pass_probabilities"]) == {"gpt-oss-20b", "gpt-oss-120b", "qwen3-max"}
    assert all(0 <= v <= 1 for v in d["pass_probabilities"].values())
    assert d["start_tier"] == d["ladder"][0] and d["ladder"][-1] == "qwen3-max"
    assert d["required_pass_prob"] is None  # the expected-loss rule has no threshold
    assert len(d["decision_id"]) == 32
    json.dumps(d)  # serialisable as a log line


def test_the_dial_comes_from_the_artifact_unless_overridden(learned, catalog):
    calibrated = learned.artifact.manifest["policy"]["lam"]
    assert learned.settings.lam == pytest.approx(calibrated)
    override = RoutingPolicy(catalog, policy_settings(lam=0.5), learned.artifact)
    assert override.settings.lam == 0.5
    lookup = learned.variant("lookup_policy")
    assert lookup.settings.lam == pytest.approx(learned.artifact.manifest["lookup_policy"]["lam"])
    assert lookup.settings.rule == "expected_loss" and lookup.predictor is not None


def test_the_lookup_table_predicts_by_field_only(learned):
    lookup = learned.variant("lookup_policy")
    a = pd.DataFrame({"field": ["exercise", "exercise"], "prompt_tokens": [400, 90_000],
                      "context_tokens": [0, 5000], "analysis.domain": ["arts", "mathematics"]})
    p = lookup.start_tiers(a)["p"]
    assert np.allclose(p[0], p[1])  # the table sees the field, nothing else
    table = learned.artifact.manifest["lookup"]["exercise"]
    assert p[0].tolist() == pytest.approx([table[t] for t in learned.ladder])


def test_exploration_draws_and_records_propensities(learned):
    policy = learned.with_settings(epsilon=0.3)
    decisions = policy.decide_many([TASK] * 3000)
    greedy = learned.decide(TASK).start_tier
    explored = [d for d in decisions if d.source == "exploration"]
    assert 0.25 < len(explored) / len(decisions) < 0.35
    for d in decisions:
        expected = (0.7 * (d.start_tier == greedy) + 0.1) if d.source == "exploration" \
            else 0.7 + 0.1
        assert d.propensity == pytest.approx(expected)


def test_context_overflow_goes_to_the_overflow_tier(learned):
    d = learned.decide({**TASK, "context_tokens": 150_000})
    assert (d.start_tier, d.source, d.fallback_reason) == ("gemini-2.5-flash", "rules",
                                                          "context_overflow")
    assert d.ladder == ["gemini-2.5-flash"] and d.propensity == 1.0


def test_unknown_categories_and_missing_features_are_marked_not_fatal(learned):
    d = learned.decide({"field": "course_title", "prompt_tokens": 2000,
                        "analysis": {"domain": "astrology", "language": "tlh"}})
    assert d.source == "learned"
    assert d.unknown_categories == {"analysis.domain": "astrology", "analysis.language": "tlh"}
    assert "context_tokens" in d.missing_features


def test_invalid_features_fall_back_to_rules_with_the_reason(learned):
    d = learned.decide({**TASK, "prompt_tokens": "lots"})
    assert d.source == "rules" and d.start_tier == "gpt-oss-120b"  # static for lessons
    assert "invalid_features: feature prompt_tokens='lots' is not a number" in d.fallback_reason


def test_missing_or_corrupt_artifact_falls_back_to_rules(catalog, tmp_path, trained_router):
    missing = RoutingPolicy.from_artifact_path(catalog, policy_settings(), str(tmp_path / "no"))
    d = missing.decide({**TASK, "field": "course_title"})
    assert (d.source, d.start_tier) == ("rules", "qwen3-max")
    assert d.fallback_reason.startswith("artifact_error")
    assert RoutingPolicy(catalog, policy_settings()).decide(TASK).fallback_reason == "no_model"
    _, result = trained_router

    broken = tmp_path / "broken"
    shutil.copytree(result.artifact.path, broken)
    (broken / "model.json").write_bytes(b"garbage")
    policy = RoutingPolicy.from_artifact_path(catalog, policy_settings(), str(broken))
    assert not policy.learned and "sha256" in policy.fallback_reason
    assert policy.decide(TASK).source == "rules"


def test_many_tasks_plan_all_expectations_in_one_programme_with_each_tasks_floats(catalog):
    """The stacked programme over many tasks gives, bit for bit, what the float programme
    gives each task alone, for every quantity and for any subset of quantities."""
    model = LadderCostModel(catalog, policy_settings())
    rng = np.random.default_rng(3)
    p, cost, latency, false_pass = (rng.random((3, 40)) for _ in range(4))
    cost = cost * 0.01
    many = model.expectations(list(p), list(cost), list(latency), list(false_pass))
    for i in range(40):
        one = model.expectations([float(x) for x in p[:, i]], [float(x) for x in cost[:, i]],
                                 [float(x) for x in latency[:, i]],
                                 [float(x) for x in false_pass[:, i]])
        assert {q: [float(v[i]) for v in values] for q, values in many.items()} == one
    some = model.expectations(list(p), list(cost), list(latency), list(false_pass),
                              quantities=("bad", "calls"))
    for q in ("bad", "calls"):
        assert all(np.array_equal(a, b) for a, b in zip(some[q], many[q], strict=True))


def test_per_field_tables_are_read_once_per_distinct_field(learned):
    """Fields gives what a per-task Series.map + fillna gives, for a frame's column (with
    missing and unknown fields) and for a list of names, and static starts agree."""
    column = pd.Series(["exercise", None, "course_title", "never-seen", "exercise"],
                       dtype="str")
    table = learned.choice.median_output
    expected = column.astype(str).map(table).fillna(123.0).to_numpy(float)
    assert np.array_equal(Fields.of(column).lookup(table, 123.0), expected, equal_nan=True)
    names = ["exercise", "never-seen", "exercise"]
    assert Fields.of(names).lookup(table, 1.0).tolist() == [table["exercise"], 1.0,
                                                            table["exercise"]]
    assert learned.rules.static_starts(column).tolist() == \
        pd.Series(column).map(learned.rules.static).fillna(0).to_numpy(np.int64).tolist()


def test_a_start_needs_only_cost_and_bad(learned, catalog):
    """Planning only cost and bad (what the routers do) gives the same starts and the same
    values as planning every expectation."""
    from pipeline.world import simulate_world, task_table, world_settings

    cfg = compose_config("router_evaluate")
    world = simulate_world(world_settings(cfg.simulate), catalog, n_courses=60, seed=3)
    tasks = task_table(world)
    for policy in (learned, learned.variant("threshold_policy")):
        full = policy.start_tiers(tasks)
        lean = policy.start_tiers(tasks, p=full["p"], quantities=policy.DECISION_QUANTITIES)
        assert set(lean) == {"p", "p_plan", "impact", "fields", "start", "required",
                             "eligible", "expected_cost", "expected_bad"}
        for key, value in lean.items():
            if key != "fields":
                assert np.array_equal(value, full[key]), key




def test_planning_is_pessimistic_in_thin_cells_only(catalog):
    """A cell with few examples loses kappa standard errors of its probability; a thick
    cell (almost) nothing; a field with no support at all the most; the field's static
    tier nothing, however thin (the rules' start is the bar, not a move); no support table
    or kappa 0: the probabilities as they are."""
    from router_model.decide.choice import StartChoice

    support = {"exercise": {"gpt-oss-20b": 3, "gpt-oss-120b": 9, "qwen3-max": 10_000}}
    choice = StartChoice(catalog, policy_settings(pessimism=2.0), support=support)
    assert catalog.fields["exercise"].static_tier == "gpt-oss-20b"
    p = [0.9, 0.9, 0.9]
    lowered = choice.planning_p(p, "exercise")
    assert lowered[0] == 0.9
    assert lowered[1] == pytest.approx(0.9 - 2.0 * (0.09 / 10) ** 0.5)
    assert lowered[2] == pytest.approx(0.9 - 2.0 * (0.09 / 10_001) ** 0.5)
    assert choice.planning_p(p, "never-seen") == [pytest.approx(0.3)] * 3
    assert choice.planning_p([0.5, 0.5, 0.5], "never-seen") == [0.0] * 3  # floored at 0
    many = choice.planning_p(np.array([p, p]), ["exercise", "never-seen"])
    np.testing.assert_allclose(many, [lowered, [0.3] * 3])
    assert StartChoice(catalog, policy_settings(pessimism=0.0), support=support
                       ).planning_p(p, "exercise") == p
    assert StartChoice(catalog, policy_settings(pessimism=2.0)).planning_p(p, "exercise") == p


def test_a_fields_own_dial_only_raises_its_price(catalog):
    """field_lams: a floored field plans with its own lam when it is the larger; other
    fields keep the policy's; an artifact's calibrated field dials are read, a variant's
    are its own."""
    from router_model.decide.choice import StartChoice
    from router_model.decide.settings import calibrated, variant_settings

    settings = policy_settings(lam=0.5, field_lams={"course_title": 3.0, "exercise": 0.1})
    assert settings.lam_of("course_title") == 3.0
    assert settings.lam_of("exercise") == 0.5  # below the policy's lam: no effect
    assert settings.lam_of("lesson_content") == 0.5
    manifest = {"policy": {"lam": 0.2, "field_lams": {"course_title": 7.0}},
                "lookup_policy": {"lam": 0.4}}
    read = calibrated(policy_settings(), manifest)
    assert (read.lam, read.field_lams) == (0.2, {"course_title": 7.0})
    lookup = calibrated(variant_settings(read, "policy", "lookup_policy"), manifest,
                        "lookup_policy")
    assert (lookup.lam, lookup.field_lams) == (0.4, {})
    p = np.array([[0.80, 0.95, 0.99]] * 2)
    args = (np.array([10.0, 10.0]), np.array([5000.0, 5000.0]), np.array([500.0, 500.0]))
    errors = {"gate_errors": {"tier": {"gpt-oss-20b": 0.2, "gpt-oss-120b": 0.1}}}
    plain = StartChoice(catalog, calibrated(policy_settings(lam=0.001), None), errors)
    floored = StartChoice(catalog, calibrated(policy_settings(
        lam=0.001, field_lams={"course_title": 1.0}), None), errors)
    fields = ["course_title", "course_description"]
    assert plain.plan(p, *args, fields)["start"].tolist() == [0, 0]
    assert floored.plan(p, *args, fields)["start"].tolist() == [2, 0]
