"""The log simulator: calibrated to the seed note, deterministic, and honest about exploration."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import pipeline.world.outcomes as outcomes_module
from pipeline.simulate_cli import SEED_RANGES, check_ranges, run_simulate, simulate_job
from pipeline.world.calibration import calibration_summary
from pipeline.world.draws import fast_normal, summed_uniform_ints
from pipeline.world.outcomes import field_thresholds
from pipeline.world.settings import world_settings
from pipeline.world.simulate import simulate_world
from router_model.config import ConfigError
from router_model.decide.gate import Gate
from router_model.decide.replay import cube_from_table, replay
from router_model.decide.rules import StaticRules
from router_model.logs.attempts import read_attempts
from tests.helpers import compose_config, tmp_paths

# One worker runs the whole module, so its fixture (the simulated logs) is built once, not once
# per pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("simulator")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """The default simulation (8,000 courses), written to a temp folder."""
    tmp = tmp_path_factory.mktemp("sim")
    cfg = compose_config(overrides=tmp_paths(tmp))
    return cfg, run_simulate(cfg)


@pytest.mark.xfail(strict=True, reason=(
    "issue 27: with the measured gate error (conf/simulate/gate_error) and the generator's own "
    "tasks, the rule policy misses the seed's ideal-path (55.9%) and first-attempt (67.4%) "
    "ranges and overflows 1.5% of courses; data/README.md, Calibration. The world was not "
    "re-tuned toward the ranges; strict: it fails loudly once they hold again"))
def test_default_world_is_calibrated_to_the_seed_note(simulated):
    _, summary = simulated
    assert summary["courses"] == 8000  # the default config
    for key, check in summary["seed_ranges"].items():
        lo, hi = SEED_RANGES[key]
        assert lo <= check["value"] <= hi, f"{key}={check['value']:.3f} outside {lo}-{hi}"
    assert 0.02 <= summary["overflow_course_share"] <= 0.05


def test_check_ranges_flags_values_outside_the_seed(simulated):
    _, summary = simulated
    broken = json.loads(json.dumps(summary))
    broken["cost_per_course_usd"] = 0.55
    assert not check_ranges(broken)["cost_per_course_usd"]["ok"]


def test_outputs_are_written_and_logs_obey_the_contract(simulated, catalog):
    cfg, summary = simulated
    loaded = read_attempts(cfg.paths.logs, known_fields=catalog.fields,
                           known_tiers=catalog.tier_names)
    assert loaded.counts["quarantined"] == 0
    assert loaded.counts["valid"] == summary["logged_policy"]["attempt_rows"]
    assert set(loaded.frame["provider"]) == {"simulator"}
    assert json.loads(Path(cfg.paths.simulate_summary).read_text())["courses"] == 8000


def test_logged_propensities_match_epsilon_greedy(simulated):
    cfg, _ = simulated
    frame = read_attempts(cfg.paths.logs).frame
    first = frame[frame["attempt"] == 1]
    eps, k = float(cfg.simulate.epsilon), 3
    explored = first[first["start_source"] == "exploration"]
    assert 0.07 < len(explored) / len(first) < 0.13
    static = first["field"].map(lambda f: cfg.fields[f].static_tier)
    on_static = first[(first["tier"] == static) & (first["start_source"] != "exploration")
                      & (first["escalation_reason"].isna())]
    assert np.allclose(on_static["propensity"], 1 - eps + eps / k)
    off_static = first[(first["tier"] != static) & (first["tier"] != "gemini-2.5-flash")]
    assert np.allclose(off_static["propensity"], eps / k)
    overflow = first[first["escalation_reason"] == "context_overflow"]
    assert len(overflow) and (overflow["tier"] == "gemini-2.5-flash").all()
    assert (overflow["propensity"] == 1.0).all()


@pytest.fixture(scope="module")
def world(cfg):
    """conf/simulate as router-simulate types it."""
    return world_settings(cfg.simulate)


def test_same_seed_same_data_and_other_seed_other_data(catalog, world):
    a = simulate_world(world, catalog, n_courses=50)
    b = simulate_world(world, catalog, n_courses=50)
    c = simulate_world(world, catalog, n_courses=50, seed=7)
    pd.testing.assert_frame_equal(a.tasks, b.tasks)
    assert np.array_equal(a.cube.similarity, b.cube.similarity)
    assert not np.array_equal(a.cube.similarity[:10], c.cube.similarity[:10])


def test_outcome_table_round_trips_to_the_same_replay(simulated, catalog):
    cfg, summary = simulated
    tasks = pd.read_parquet(cfg.paths.tasks)
    outcomes = pd.read_parquet(cfg.paths.outcomes)
    cube = cube_from_table(tasks, outcomes, catalog)
    res = replay(cube, static_starts(tasks, catalog), catalog)
    assert res.calls.sum() == summary["attempts"]
    with pytest.raises(ValueError, match="every task needs every tier"):
        cube_from_table(tasks, outcomes.iloc[1:], catalog)


def test_cheaper_tiers_fail_more_on_harder_and_more_structured_fields(catalog, world):
    """The world's outcome model (true quality and schema), whatever the gate sees."""
    world = simulate_world(world, catalog, n_courses=300)
    passed = (world.cube.quality[:, :3, 0] >= 0.75) & world.cube.schema_valid[:, :3, 0]
    by_tier = passed.mean(axis=0)
    assert by_tier[0] < by_tier[1] < by_tier[2]
    frame = pd.DataFrame({"field": world.tasks["field"], "cheap": passed[:, 0]})
    rate = frame.groupby("field")["cheap"].mean()
    assert rate["pedagogical_strategy"] < rate["section_title"] < rate["min_lessons_check"]
    summary = calibration_summary(world, replay(world.cube, static_starts(
        world.tasks, catalog), catalog), catalog)
    assert summary["tasks"] == len(world.tasks)


