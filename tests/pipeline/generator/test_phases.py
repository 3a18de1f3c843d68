"""Phases 4 and 5 as the seed has them, against the provider simulator (real HTTP, MiniLM)."""

from __future__ import annotations

import json

import pytest

from pipeline.generator.cli import format_summary, run
from pipeline.generator.inputs import parse_analysis_result
from pipeline.generator.phases import one_tier_up, plan_extension
from router_model.logs.attempts import read_attempts
from tests.pipeline.generator.helpers import EXAMPLES, generate_config, simulator


def plain_ids(logs):
    """The planned task ids of logged rows (the log's ids carry the run: `<task>@<run>`)."""
    return logs["task_id"].str.split("@").str[0]


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("PROVIDER_SIM_API_KEY", "k")


def test_the_extension_plan_fills_the_shortest_sections_first():
    assert plan_extension([2, 4, 3], 10) == {0: 1}
    assert plan_extension([2, 4, 3], 9) == {}
    assert plan_extension([2, 2], 7) == {0: 2, 1: 1}
    assert plan_extension([5], 3) == {}
    assert one_tier_up("gpt-oss-20b", ["gpt-oss-20b", "gpt-oss-120b", "qwen3-max"]) == \
        "gpt-oss-120b"
    assert one_tier_up("qwen3-max", ["gpt-oss-20b", "gpt-oss-120b", "qwen3-max"]) == \
        "qwen3-max"


@pytest.mark.slow
def test_phase5_extends_a_short_section(tmp_path, embedder, catalog):
    data = json.loads((EXAMPLES / "short.json").read_text())
    planned = sum(len(s["lessons"]) for s in data["sections"])
    data["min_lessons"] = planned + 3
    result = parse_analysis_result(data)
    with simulator() as (url, _):
        summary = run(generate_config(tmp_path, url), [result], embedder)
    course = summary["courses"][result.course_id]
    p5 = course["phase5"]
    assert p5["required"] == planned + 3 and p5["planned"] == planned
    assert sum(p5["extended"].values()) >= 3 and p5["final"] >= p5["required"]
    saved = json.loads((tmp_path / f"out/courses/{result.course_id}.json").read_text())
    lessons = [lesson for s in saved["course"]["sections"] for lesson in s["lessons"]]
    assert len(lessons) == planned + sum(p5["extended"].values())
    assert all(lesson["exercises"] for lesson in lessons)  # new lessons have exercises too
    logs = read_attempts(tmp_path / "out/attempts").frame
    extended = {t for t in plain_ids(logs) if t.endswith("-p5")}
    assert any("-lesson_content-" in t for t in extended)
    assert any("-exercise-" in t for t in extended)
    assert "extended to" in format_summary(summary)


@pytest.mark.slow
def test_phase4_regenerates_what_the_section_review_fails_one_tier_up(tmp_path, embedder,
                                                                        catalog):
    """A world where outputs are weak (true quality 0.3-0.7) and a lenient gate (pass at
    0.2) lets them through: the section review, which reads the generated lessons and
    exercises, fails the weak ones, and those items are generated again, alone, one tier
    above the tier that wrote them."""
    result = parse_analysis_result(json.loads((EXAMPLES / "short.json").read_text()))
    with simulator(overrides=["simulate.quality.floor=0.3", "simulate.quality.ceiling=0.7",
                              "provider_sim.judge_sd=0.0"]) as (url, _):
        summary = run(generate_config(tmp_path, url, "gate.pass_threshold=0.2",
                                      "gate.severe_threshold=0.1"), [result], embedder)
    course = summary["courses"][result.course_id]
    regenerated = course["phase4"]["regenerated"]
    assert regenerated, course["phase4"]
    logs = read_attempts(tmp_path / "out/attempts").frame
    fields = json.loads((tmp_path / f"out/courses/{result.course_id}.json").read_text())
    for base, items in regenerated.items():
        again = logs[plain_ids(logs) == f"{base}-p4"].sort_values("attempt")
        first = again.iloc[0]
        assert first["start_source"] == "override"
        assert first["escalation_reason"] == "phase4_review"
        wrote = fields["fields"][base]["tier"]
        assert first["tier"] == one_tier_up(wrote, catalog.ladder)
        assert set(fields["fields"][f"{base}-p4"]["item_similarity"]) == set(items)
    assert "review regenerated" in format_summary(summary)


def test_a_checks_routing_features_count_its_review_at_the_planned_size(catalog):
    """The check routes on the review's planned size, before and after phase 3 alike (the
    world computes the same); the prompt it sends carries the generated text itself."""
    from pipeline.generator.tasks import build_tasks

    result = parse_analysis_result(json.loads((EXAMPLES / "typical.json").read_text()))
    tasks = build_tasks(result, catalog.fields)
    check = next(t for t in tasks if t.field == "quality_check")
    bare = next(t for t in tasks if t.field == "section_title")
    before = check.router_task()["prompt_tokens"]
    assert check.review_chars > 0 and bare.review_chars == 0
    assert before > bare.router_task()["prompt_tokens"] + check.review_chars // 4 - 200
    check.review = [{"id": "s0-l0", "brief": "b", "text": "generated " * 300}]
    assert check.router_task()["prompt_tokens"] == before
    assert "generated generated" in check.messages(list(check.items))[1]["content"]
