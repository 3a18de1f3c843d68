"""The buffered decision log (issue 14): writes leave the request path, yet a clean shutdown
loses no decision, whether the service closes the log or the interpreter just exits."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router_model.contract import Decision, DecisionLogRecord
from router_model.logs.decisions import DecisionLog, _finite
from tests.helpers import REPO

DECISION = Decision(decision_id="x" * 32, router_version="v", start_tier="gpt-oss-20b",
                    model="openai/gpt-oss-20b", provider="openrouter", base_url="-",
                    source="rules", propensity=1.0, ladder=["gpt-oss-20b"]).to_dict()


def _ids(path: Path) -> list[str]:
    return [DecisionLogRecord.model_validate_json(line).decision.decision_id
            for line in path.read_text().splitlines()]


def test_close_writes_every_queued_decision(tmp_path):
    log = DecisionLog(tmp_path / "d.jsonl", flush_s=3600)  # the timer never fires here
    for i in range(500):
        log.write("route", {"field": "exercise", "i": i}, {**DECISION, "decision_id": f"{i}"})
    log.close()
    assert _ids(tmp_path / "d.jsonl") == [str(i) for i in range(500)]
    log.close()  # twice is harmless
    log.write("route", {"field": "exercise"}, DECISION)  # after close: nothing, no error


def test_the_timer_writes_without_a_close(tmp_path):
    log = DecisionLog(tmp_path / "d.jsonl", flush_s=0.01)
    log.write("route", {"field": "exercise"}, DECISION)
    deadline = time.monotonic() + 10
    while not (tmp_path / "d.jsonl").read_text() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _ids(tmp_path / "d.jsonl") == [DECISION["decision_id"]]
    log.close()


def test_an_exiting_interpreter_writes_the_queue(tmp_path):
    path = tmp_path / "d.jsonl"
    code = ("from router_model.logs.decisions import DecisionLog\n"
            f"log = DecisionLog({str(path)!r}, flush_s=3600)\n"
            "for i in range(100):\n"
            "    log.write('route', {'field': 'exercise'}, {'decision_id': str(i)})\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=REPO)
    lines = path.read_text().splitlines()
    assert [json.loads(x)["decision"]["decision_id"] for x in lines] == [
        str(i) for i in range(100)]


def test_values_json_cannot_carry_are_counted_not_written(tmp_path):
    log = DecisionLog(tmp_path / "d.jsonl")
    log.write("route", {"field": "exercise"}, {**DECISION, "x": [float("inf")]})
    log.write("route", {"field": "\ud800"}, DECISION)
    log.write("route", {"field": "exercise"}, DECISION)
    log.close()
    assert _ids(tmp_path / "d.jsonl") == [DECISION["decision_id"]]
    assert log.dropped["unwritten_lines"] == 2


def test_a_requests_decisions_share_one_timestamp_and_a_bad_one_drops_alone(tmp_path):
    log = DecisionLog(tmp_path / "d.jsonl")
    rows = [({"field": "exercise"}, {**DECISION, "decision_id": f"{i}"}, None)
            for i in range(5)]
    rows[2] = ({"field": "exercise"}, {**DECISION, "decision_id": "2",
                                       "expected_costs": {"t": float("nan")}}, None)
    log.write_many("route_batch", rows)
    log.write_many("route_batch", [])  # nothing to write: no line, no error
    log.close()
    assert _ids(tmp_path / "d.jsonl") == ["0", "1", "3", "4"]
    stamps = {json.loads(line)["timestamp"] for line in
              (tmp_path / "d.jsonl").read_text().splitlines()}
    assert len(stamps) == 1 and log.dropped["unwritten_lines"] == 1


def _finite_by_steps(value) -> bool:
    """The NaN check as first written, one stack step per value: the oracle."""
    stack = [value]
    while stack:
        v = stack.pop()
        kind = type(v)
        if kind is str or v is None:
            continue
        if kind is float or isinstance(v, float):
            if v - v != 0.0:
                return False
        elif kind is dict:
            stack.extend(v.values())
        elif kind is list or kind is tuple:
            stack.extend(v)
    return True


_LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=3),
                    st.floats().map(np.float64), st.integers(0, 3).map(np.int64))


@given(st.recursive(_LEAVES, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.lists(inner, max_size=3).map(tuple),
    st.dictionaries(st.text(max_size=2), inner, max_size=4)), max_leaves=20))
@settings(max_examples=500, deadline=None)
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's inf - inf, as in production
def test_the_nan_check_sees_what_the_step_by_step_walk_sees(value):
    assert _finite(value) == _finite_by_steps(value)
    assert _finite({**DECISION, "pass_probabilities": {"a": value}}) == _finite_by_steps(value)