def static_starts(tasks, catalog):
    return StaticRules(catalog).static_starts(tasks["field"])


@pytest.mark.parametrize("bounds", [(1, 2), (0, 5), (3, 3)])
def test_summed_draws_take_the_same_values_as_one_draw_per_row(bounds):
    """The vectorised exercise counts must draw what the per-row loop drew (and leave the
    generator where it left it): the simulated world may not change."""
    counts = np.random.default_rng(1).integers(0, 7, 500)
    looped, summed = np.random.default_rng(5), np.random.default_rng(5)
    expected = [looped.integers(bounds[0], bounds[1] + 1, int(k)).sum() for k in counts]
    np.testing.assert_array_equal(summed_uniform_ints(summed, bounds, counts), expected)
    assert looped.bit_generator.state == summed.bit_generator.state


@pytest.mark.parametrize("sd", [0.036, 0.25, 1.0])
def test_fast_normal_draws_numpys_normal_bit_for_bit(sd):
    """fast_normal replaces rng.normal(0, sd) everywhere in the world: same bits, same state."""
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    expected = a.normal(0.0, sd, (20_000, 3))
    np.testing.assert_array_equal(fast_normal(b, sd, (20_000, 3)).view(np.uint64),
                                  expected.view(np.uint64))
    assert a.bit_generator.state == b.bit_generator.state


def test_tasks_are_ordered_numbered_and_described_row_by_row(catalog, cfg, world):
    """What the array-built task table must keep: generation order, per-course ordinals,
    each task's own brief, course id and pass threshold; the tasks and their features are
    the generator's own (`build_tasks` on the analysis_result the world wrote)."""
    from pipeline.generator.tasks import build_tasks, course_analysis
    from pipeline.world.courses import course_result
    from pipeline.world.tasks import simulate_courses

    tasks = simulate_world(world, catalog, n_courses=40, seed=3).tasks
    keys = ["course_index", "phase", "field", "ordinal"]
    pd.testing.assert_frame_equal(tasks[keys], tasks[keys].sort_values(keys, ignore_index=True))
    per_field = tasks.groupby(["course_index", "field"])["ordinal"]
    assert (tasks["ordinal"] == per_field.cumcount()).all()
    per_section = {"section_title", "lesson_content", "exercise", "quality_check"}
    sections = tasks.groupby("course_index")["section_count"].first()
    for (course, field), count in per_field.size().items():
        assert count == (sections[course] if field in per_section else 1)
    drawn = simulate_courses(replace(world, seed=3), 40, np.random.default_rng(3))
    for k, rows in tasks.groupby("course_index"):
        row = rows.iloc[0]
        result = course_result(drawn.iloc[k], row.course_id, replace(world, seed=3), 3)
        generator = {t.task_id: t.router_task() for t in build_tasks(result, catalog.fields)}
        # the logged course counts are the generator's (objectives of every metadata brief)
        assert int(row.objective_count) == course_analysis(result)["objective_count"]
        for r in rows.itertuples():
            g = generator[r.task_id]
            assert (r.brief, r.prompt_tokens, r.context_tokens, r.expected_output_tokens) == (
                g["brief"], g["prompt_tokens"], g["context_tokens"],
                g["expected_output_tokens"])
            assert r.course_id == f"c00003-{r.course_index:06d}"
            assert r.task_id == f"{r.course_id}-{r.field}-{r.ordinal}"
    per_task = Gate.from_catalog(catalog).pass_thresholds(list(tasks["field"]), len(tasks))
    np.testing.assert_array_equal(field_thresholds(catalog, tasks["field"]), per_task)


