"""Dial calibration (training/knob.py): planning only what the target reads, and choosing
starts without numpy's min along the tiers, gives the very dial the plain path gives."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from router_model.decide.choice import StartChoice
from router_model.decide.policy import RoutingPolicy
from router_model.decide.settings import POLICY_VARIANTS
from router_model.model.artifact import load_artifact
from tests.helpers import compose_config, policy_settings
from training.knob import CalibrationTarget, calibrate_dial


def target(**goal: Any) -> CalibrationTarget:
    """One router.calibrate target; the others unset."""
    return CalibrationTarget(**{**dict.fromkeys(CalibrationTarget.__dataclass_fields__), **goal})


TARGETS = [target(weighted_bad_vs_static=True), target(bad_vs_static=True),
           target(first_pass_vs_static=True),
           target(first_pass_min=0.9), target(premium_share_max=0.05),
           target(final_pass_min=0.99)]


def _plain_starts(choice: StartChoice, plan: dict[str, np.ndarray]) -> np.ndarray:
    """The reference choice: every loss masked, argmin, and the least loss by min."""
    eligible = np.asarray(plan["eligible"], dtype=bool)
    top = eligible.shape[1] - 1
    if choice.settings.rule == "threshold":
        required = choice.required_pass_prob(plan["impact"])
        ok = eligible & (plan["p_plan"] >= required[:, None])
        ok[:, top] = eligible[:, top]
        loss = plan["expected_cost"]
    else:
        ok = eligible
        lam = np.broadcast_to(choice.lams(plan["fields"]), (len(eligible),))
        price = lam * choice.impact_weight(plan["impact"])
        loss = plan["expected_cost"] + price[:, None] * plan["expected_bad"]
    loss = np.where(ok, loss, np.inf)
    return np.where(np.isfinite(loss.min(axis=1)), np.argmin(loss, axis=1), top)


@pytest.fixture(scope="module")
def held_out(trained_router, catalog):
    from pipeline.world import simulate_world, task_table, world_settings

    cfg, _ = trained_router
    world = simulate_world(world_settings(compose_config("router_evaluate").simulate), catalog,
                           n_courses=150, seed=11)
    tasks = task_table(world)
    tasks.loc[tasks.index[::7], "prompt_tokens"] = 400_000  # fits no tier: starts on top
    return RoutingPolicy(catalog, policy_settings(), load_artifact(cfg.router.artifact)), tasks


@pytest.mark.parametrize("key", sorted(POLICY_VARIANTS))
def test_the_dial_is_the_one_the_plain_path_finds(held_out, monkeypatch, key):
    policy, tasks = held_out
    variant = policy.variant(key)
    fast = [calibrate_dial(variant, tasks, target) for target in TARGETS]
    full_plan = RoutingPolicy.start_tiers

    def every_expectation(self: RoutingPolicy, frame: Any, p: Any = None,
                          quantities: Any = None) -> dict[str, np.ndarray]:
        return full_plan(self, frame, p)

    monkeypatch.setattr(RoutingPolicy, "start_tiers", every_expectation)
    monkeypatch.setattr(StartChoice, "starts_for", _plain_starts)
    assert fast == [calibrate_dial(variant, tasks, target) for target in TARGETS]
    assert calibrate_dial(variant, tasks, None) is None
    assert calibrate_dial(variant, tasks, target()) is None


def test_two_targets_at_once_are_refused():
    with pytest.raises(ValueError, match=r"router\.calibrate.*needs exactly one"):
        target(bad_vs_static=True, first_pass_min=0.9)



def test_variants_on_the_model_share_its_predictions_and_find_the_same_dials(
        trained_router, held_out, monkeypatch):
    from router_model.model.artifact import RouterArtifact
    from training.train import calibrate_policies
    from training.train_cli import train_job

    cfg, _ = trained_router
    policy, tasks = held_out
    artifact = policy.artifact
    candidate = RouterArtifact(model=artifact.model, path=None,
                               manifest={**artifact.manifest, "router_version": "candidate"})
    job = train_job(cfg)
    separate = {key: calibrate_dial(RoutingPolicy(policy.catalog, job.router.policy, candidate)
                                    .variant(key), tasks, job.router.calibrate)
                for key in POLICY_VARIANTS}
    predicted = []  # the model's predictions (the lookup variants predict from their table)
    predict = RoutingPolicy._predict_encoded
    monkeypatch.setattr(RoutingPolicy, "_predict_encoded",
                        lambda self, X: predicted.append(len(X)) or predict(self, X))
    shared = calibrate_policies(job, artifact.model, artifact.manifest, tasks)
    assert shared == separate and shared["policy"] is not None
    assert predicted == [len(tasks)]  # once, for both variants on the model


def test_doubt_prices_a_move_away_from_the_rules_not_the_rules_own_start(held_out):
    """Pessimism and the pessimistic false-pass table leave each field's static cell at its
    point estimate: a policy that keeps the rules' start expects what static expects (the
    bar), and only a move pays for the doubt."""
    import copy

    from router_model.model.artifact import RouterArtifact

    policy, tasks = held_out

    def with_table(pessimism: float, doubt: float | None) -> RoutingPolicy:
        manifest = copy.deepcopy(policy.artifact.manifest)
        errors = manifest["ladder_stats"]["gate_errors"]
        errors["field_tier"] = copy.deepcopy(errors["field_tier_point"]) if doubt is None else {
            f: dict.fromkeys(policy.ladder, doubt) for f in policy.catalog.fields}
        return RoutingPolicy(policy.catalog, policy_settings(pessimism=pessimism),
                             RouterArtifact(model=policy.artifact.model, path=None,
                                            manifest=manifest))

    sure = with_table(0.0, None).start_tiers(tasks)["expected_bad"]
    doubtful = with_table(3.0, 0.5).start_tiers(tasks)["expected_bad"]
    static = policy.rules.static_starts(tasks["field"])
    top = len(policy.ladder) - 1
    on_top = static == top  # chains that start on premium stay there: one cell each
    assert on_top.any() and (~on_top).any()
    rows = np.flatnonzero(on_top)
    np.testing.assert_allclose(doubtful[rows, top], sure[rows, top])
    assert (doubtful[rows, 0] > sure[rows, 0] + 0.1).all()  # a move to the cheapest pays
