"""The log readers never crash, never accept a bad row silently, never reach the network
(issue 29, class 3).

Each case is a small log that broke the reader before: a list-valued extra analysis key on
a duplicated row (TypeError), `"schema_version": true`, objects in typed analysis keys
(silently null), timestamps in year 9999 or 0001 and rows from the future, chain gaps and
task ids reused across courses, a row with 20k keys (memory grew as rows x keys), `http://`
and `ftp://` URLs (fetched), and a FIFO as the log path (waited on forever).
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from router_model.logs import attempts, store
from router_model.logs.attempts import read_attempts, write_attempts
from router_model.logs.store import LogReadError, expand_log_paths
from tests.router_model.logs.test_attempts_hostile import GOOD, good
from tests.router_model.model.test_artifact_hostile import _in_time

NOW = datetime.now(UTC)  # the rows are from 2025-09-01; the window ends at now + 1 day


def read(tmp_path: Path, rows: list[dict], name: str = "log.jsonl", **kwargs):
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        write_attempts(rows, path)
    return read_attempts(path, quarantine_path=tmp_path / "q" / "quarantine.jsonl", **kwargs)


def reasons(loaded) -> dict[int, str]:
    return dict(zip(loaded.quarantined["row"], loaded.quarantined["reason"], strict=True))


def test_a_list_valued_extra_key_on_duplicated_rows_is_compared_not_crashed_on(tmp_path):
    tagged = good(1, analysis={**GOOD["analysis"], "tags": ["a", "b"]})
    other = good(1, analysis={**GOOD["analysis"], "tags": ["a", "c"]})
    loaded = read(tmp_path, [good(0), tagged, tagged, good(2), other, good(3)])
    why = reasons(loaded)
    assert sorted(why) == [2, 3, 5]  # the exact copy, then both twins that differ
    assert "appears more than once with different content" in why[2]
    assert sorted(loaded.frame["task_id"]) == ["c1-t0", "c1-t2", "c1-t3"]
    assert (tmp_path / "q" / "quarantine.jsonl").exists()


def test_schema_version_true_is_quarantined_not_read_as_1(tmp_path):
    loaded = read(tmp_path, [good(0), good(1, schema_version=True)])
    assert "schema_version=True: expected one of" in reasons(loaded)[2]
    assert loaded.frame["task_id"].tolist() == ["c1-t0"]
    path = write_attempts([good(0), good(1)], tmp_path / "log.parquet")
    table = pq.read_table(path)
    table = table.set_column(0, "schema_version", pa.array([True, True]))
    pq.write_table(table, path)
    with pytest.raises(LogReadError, match="schema_version=True"):
        read_attempts(path)  # a Parquet column of booleans: no row is valid


def test_an_object_in_a_typed_analysis_key_is_quarantined_not_nulled(tmp_path):
    loaded = read(tmp_path, [good(0), good(1, analysis={"domain": {"name": "arts"}}),
                             good(2, analysis={"complexity": {"value": 0.4}}),
                             good(3, analysis={"section_count": [5]})])
    why = reasons(loaded)
    assert "analysis.domain: expected a plain value, got an object" in why[2]
    assert "analysis.complexity: expected a plain value, got an object" in why[3]
    assert "analysis.section_count" in why[4]
    assert loaded.frame["task_id"].tolist() == ["c1-t0"]


@pytest.mark.parametrize(("stamp", "message"), [
    ("9999-12-31T00:00:00Z", "a row from the future"),
    ("in two days", "a row from the future"),
    ("0001-01-01T00:00:00Z", "before 2000-01-01"),
])
def test_timestamps_outside_the_window_are_quarantined(tmp_path, stamp, message):
    if stamp == "in two days":
        stamp = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    loaded = read(tmp_path, [good(0), good(1, timestamp=stamp), good(2)])
    assert message in reasons(loaded)[2]
    assert loaded.frame["timestamp"].max() < pd.Timestamp("2026-01-01", tz="UTC")


def test_the_window_is_the_callers(tmp_path):
    from router_model.logs.attempts import ReadLimits

    later = (NOW + timedelta(days=5)).isoformat()
    loaded = read(tmp_path, [good(0), good(1, timestamp=later)],
                  limits=ReadLimits(max_future=timedelta(days=30)))
    assert loaded.counts["quarantined"] == 0
    then = datetime(2025, 9, 1, 6, tzinfo=UTC)  # and its end follows the caller's now
    loaded = read(tmp_path, [good(0), good(1)], now=then)
    assert loaded.counts["quarantined"] == 0
    with pytest.raises(LogReadError, match="a row from the future"):
        read(tmp_path, [good(0), good(1)], now=then - timedelta(days=2))


def test_a_chain_with_a_gap_and_a_task_in_two_courses_are_quarantined(tmp_path):
    rows = [good(0), good(0, attempt=2),                       # a whole chain: kept
            good(1), good(1, attempt=3),                       # attempt 2 missing
            good(2), good(2, attempt=2, course_id="c9")]       # one task id, two courses
    loaded = read(tmp_path, rows)
    why = reasons(loaded)
    assert sorted(why) == [3, 4, 5, 6]
    assert "attempt 2 is missing (attempts 1, 3)" in why[3] and why[3] == why[4]
    assert "is used in 2 courses" in why[5] and why[5] == why[6]
    assert loaded.frame["task_id"].tolist() == ["c1-t0", "c1-t0"]


def test_a_row_with_20k_keys_is_quarantined_before_it_costs_memory(tmp_path):
    wide = good(1, analysis={f"k{i}": i for i in range(20_000)})
    loaded = read(tmp_path, [good(0), wide, *[good(i) for i in range(2, 50)]])
    assert "more than 256 keys" in reasons(loaded)[2]
    assert len(loaded.frame.columns) < 60 and loaded.counts["valid"] == 49


def test_rows_cannot_add_columns_without_end(tmp_path):
    from router_model.logs.attempts import ReadLimits

    rows = [good(i, analysis={f"key{i}_{j}": j for j in range(100)}) for i in range(30)]
    loaded = read(tmp_path, rows, limits=ReadLimits(max_columns=500))
    assert len(loaded.frame.columns) <= 500
    assert any("more than 500 in all" in r for r in loaded.quarantined["reason"])


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_an_oversized_value_is_quarantined(tmp_path, suffix):
    loaded = read(tmp_path, [good(0), good(1, brief="x" * 100_001), good(2)],
                  name=f"log{suffix}")
    assert "brief: a value of 100001 characters, more than 100000" in reasons(loaded)[2]
    assert loaded.counts["valid"] == 2


def test_an_extra_key_holds_one_type(tmp_path):
    loaded = read(tmp_path, [good(i, analysis={"tone": "playful"}) for i in range(3)]
                  + [good(3, analysis={"tone": 7}), good(4, analysis={"tone": ["a", 1]})])
    why = reasons(loaded)
    assert "a number, while the other rows hold text" in why[4]
    assert "a list of mixed values" in why[5] or "while the other rows hold text" in why[5]
    pa.Table.from_pandas(loaded.frame)  # what the examples cache does with it


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/logs.jsonl", "https://example.com/l.jsonl",
                                 "ftp://example.com/logs/", "simplecache::http://x/l.jsonl",
                                 "HTTP://example.com/l.parquet"])
def test_urls_outside_the_allow_list_never_reach_fsspec(url, monkeypatch):
    import fsspec.core

    monkeypatch.setattr(fsspec.core, "url_to_fs",
                        lambda *a, **k: pytest.fail(f"{url} reached fsspec"))
    with pytest.raises(LogReadError, match="not among the allowed ones"):
        read_attempts(url)


def test_the_allow_list_is_a_parameter_of_the_reader(monkeypatch):
    import fsspec.core

    asked = []

    def fake(url, **kwargs):
        asked.append(url)
        raise ValueError("no network here")

    monkeypatch.setattr(fsspec.core, "url_to_fs", fake)
    with pytest.raises(LogReadError):
        expand_log_paths("http://127.0.0.1:9/logs/", url_schemes=("http",))
    assert asked == ["http://127.0.0.1:9/logs/"]
    assert set(store.DEFAULT_URL_SCHEMES) >= {"file", "s3", "gs"}
    assert "http" not in store.DEFAULT_URL_SCHEMES and "ftp" not in store.DEFAULT_URL_SCHEMES


def test_a_fifo_as_the_log_path_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "logs.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(LogReadError, match="not a regular file"):
        _in_time(lambda: read_attempts(fifo))


def test_a_fifo_reached_by_a_glob_is_quarantined_and_the_rest_read(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.jsonl").write_text(json.dumps(good(0)) + "\n")
    os.mkfifo(tmp_path / "logs" / "b.jsonl")
    loaded = _in_time(lambda: read_attempts(str(tmp_path / "logs" / "*.jsonl")))
    assert loaded.counts["valid"] == 1 and loaded.counts["files_quarantined"] == 1
    assert "not a regular file" in loaded.quarantined["reason"].iloc[0]


def test_a_fifo_inside_a_log_folder_is_not_read(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.jsonl").write_text(json.dumps(good(0)) + "\n")
    os.mkfifo(tmp_path / "logs" / "b.jsonl")
    assert _in_time(lambda: read_attempts(tmp_path / "logs")).counts["valid"] == 1


# ---- fuzz: arbitrary extra values, duplicated, never crash the reader or the Arrow cache -------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False,
                                                                        allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                max_size=3),
    max_leaves=6)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                    HealthCheck.function_scoped_fixture])
@given(extras=st.lists(st.dictionaries(st.sampled_from(["tone", "tags", "domain", "x.y"]),
                                       JSON_VALUES, max_size=3), min_size=1, max_size=6),
       copies=st.lists(st.integers(0, 5), max_size=4))
def test_any_extra_values_on_any_duplicates_never_crash_the_readers(tmp_path, extras, copies):
    rows = [good(i, analysis={**GOOD["analysis"], **e}) for i, e in enumerate(extras)]
    rows += [rows[c] for c in copies if c < len(rows)]
    path = tmp_path / "fuzz.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    try:
        loaded = attempts.read_attempts(path)
    except LogReadError as exc:
        assert "met the attempt-log contract" in str(exc)
        return
    assert loaded.counts["valid"] + loaded.counts["quarantined"] >= len(extras)
    pa.Table.from_pandas(loaded.frame)  # the examples cache converts the frame to Arrow