def test_the_tier_arithmetic_block_size_changes_nothing(catalog, world, monkeypatch):
    """draw_outcomes draws each tier for the whole table, then computes it block by block:
    any block size must give the same cube (so the blocks never touch the draw order)."""
    whole = simulate_world(world, catalog, n_courses=30, seed=5)
    monkeypatch.setattr(outcomes_module, "BLOCK_ROWS", 7)
    blocked = simulate_world(world, catalog, n_courses=30, seed=5)
    assert len(whole.tasks) > 7
    for key, value in vars(whole.cube).items():
        np.testing.assert_array_equal(getattr(blocked.cube, key), value, err_msg=key)
    np.testing.assert_array_equal(blocked.completion_tokens, whole.completion_tokens)


def test_the_world_reads_each_fields_token_figures_from_the_catalog(catalog, world):
    """One token table (conf/fields): a field's figure there moves the world's tasks."""
    from dataclasses import replace

    base = simulate_world(world, catalog, n_courses=30, seed=2).tasks
    fields = {**catalog.fields, "exercise": replace(catalog.fields["exercise"],
                                                    output_tokens=1000)}
    doubled = simulate_world(world, replace(catalog, fields=fields), n_courses=30,
                             seed=2).tasks
    exercise = base["field"] == "exercise"
    ratio = doubled["expected_output_tokens"][exercise] / base["expected_output_tokens"][exercise]
    assert ratio.between(1.99, 2.01).all()
    pd.testing.assert_series_equal(doubled["expected_output_tokens"][~exercise],
                                   base["expected_output_tokens"][~exercise])


@pytest.mark.parametrize(("override", "message"), [
    ("~simulate.noise.task_sd", "simulate.noise.task_sd is missing"),
    ("simulate.quality.floor=0.95", "simulate.quality.floor, ceiling"),
    ("+simulate.fields.exercise.per=lesson", "simulate.fields.exercise: Key 'per'"),
    ("simulate.tiers.qwen3-max.off_topic=2", "simulate.tiers.qwen3-max.off_topic=2.0"),
    ("+simulate.tiers.qwen3-max.speed=2", "simulate.tiers.qwen3-max: Key 'speed'"),
    ("simulate.shifted=true", "simulate.shifted=True: needs a world with an evaluation_shift"),
])
def test_world_settings_name_the_key_at_fault(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        world_settings(compose_config(overrides=[override]).simulate)


def test_a_shifted_world_logs_the_shifted_mix():
    shifted = simulate_job(compose_config(overrides=["simulate=shift", "simulate.shifted=true"]))
    plain = world_settings(compose_config(overrides=["simulate=shift"]).simulate)
    assert shifted.world.courses == plain.shifted_world().courses != plain.courses
    assert shifted.world.courses.domains["mathematics"] == [0.30, 0.30]
    assert shifted.world.tiers == plain.tiers


def test_gate_vs_truth_counts_first_attempts_per_tier(catalog):
    """router-simulate's gate-against-truth table on a cube written by hand: on the cheapest
    tier the gate passes three tasks of which one is truly bad, and fails a good one."""
    from pipeline.simulate_cli import gate_vs_truth
    from router_model.decide.replay import OutcomeCube

    n, tiers = 4, len(catalog.tier_names)
    sim = np.full((n, tiers, 2), 0.9)
    quality = np.full((n, tiers, 2), 0.9)
    sim[:, 0, 0] = [0.9, 0.9, 0.9, 0.5]
    quality[:, 0, 0] = [0.9, 0.9, 0.3, 0.9]
    sim[:, 0, 1] = 0.1  # later attempts do not count
    cube = OutcomeCube(similarity=sim, quality=quality, schema_valid=np.ones((n, tiers, 2), bool),
                       call_cost=np.zeros((n, tiers)), gate_cost=np.zeros((n, tiers)),
                       latency_s=np.zeros((n, tiers)), overflow=np.zeros(n, bool),
                       pass_threshold=np.full(n, 0.75))
    table = gate_vs_truth(cube, catalog)
    cheap = table[catalog.ladder[0]]
    assert cheap["gate_pass"] == 0.75 and cheap["true_pass"] == 0.75
    assert cheap["bad_among_gate_passes"] == pytest.approx(1 / 3)
    assert cheap["phi"] == pytest.approx(-1 / 3)  # gate and truth disagree on two of four
    assert np.isnan(table[catalog.ladder[1]]["phi"])  # everything passes: no agreement to measure
