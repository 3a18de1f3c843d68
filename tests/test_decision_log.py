"""The buffered decision log (issue 14): writes leave the request path, yet a clean shutdown
loses no decision, whether the service closes the log or the interpreter just exits."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from router_model.contract import Decision, DecisionLogRecord
from router_model.decision_log import DecisionLog

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
    code = ("from router_model.decision_log import DecisionLog\n"
            f"log = DecisionLog({str(path)!r}, flush_s=3600)\n"
            "for i in range(100):\n"
            "    log.write('route', {'field': 'exercise'}, {'decision_id': str(i)})\n")
    subprocess.run([sys.executable, "-c", code], check=True,
                   cwd=Path(__file__).resolve().parents[1])
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
