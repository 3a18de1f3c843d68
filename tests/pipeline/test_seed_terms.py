"""The seed's per-course terms, from generator fields and from an exact replay."""

from __future__ import annotations

import numpy as np
import pandas as pd

from pipeline.seed_terms import course_figures, format_targets, replay_course_figures, targets
from router_model.decide.replay import replay
from router_model.decide.rules import StaticRules


def test_a_course_passes_first_only_when_every_field_did():
    figures = course_figures(course=["a", "a", "b", "b", "c"],
                             first_passed=[True, True, True, False, True],
                             final_passed=[True, True, True, True, False],
                             cost=[0.1, 0.1, 0.2, 0.1, 0.3])
    assert figures["course_first_attempt_pass"] == 2 / 3
    assert figures["course_final_pass"] == 2 / 3
    assert figures["field_first_attempt_pass"] == 0.8
    assert np.isclose(figures["cost_per_course_usd"], 0.8 / 3)
    met = targets(figures)
    assert not met["course_first_attempt_pass"]["met"]
    assert met["cost_per_course_usd"]["met"]
    assert any("MISSED" in line for line in format_targets(figures))


def test_replay_figures_count_courses_as_the_seed_does(catalog):
    from pipeline.world import simulate_world, world_settings
    from tests.helpers import compose_config

    world = simulate_world(world_settings(compose_config().simulate), catalog, n_courses=60)
    result = replay(world.cube, StaticRules(catalog).static_starts(world.tasks["field"]),
                    catalog)
    figures = replay_course_figures(world.tasks, result)
    first = pd.Series(result.accepted & (result.calls == 1)).groupby(
        world.tasks["course_id"].to_numpy()).all()
    assert figures["courses"] == 60
    assert figures["course_first_attempt_pass"] == first.mean()
    assert figures["course_first_attempt_pass"] <= figures["field_first_attempt_pass"]
    assert np.isclose(figures["cost_per_course_usd"], result.cost.sum() / 60)
