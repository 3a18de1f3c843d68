"""The generator's input checks agree with what the router accepts: a course that passes them
routes, and what the router would refuse is refused up front with its JSON path."""

from __future__ import annotations

import copy
import json

import pytest

from pipeline.generator.inputs import InputError, load_analysis_result, parse_analysis_result
from pipeline.generator.tasks import build_tasks
from router_model.serve.requests import BRIEF_MAX_CHARS, TaskIn
from tests.helpers import REPO


@pytest.fixture()
def course() -> dict:
    return json.loads((REPO / "data" / "examples" / "long.json").read_text())


def _long_brief(seed: int) -> dict:
    sentence = f"Work through worked example {seed} step by step and explain each choice. "
    return {"objectives": [sentence * 12], "key_points": [sentence * 12]}


def test_a_realistic_course_with_long_briefs_routes(course, catalog):
    """12 lessons with ~1.8k-character briefs: the lessons' batch brief runs past the
    router's brief limit, which cuts it instead of refusing the task."""
    course["sections"][0]["lessons"] = [{"brief": _long_brief(i), "exercises": 2}
                                        for i in range(12)]
    tasks = build_tasks(parse_analysis_result(course), catalog.fields)
    briefs = [len(t.router_task()["brief"]) for t in tasks]
    assert max(briefs) > BRIEF_MAX_CHARS
    for task in tasks:
        routed = TaskIn.model_validate(task.router_task())
        assert len(routed.brief) == min(len(task.router_task()["brief"]), BRIEF_MAX_CHARS)


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.update({f"extra_{i}": i for i in range(33)}), "33 extra keys"),
    (lambda a: a.update({"notes": "n" * 2_000}), "notes: value is at least 2002 chars"),
    (lambda a: a.update({"k" * 65: 1}), "key is 65 chars"),
])
def test_what_the_router_would_refuse_is_refused_up_front(course, change, message):
    bad = copy.deepcopy(course)
    change(bad["analysis"])
    with pytest.raises(InputError, match=message) as caught:
        parse_analysis_result(bad)
    assert "$.analysis" in str(caught.value) and len(str(caught.value)) < 500


def test_a_deeply_nested_input_file_is_one_clear_error(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(InputError, match="nested too deeply"):
        load_analysis_result(path)


def test_a_fifo_or_a_device_as_input_is_refused_not_waited_on(tmp_path):
    import os

    fifo = tmp_path / "course.json"
    os.mkfifo(fifo)
    zero = tmp_path / "zero.json"
    zero.symlink_to("/dev/zero")
    for path in (fifo, zero):
        with pytest.raises(InputError, match="not a regular file"):
            load_analysis_result(path)


def test_an_oversized_input_is_refused_before_it_is_read(tmp_path, monkeypatch):
    import pipeline.generator.inputs as inputs

    monkeypatch.setattr(inputs, "MAX_INPUT_BYTES", 1_000)
    path = tmp_path / "big.json"
    path.write_text(json.dumps({"topic": "x" * 2_000}))
    with pytest.raises(InputError, match="more than the 1,000"):
        load_analysis_result(path)
