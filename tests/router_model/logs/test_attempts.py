"""The attempt-log contract: round trips in both formats and quarantine of bad rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pandas as pd
import pytest

from router_model.contract import AttemptRecord
from router_model.logs.attempts import (
    LogReadError,
    arrow_schema,
    read_attempts,
    write_attempts,
)

FIELDS = ["course_title", "lesson_content"]
TIERS = ["gpt-oss-20b", "qwen3-max"]


def record(**changes) -> dict:
    base = AttemptRecord(
        timestamp=datetime(2025, 9, 1, 12, 0, tzinfo=UTC), course_id="c1", task_id="c1-t1",
        field="course_title", phase=2, attempt=1, tier="gpt-oss-20b", model="openai/gpt-oss-20b",
        provider="simulator", prompt_tokens=1200, completion_tokens=40, context_tokens=9000,
        analysis={"domain": "arts", "language": "en", "complexity": 0.4, "section_count": 5,
                  "tone": "playful"},
        similarity=0.81, schema_valid=True, passed=True, error_kind="none", cost_usd=0.0012,
        latency_ms=850.0, decision_id="d1", router_version="rules-static-v1",
        start_source="exploration", predicted_pass_prob=0.9, propensity=0.0333,
        escalation_reason=None,
    ).model_dump(mode="json")
    base.update(changes)
    return base


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_round_trip_keeps_every_value(tmp_path, suffix):
    rows = [record(), record(task_id="c1-t2", attempt=2, similarity=None, passed=False,
                             schema_valid=False, error_kind="schema", predicted_pass_prob=None,
                             escalation_reason="schema_error", field="lesson_content", phase=3)]
    path = write_attempts(rows, tmp_path / f"log{suffix}")
    loaded = read_attempts(path, known_fields=FIELDS, known_tiers=TIERS)
    assert loaded.counts == {"files": 1, "valid": 2, "quarantined": 0, "files_quarantined": 0}
    frame = loaded.frame
    assert frame["similarity"].iloc[0] == pytest.approx(0.81)
    assert pd.isna(frame["similarity"].iloc[1]) and pd.isna(frame["predicted_pass_prob"].iloc[1])
    assert frame["analysis.tone"].tolist() == ["playful", "playful"]  # extra key carried through
    assert frame["timestamp"].iloc[0] == pd.Timestamp("2025-09-01 12:00", tz="UTC")
    # Every row re-validates through the pydantic model: the contract is one thing.
    again = tmp_path / f"again{suffix}"
    write_attempts(frame, again)
    assert read_attempts(again).frame.drop(columns="timestamp").equals(
        frame.drop(columns="timestamp"))


def test_parquet_file_has_the_contract_schema(tmp_path):
    import pyarrow.parquet as pq

    path = write_attempts([record()], tmp_path / "log.parquet")
    schema = pq.read_schema(path)
    for field in arrow_schema():
        assert schema.field(field.name).type == field.type


BAD_ROWS = [
    ({"prompt_tokens": "many"}, "prompt_tokens='many': expected a number"),
    ({"prompt_tokens": -5}, "prompt_tokens=-5: must be >= 0"),
    ({"completion_tokens": 1.5}, "completion_tokens=1.5: expected a whole number"),
    ({"similarity": 1.2}, "similarity=1.2: must be <= 1.0"),
    ({"similarity": -0.1}, "similarity=-0.1: must be >= 0.0"),
    ({"field": "course_tagline"}, "field='course_tagline': unknown field name"),
    ({"tier": "gpt-7"}, "tier='gpt-7': unknown tier"),
    ({"schema_valid": "yes"}, "schema_valid='yes': expected true/false"),
    ({"error_kind": "gremlins"}, "error_kind='gremlins': expected one of"),
    ({"propensity": 0}, "propensity=0.0: must be > 0.0"),
    ({"timestamp": "yesterday"}, "timestamp='yesterday': expected an ISO-8601 time"),
    ({"course_id": None}, "course_id is missing"),
    ({"passed": True, "schema_valid": False}, "passed=true with schema_valid=false"),
    ({"surprise": 1}, "unknown column 'surprise'"),
]


@pytest.mark.parametrize(("change", "reason"), BAD_ROWS)
def test_malformed_rows_are_quarantined_with_their_reason(tmp_path, change, reason):
    path = tmp_path / "log.jsonl"
    with path.open("w") as fh:
        fh.write(json.dumps(record()) + "\n")
        fh.write(json.dumps(record(**change)) + "\n")
    quarantine = tmp_path / "quarantine.jsonl"
    loaded = read_attempts(path, known_fields=FIELDS, known_tiers=TIERS,
                           quarantine_path=quarantine)
    assert loaded.counts == {"files": 1, "valid": 1, "quarantined": 1, "files_quarantined": 0}
    assert reason in loaded.quarantined["reason"].iloc[0]
    saved = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert saved[0]["row"] == 2 and reason in saved[0]["reason"]
    assert saved[0]["record"]["task_id"] == "c1-t1"  # the bad row itself is kept


def test_missing_required_field_and_broken_json_lines_are_quarantined(tmp_path):
    path = tmp_path / "log.jsonl"
    missing = record()
    del missing["tier"]
    path.write_text(json.dumps(record()) + "\n{not json\n" + json.dumps(missing) + "\n[1, 2]\n")
    loaded = read_attempts(path)
    reasons = dict(zip(loaded.quarantined["row"], loaded.quarantined["reason"], strict=True))
    assert loaded.counts["valid"] == 1
    assert reasons[2].startswith("line is not valid JSON")
    assert reasons[3] == "tier is missing"
    assert reasons[4] == "line is not a JSON object"


def test_parquet_rows_are_validated_too(tmp_path):
    path = write_attempts([record(), record(prompt_tokens=-1)], tmp_path / "log.parquet")
    loaded = read_attempts(path)
    assert loaded.counts["quarantined"] == 1
    assert loaded.quarantined["row"].tolist() == [2]


def test_an_unreadable_file_gets_a_clear_error(tmp_path):
    garbage = tmp_path / "log.parquet"
    garbage.write_bytes(b"this is not parquet")
    with pytest.raises(LogReadError, match="not a readable Parquet file"):
        read_attempts(garbage)
    text = tmp_path / "notes.jsonl"
    text.write_text("hello\nworld\n")
    with pytest.raises(LogReadError, match="is it really a JSONL log"):
        read_attempts(text)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_attempts(tmp_path / "nowhere")


def test_folders_are_expanded_and_all_files_read(tmp_path):
    write_attempts([record()], tmp_path / "logs" / "a.jsonl")
    write_attempts([record(task_id="c1-t9")], tmp_path / "logs" / "day2" / "b.parquet")
    loaded = read_attempts(tmp_path / "logs")
    assert loaded.counts == {"files": 2, "valid": 2, "quarantined": 0, "files_quarantined": 0}


@pytest.mark.parametrize("limit", [None, 0])
def test_text_read_from_many_files_is_one_arrow_chunk_unless_too_large(tmp_path, monkeypatch,
                                                                        limit):
    import router_model.logs.attempts as attempt_log

    if limit is not None:  # as if every column were over Arrow's 2 GB string limit
        monkeypatch.setattr(attempt_log, "ONE_CHUNK_MAX_BYTES", limit)
    for day in range(3):
        write_attempts([record(task_id=f"c{day}-t{i}", course_id=f"c{day}") for i in range(4)],
                       tmp_path / "logs" / f"day{day}.parquet")
    frame = read_attempts(tmp_path / "logs").frame
    chunks = frame["task_id"].array.__arrow_array__().num_chunks
    assert chunks == (1 if limit is None else 3)
    assert frame["task_id"].tolist() == [f"c{d}-t{i}" for d in range(3) for i in range(4)]
    assert frame["course_id"].iloc[[11, 0, 5]].tolist() == ["c2", "c0", "c1"]


def test_lone_surrogates_huge_integers_and_huge_values_are_quarantined_briefly(tmp_path):
    path = tmp_path / "log.jsonl"
    lines = [json.dumps(record()),
             json.dumps(record(task_id="c1-t2", brief="x")).replace('"x"', '"\\udc80x"'),
             json.dumps(record(task_id="c1-t3", prompt_tokens=10**30)),
             json.dumps(record(task_id="c1-t4", field="f" * 5_000_000))]
    path.write_text("\n".join(lines) + "\n")
    loaded = read_attempts(path, known_fields=["course_title"], known_tiers=TIERS)
    reasons = dict(zip(loaded.quarantined["row"], loaded.quarantined["reason"], strict=True))
    assert loaded.counts["valid"] == 1
    assert "brief: a lone UTF-16 surrogate" in reasons[2]
    assert "prompt_tokens: an integer of 31 digits, outside the 64-bit" in reasons[3]
    assert "unknown field name" in reasons[4] and len(reasons[4]) < 200
