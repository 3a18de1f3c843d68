"""The training commands read logs under the config's rules (`paths.log_reading`), not the
readers' module defaults: a stricter rule quarantines rows, and the examples' cache key
follows the rules, so a cached dataset read under other rules is never reused."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from pipeline.simulate_cli import run_simulate
from router_model.config import Catalog
from router_model.logs.store import LogReadError
from tests.helpers import compose_config, tmp_paths
from training.dataset import load_examples
from training.settings_cli import paths


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("log-reading")
    run_simulate(compose_config("router_simulate", [*tmp_paths(tmp), "simulate.n_courses=40"]))
    cfg = compose_config("router_prepare", tmp_paths(tmp))
    return Catalog.from_config(cfg), paths(cfg)


def test_the_configured_window_decides_which_rows_count(logged, tmp_path):
    catalog, where = logged
    data = load_examples(where.logs, catalog, cache_dir=tmp_path, reading=where.log_reading)
    assert data.counts["quarantined"] == 0 and len(data.examples) > 0
    stamps = pd.read_parquet(where.logs, columns=["timestamp"])["timestamp"]
    later = (pd.Timestamp(stamps.min()) + (pd.Timestamp(stamps.max())
                                           - pd.Timestamp(stamps.min())) / 2)
    narrow = replace(where.log_reading, earliest=later.isoformat())
    fewer = load_examples(where.logs, catalog, cache_dir=tmp_path, reading=narrow,
                          quarantine_path=tmp_path / "q.jsonl")
    assert not fewer.from_cache and fewer.data_hash != data.data_hash
    assert 0 < fewer.counts["quarantined"] < data.counts["valid"]
    assert "before" in (tmp_path / "q.jsonl").read_text()


def test_the_configured_url_schemes_are_the_only_ones_read(logged, tmp_path):
    catalog, where = logged
    local_only = replace(where.log_reading, url_schemes=["file"])
    with pytest.raises(LogReadError, match="not among the allowed ones"):
        load_examples("s3://bucket/logs/", catalog, cache_dir=tmp_path, reading=local_only)


def test_a_list_valued_extra_analysis_key_trains_like_any_other(logged, tmp_path):
    """One plausible row (`"analysis": {..., "tags": [1, 2]}`) aborted router-prepare and
    router-train in the drift reference; lists and objects count by their JSON text."""
    import json

    from router_model.logs.attempts import read_attempts

    catalog, where = logged
    rows = read_attempts(where.logs).frame.head(1).to_dict("records")
    row = {k: v for k, v in rows[0].items() if not k.startswith("analysis.")
           and v is not None and v == v}
    row["analysis"] = {k.removeprefix("analysis."): v for k, v in rows[0].items()
                       if k.startswith("analysis.") and v is not None and v == v}
    row["analysis"]["tags"] = [1, 2]
    row.update(course_id="list-extra", task_id="list-extra-t", timestamp=str(row["timestamp"]))
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "more.jsonl").write_text(json.dumps(row, default=str) + "\n")
    data = load_examples([where.logs, logs], catalog, cache_dir=tmp_path,
                         reading=where.log_reading)
    assert "list-extra-t" in set(data.examples["task_id"])
    assert data.reference is not None


def test_category_counts_take_lists_arrays_and_missing_values():
    import numpy as np

    from training.reference import MISSING, category_counts

    counts = category_counts(pd.Series([[1, 2], [1, 2], {"k": 1}, None, np.array([3])],
                                       dtype=object))
    assert counts.to_dict() == {"[1, 2]": 2, '{"k": 1}': 1, MISSING: 1, "[3]": 1}


def test_audited_false_pass_cells_are_shrunk_toward_their_tier_and_pessimistic_when_thin():
    from training.dataset import AUDIT_PRIOR, gate_errors

    def rows(field, n, bad):
        return pd.DataFrame({"field": field, "tier": "gpt-oss-20b", "passed": True,
                             "audit_passed": [False] * bad + [True] * (n - bad)})

    attempts = pd.concat([rows("lesson_content", 2000, 100), rows("course_title", 10, 4)])
    errors = gate_errors(attempts)
    tier = errors["tier"]["gpt-oss-20b"]
    thin = errors["field_tier"]["course_title"]["gpt-oss-20b"]
    thick = errors["field_tier"]["lesson_content"]["gpt-oss-20b"]
    shrunk = (4 + AUDIT_PRIOR * tier) / (10 + AUDIT_PRIOR)
    assert tier < shrunk < thin < 0.4 + 0.2  # pulled toward the tier, then raised for doubt
    assert errors["field_tier_point"]["course_title"]["gpt-oss-20b"] == pytest.approx(shrunk)
    assert thick == pytest.approx(0.05, abs=0.01)  # a well-audited cell reads as itself
    assert errors["audited_accepted"] == 2010
