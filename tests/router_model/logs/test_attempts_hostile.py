"""The log reader never crashes, never wraps, and quarantines what the contract forbids
(issue 12, items 2, 3 and 4), with a fuzz test over JSONL and Parquet corruptions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router_model.contract import AttemptRecord
from router_model.logs.attempts import read_attempts, write_attempts

GOOD = AttemptRecord(
    timestamp=datetime(2025, 9, 1, 12, 0, tzinfo=UTC), course_id="c1", task_id="c1-t0",
    field="course_title", phase=2, attempt=1, tier="gpt-oss-20b", model="openai/gpt-oss-20b",
    provider="simulator", prompt_tokens=1200, completion_tokens=40, context_tokens=9000,
    analysis={"domain": "arts", "complexity": 0.4, "tone": "playful"}, similarity=0.81,
    schema_valid=True, passed=True, error_kind="none", cost_usd=0.0012, latency_ms=850.0,
    decision_id="d1", router_version="rules-static-v1", start_source="exploration",
    predicted_pass_prob=0.9, propensity=0.0333).model_dump(mode="json")


def good(i: int, **changes) -> dict:
    return {**GOOD, "task_id": f"c1-t{i}", **changes}


def line(rec: dict, **raw: str) -> bytes:
    """One JSONL line; `raw` puts literal JSON text (NaN, 1e400, ...) in a top-level key."""
    text = json.dumps({**rec, **{k: f"@@{k}@@" for k in raw}})
    for key, value in raw.items():
        text = text.replace(f'"@@{key}@@"', value)
    return text.encode() + b"\n"


def read(tmp_path: Path, lines: list[bytes], name: str = "log.jsonl"):
    path = tmp_path / name
    path.write_bytes(b"".join(lines))
    return read_attempts(path, quarantine_path=tmp_path / "q" / "quarantine.jsonl")


# ---- item 2: extreme numbers crash the reader or wrap ----------------------------------------


@pytest.mark.parametrize(("key", "raw", "reason"), [
    ("prompt_tokens", "Infinity", "prompt_tokens=Infinity: not a finite number"),
    ("attempt", "Infinity", "attempt=Infinity: not a finite number"),
    ("prompt_tokens", "-Infinity", "prompt_tokens=-Infinity: not a finite number"),
    ("prompt_tokens", "1e400", "prompt_tokens=1e400: not a finite number"),
    ("prompt_tokens", "1e30", "prompt_tokens=1e+30: outside the 64-bit integer range"),
    ("prompt_tokens", str(2**70), "outside the 64-bit integer range"),
    ("completion_tokens", str(2**64), "outside the 64-bit integer range"),
])
def test_extreme_numbers_are_quarantined_not_crashed_on_or_wrapped(tmp_path, key, raw, reason):
    loaded = read(tmp_path, [line(good(0)), line(good(1), **{key: raw}), line(good(2))])
    assert loaded.counts["valid"] == 2 and loaded.counts["quarantined"] == 1
    assert reason in loaded.quarantined["reason"].iloc[0]
    assert loaded.quarantined["row"].iloc[0] == 2
    assert loaded.frame["prompt_tokens"].tolist() == [1200, 1200]  # nothing wrapped


def test_extreme_numbers_in_parquet_float_columns_are_quarantined(tmp_path):
    path = write_attempts([good(0), good(1), good(2), good(3)], tmp_path / "log.parquet")
    table = pq.read_table(path)
    bad = {"prompt_tokens": pa.array([1200.0, float("inf"), 1e30, 1200.0]),
           "cost_usd": pa.array([0.1, 0.1, 0.1, float("nan")])}
    for name, values in bad.items():
        table = table.set_column(table.schema.get_field_index(name), name, values)
    pq.write_table(table, path)
    loaded = read_attempts(path)
    reasons = dict(zip(loaded.quarantined["row"], loaded.quarantined["reason"], strict=True))
    assert loaded.frame["task_id"].tolist() == ["c1-t0"]
    assert "prompt_tokens=inf: not a finite number" in reasons[2]
    assert "outside the 64-bit integer range" in reasons[3]
    assert "cost_usd=nan: not a finite number" in reasons[4]


# ---- item 3: what the contract forbids --------------------------------------------------------


@pytest.mark.parametrize(("raw", "reason"), [
    ({"cost_usd": "Infinity"}, "cost_usd=Infinity: not a finite number"),
    ({"latency_ms": "Infinity"}, "latency_ms=Infinity: not a finite number"),
    ({"similarity": "NaN"}, "similarity=NaN: not a finite number"),
    ({"timestamp": '"now"'}, "timestamp='now': expected an ISO-8601 time"),
    ({"timestamp": '"today"'}, "timestamp='today': expected an ISO-8601 time"),
    ({"timestamp": "5"}, "timestamp=5: expected an ISO-8601 time"),
    ({"timestamp": '"yesterday at noon"'}, "expected an ISO-8601 time"),
    ({"analysis": '{"complexity": NaN}'}, "analysis.complexity=NaN: not a finite number"),
    ({"analysis": '{"tone": Infinity}'}, "analysis.tone=Infinity: not a finite number"),
])
def test_values_the_contract_forbids_are_quarantined(tmp_path, raw, reason):
    loaded = read(tmp_path, [line(good(0)), line(good(1), **raw)])
    assert loaded.frame["task_id"].tolist() == ["c1-t0"]
    assert reason in loaded.quarantined["reason"].iloc[0], loaded.quarantined["reason"].iloc[0]


@pytest.mark.parametrize("stamp", ["2025-09-01T12:00:00Z", "2025-09-01T12:00:00.123456+02:00",
                                   "2025-09-01 12:00:00", "2025-09-01"])
def test_iso_timestamps_are_still_read(tmp_path, stamp):
    loaded = read(tmp_path, [line(good(0, timestamp=stamp))])
    assert loaded.counts["valid"] == 1


def test_non_utf8_lines_are_quarantined_not_replaced(tmp_path):
    broken = line(good(1)).replace(b"simulator", b"simul\xff\xfetor")
    loaded = read(tmp_path, [line(good(0)), broken, line(good(2))])
    assert loaded.frame["task_id"].tolist() == ["c1-t0", "c1-t2"]
    assert "\ufffd" not in "".join(loaded.frame["provider"])
    assert loaded.quarantined["reason"].iloc[0].startswith("line is not valid UTF-8 (byte ")


def test_duplicated_attempts_are_quarantined(tmp_path):
    twin_pass = good(5)
    twin_fail = good(5, passed=False, similarity=0.5, error_kind="low_similarity")
    loaded = read(tmp_path, [line(good(0)), line(good(0)), line(good(0)),  # exact copies
                             line(twin_pass), line(good(6)), line(twin_fail)])
    assert loaded.frame["task_id"].tolist() == ["c1-t0", "c1-t6"]
    reasons = dict(zip(loaded.quarantined["row"], loaded.quarantined["reason"], strict=True))
    assert set(reasons) == {2, 3, 4, 6}
    assert reasons[2].startswith("exact duplicate of task_id='c1-t0' attempt=1")
    assert "different content" in reasons[4] and "different content" in reasons[6]


def test_duplicates_across_files_are_found(tmp_path):
    write_attempts([good(0), good(1)], tmp_path / "logs" / "a.jsonl")
    write_attempts([good(1)], tmp_path / "logs" / "b.parquet")
    loaded = read_attempts(tmp_path / "logs")
    assert loaded.counts["valid"] == 2 and loaded.counts["quarantined"] == 1
    assert loaded.quarantined["source"].iloc[0].endswith("b.parquet")


# ---- item 4: one unreadable file must not abort the run ---------------------------------------


def test_unreadable_files_are_quarantined_and_the_rest_is_read(tmp_path):
    logs = tmp_path / "logs"
    write_attempts([good(0), good(1)], logs / "good.jsonl")
    write_attempts([good(2)], logs / "good.parquet")
    (logs / "empty.parquet").write_bytes(b"")
    (logs / "utf16.jsonl").write_bytes(line(good(3)).decode().encode("utf-16"))
    (logs / "binary.jsonl").write_bytes(bytes(range(256)) * 8)
    (logs / "garbage.parquet").write_bytes(b"PAR1" + b"\x00" * 100)
    quarantine = logs / "quarantine.jsonl"  # inside the logs folder, on purpose
    loaded = read_attempts(logs, quarantine_path=quarantine)
    assert sorted(loaded.frame["task_id"]) == ["c1-t0", "c1-t1", "c1-t2"]
    assert loaded.counts["files_quarantined"] == 4
    files = loaded.quarantined[loaded.quarantined["row"].isna()]
    assert sorted(Path(s).name for s in files["source"]) == [
        "binary.jsonl", "empty.parquet", "garbage.parquet", "utf16.jsonl"]
    assert all(r.startswith("file skipped: ") for r in files["reason"])
    before = quarantine.read_text()
    again = read_attempts(logs, quarantine_path=quarantine)  # the quarantine is not a log
    assert quarantine.read_text() == before and len(again.quarantined) == len(loaded.quarantined)


def test_a_quarantine_file_under_another_name_is_not_read_as_logs(tmp_path):
    logs = tmp_path / "logs"
    write_attempts([good(0)], logs / "good.jsonl")
    read_attempts(logs / "good.jsonl", quarantine_path=logs / "q.jsonl")
    (logs / "bad.jsonl").write_bytes(line(good(1), prompt_tokens="Infinity"))
    read_attempts(logs, quarantine_path=logs / "old_quarantine.jsonl")
    loaded = read_attempts(logs, quarantine_path=tmp_path / "new_quarantine.jsonl")
    reasons = loaded.quarantined["reason"].tolist()
    assert sum("not a finite number" in r for r in reasons) == 1
    assert any("a quarantine file" in r for r in reasons)


# ---- fuzz -------------------------------------------------------------------------------------

CORRUPTIONS = {
    # name: (key, raw JSON text) put into one line
    "nan": ("similarity", "NaN"), "inf": ("cost_usd", "Infinity"),
    "ninf": ("latency_ms", "-Infinity"), "e400": ("prompt_tokens", "1e400"),
    "huge_int": ("context_tokens", str(2**70)), "e30": ("completion_tokens", "1e30"),
    "neg": ("prompt_tokens", "-1"), "frac": ("attempt", "1.5"), "bool": ("phase", "true"),
    "str": ("prompt_tokens", '"many"'), "null": ("task_id", "null"),
    "now": ("timestamp", '"now"'), "num_ts": ("timestamp", "5"),
    "bad_kind": ("error_kind", '"boom"'), "big_sim": ("similarity", "1.5"),
    "obj": ("tier", "{}"), "list": ("course_id", "[1]"), "zero_prop": ("propensity", "0"),
}
BROKEN_LINES = [b"{not json", b"[1, 2]", b'"text"', b"\xff\xfe{}", b"{" * 5000 + b"}" * 5000,
                b'{"task_id": "x"', b"null"]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.lists(st.one_of(st.just("good"), st.sampled_from(sorted(CORRUPTIONS)),
                               st.sampled_from(range(len(BROKEN_LINES))), st.just("dup")),
                     min_size=1, max_size=25))
def test_fuzzed_jsonl_logs_keep_every_good_row_and_quarantine_every_bad_one(tmp_path, plan):
    lines, good_ids, n_bad = [], [], 0
    for i, step in enumerate(plan):
        if step == "good":
            lines.append(line(good(i)))
            good_ids.append(f"c1-t{i}")
        elif step == "dup":
            lines += [line(good(i)), line(good(i, passed=False, error_kind="low_similarity"))]
            n_bad += 2
        elif isinstance(step, int):
            lines.append(BROKEN_LINES[step] + b"\n")
            n_bad += 1
        else:
            key, raw = CORRUPTIONS[step]
            lines.append(line(good(i), **{key: raw}))
            n_bad += 1
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes(b"".join(lines))
    if not good_ids:
        with pytest.raises(Exception, match=r"met the attempt-log contract|JSONL log"):
            read_attempts(path)
        return
    loaded = read_attempts(path)
    assert sorted(loaded.frame["task_id"]) == sorted(good_ids)
    assert len(loaded.quarantined) == n_bad
    assert loaded.quarantined["reason"].map(bool).all()
    assert loaded.frame["prompt_tokens"].between(0, 10**9).all()


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(bad=st.dictionaries(st.integers(0, 9), st.sampled_from([
    ("similarity", float("nan")), ("cost_usd", float("inf")), ("latency_ms", -float("inf")),
    ("analysis.complexity", float("nan")), ("predicted_pass_prob", 2.0)]), max_size=9),
       cut=st.none() | st.integers(0, 400))
def test_fuzzed_parquet_logs_keep_every_good_row_and_quarantine_every_bad_one(tmp_path, bad,
                                                                               cut):
    path = write_attempts([good(i) for i in range(10)], tmp_path / "logs" / "a.parquet")
    write_attempts([good(99)], tmp_path / "logs" / "b.jsonl")
    table = pq.read_table(path)
    for name in {n for n, _ in bad.values()}:
        values = table.column(name).to_pylist()
        for i, (n, v) in bad.items():
            if n == name:
                values[i] = v
        table = table.set_column(table.schema.get_field_index(name), name,
                                 pa.array(values, pa.float64()))
    pq.write_table(table, path)
    if cut is not None:
        path.write_bytes(path.read_bytes()[:cut])
    loaded = read_attempts(tmp_path / "logs")
    if cut is not None:  # a truncated file is quarantined whole; the other file still counts
        assert loaded.frame["task_id"].tolist() == ["c1-t99"]
        assert loaded.counts["files_quarantined"] == 1
        return
    assert sorted(loaded.frame["task_id"]) == sorted(
        [f"c1-t{i}" for i in range(10) if i not in bad] + ["c1-t99"])
    assert sorted(loaded.quarantined["row"]) == sorted(i + 1 for i in bad)


def test_a_training_run_skips_unreadable_files_and_its_own_quarantine(tmp_path, catalog):
    from pipeline.simulate_cli import run_simulate
    from tests.helpers import compose_config, tmp_paths
    from training.dataset import load_examples

    run_simulate(compose_config("router_simulate", [*tmp_paths(tmp_path),
                                                    "simulate.n_courses=40"]))
    logs = tmp_path / "logs"
    logs.mkdir()
    (tmp_path / "data" / "attempt_logs.parquet").rename(logs / "attempt_logs.parquet")
    (logs / "empty.parquet").write_bytes(b"")
    (logs / "utf16.jsonl").write_bytes('{"task_id": "x"}\n'.encode("utf-16"))
    (logs / "dup.jsonl").write_bytes(line(good(0)) + line(good(0, attempt=2)) * 2)
    quarantine = logs / "quarantine.jsonl"
    first = load_examples(logs, catalog, cache_dir=tmp_path / "cache",
                          quarantine_path=quarantine)
    assert first.counts["files_quarantined"] == 2 and first.counts["quarantined"] >= 3
    saved = quarantine.read_text()
    second = load_examples(logs, catalog, cache_dir=tmp_path / "cache",
                           quarantine_path=quarantine)
    assert second.from_cache and second.counts == first.counts
    assert quarantine.read_text() == saved
