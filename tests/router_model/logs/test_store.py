"""Partitioned logs: hive-partitioned Parquet written by router-simulate, read back from
folders, globs and fsspec URLs, with a corrupt partition quarantined on its own."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pandas as pd
import pytest
from omegaconf import OmegaConf

from pipeline.simulate_cli import run_simulate
from router_model.logs.attempts import (
    clear_log_dataset,
    read_attempts,
    validate_sources,
    write_attempts,
    write_log_dataset,
)
from router_model.logs.store import LogReadError, expand_log_paths
from tests.helpers import compose_config, tmp_paths

KEY = ["task_id", "attempt"]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """A 300-course world written both as one file and as a dataset by date and shard."""
    tmp = tmp_path_factory.mktemp("partitioned")
    cfg = compose_config(overrides=[*tmp_paths(tmp), "simulate.n_courses=300",
                                    "simulate.courses_per_day=100"])
    run_simulate(cfg)
    single = read_attempts(cfg.paths.logs).frame
    root = tmp / "logs"
    write_attempts(single, root, shards=3)
    return single, root


def sorted_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(KEY).reset_index(drop=True)[sorted(frame.columns)]


def test_the_dataset_holds_every_row_once_partitioned_by_course_date_and_shard(dataset):
    single, root = dataset
    parts = sorted(p.relative_to(root).parts[:-1] for p in root.rglob("*.parquet"))
    assert {p[0] for p in parts} == {"date=2025-09-01", "date=2025-09-02", "date=2025-09-03"}
    assert {p[1] for p in parts} == {"shard=0", "shard=1", "shard=2"}
    back = read_attempts(root)
    assert back.counts["quarantined"] == 0
    pd.testing.assert_frame_equal(sorted_rows(back.frame), sorted_rows(single))
    # no course is split across partitions: each task's chain can be built per partition
    courses_per_file = [set(pd.read_parquet(p, columns=["course_id"])["course_id"])
                        for p in root.rglob("*.parquet")]
    assert sum(len(c) for c in courses_per_file) == single["course_id"].nunique()


def test_globs_and_urls_select_partitions(dataset):
    single, root = dataset
    day_one = read_attempts(f"{root}/date=2025-09-01/**").frame
    first_day = pd.to_datetime(single.groupby("course_id")["timestamp"].transform("min"),
                               utc=True).dt.strftime("%Y-%m-%d") == "2025-09-01"
    assert len(day_one) == int(first_day.sum()) > 0
    assert len(read_attempts(f"file://{root}").frame) == len(single)
    memory = fsspec.filesystem("memory")
    for p in root.rglob("*.parquet"):
        memory.pipe(f"/bucket/logs/{p.relative_to(root)}", p.read_bytes())
    from_store = read_attempts("memory://bucket/logs")
    pd.testing.assert_frame_equal(sorted_rows(from_store.frame), sorted_rows(single))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        expand_log_paths("memory://bucket/nothing-here")
    with pytest.raises(LogReadError, match=r"no \.jsonl or \.parquet"):
        expand_log_paths(f"{root}/date=1999-*/**")


def test_a_corrupt_partition_is_quarantined_and_the_rest_is_read(dataset, tmp_path):
    single, root = dataset
    copy = tmp_path / "logs"
    for p in root.rglob("*.parquet"):
        (copy / p.relative_to(root)).parent.mkdir(parents=True, exist_ok=True)
        (copy / p.relative_to(root)).write_bytes(p.read_bytes())
    broken = sorted(copy.rglob("*.parquet"))[0]
    lost = len(pd.read_parquet(broken))
    broken.write_bytes(broken.read_bytes()[: len(broken.read_bytes()) // 2])
    quarantine = tmp_path / "quarantine.jsonl"
    loaded = read_attempts(copy, quarantine_path=quarantine)
    assert loaded.counts["files_quarantined"] == 1
    assert len(loaded.frame) == len(single) - lost
    assert str(broken) in quarantine.read_text()


def test_appending_adds_files_and_a_named_export_replaces_itself(dataset, tmp_path):
    single, _ = dataset
    one_course = single[single["course_id"] == single["course_id"].iloc[0]]
    root = tmp_path / "logs"
    write_log_dataset(one_course, root, basename="course-a")
    write_log_dataset(one_course, root, basename="course-a")  # the same export again
    assert len(read_attempts(root).frame) == len(one_course)
    write_log_dataset(one_course, root)  # an unnamed append: a second copy, caught on read
    loaded = read_attempts(root)
    assert len(loaded.frame) == len(one_course)
    assert loaded.counts["quarantined"] == len(one_course)


def test_clearing_refuses_a_folder_that_is_not_a_log_dataset(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not partitioned log parts"):
        clear_log_dataset(tmp_path)
    assert (tmp_path / "notes.txt").exists()


def test_router_simulate_can_write_the_dataset(tmp_path):
    cfg = compose_config(overrides=[*tmp_paths(tmp_path), "simulate.n_courses=60",
                                    f"paths.logs={tmp_path}/logs", "simulate.log_shards=2"])
    OmegaConf.resolve(cfg)
    first = run_simulate(cfg)
    again = run_simulate(cfg)  # a rerun replaces the parts rather than duplicating them
    loaded = read_attempts(Path(cfg.paths.logs))
    assert len(loaded.frame) == again["logged_policy"]["attempt_rows"]
    assert first["logged_policy"] == again["logged_policy"]
    assert loaded.counts["quarantined"] == 0


@pytest.mark.parametrize("url", ["foo://bucket/logs", "s3://bucket/logs"])
def test_a_url_without_a_backend_says_what_to_install(url):
    with pytest.raises(LogReadError, match="fsspec backend") as err:
        expand_log_paths(url)
    assert url in str(err.value)


def test_a_huge_path_is_not_echoed_whole(tmp_path):
    for huge in (tmp_path / ("x" * 5000), tmp_path / ("x" * 200) / ("y" * 200)):
        with pytest.raises((LogReadError, FileNotFoundError)) as err:
            expand_log_paths(str(huge))
        assert len(str(err.value)) < 400


def test_broken_partitions_are_quarantined_whatever_breaks_them(dataset, tmp_path):
    """A partition without the `field` column, text that is not UTF-8, and binary data
    labelled as text: each quarantined with a reason, never a crash."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    _, root = dataset
    table = pq.read_table(sorted(root.rglob("*.parquet"))[0]).slice(0, 20)
    brief = table.schema.get_field_index("brief")
    bad_text = pa.array([b"\xff\xfe bad"] * 20, pa.binary())
    pq.write_table(table.drop(["field"]), tmp_path / "no_field.parquet")
    pq.write_table(table.set_column(brief, "brief", bad_text.view(pa.string())),
                   tmp_path / "not_utf8.parquet")
    pq.write_table(table.set_column(brief, "brief", bad_text), tmp_path / "binary.parquet")
    loaded = validate_sources(sorted(tmp_path.glob("*.parquet")),
                              known_fields=["course_title"], known_tiers=["gpt-oss-20b"])
    reasons = loaded.quarantined["reason"].tolist()
    assert loaded.counts["files_quarantined"] == 2 and len(loaded.frame) == 0
    assert sum("Invalid UTF8" in r for r in reasons) == 2
    assert sum(r.startswith("field is missing") for r in reasons) == 20


def test_one_file_reached_by_two_spellings_is_read_once(dataset):
    _, root = dataset
    day = next(root.glob("date=2025-09-01"))
    files = expand_log_paths([root, f"{day}/**", root / ".." / root.name])
    assert len(files) == len(list(root.rglob("*.parquet")))


def test_clearing_removes_only_what_the_writer_wrote(tmp_path):
    for mine in ("mydata.parquet", "year=2024/mydata.parquet"):
        (tmp_path / mine).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / mine).write_bytes(b"my own table")
        with pytest.raises(ValueError, match="not partitioned log parts"):
            clear_log_dataset(tmp_path)
        assert (tmp_path / mine).exists()
        (tmp_path / mine).unlink()


def test_simulate_refuses_a_logs_folder_that_would_hold_its_other_outputs(tmp_path):
    cfg = compose_config(overrides=[*tmp_paths(tmp_path), "simulate.n_courses=20",
                                    f"paths.logs={tmp_path}/data"])
    OmegaConf.resolve(cfg)
    with pytest.raises(ValueError, match=r"would hold paths\.tasks"):
        run_simulate(cfg)
    assert not (tmp_path / "data" / "tasks.parquet").exists()


def test_a_named_export_replaces_itself_across_shard_layouts(dataset, tmp_path):
    single, _ = dataset
    one_course = single[single["course_id"] == single["course_id"].iloc[0]]
    write_log_dataset(one_course, tmp_path, basename="abc")
    write_log_dataset(one_course, tmp_path, shards=4, basename="abc")
    loaded = read_attempts(tmp_path)
    assert len(loaded.frame) == len(one_course) and loaded.counts["quarantined"] == 0


def test_the_generator_export_quarantines_bad_journal_rows(dataset, tmp_path):
    from pipeline.generator.cli import export_logs

    single, _ = dataset
    cid = single["course_id"].iloc[0]
    journal = tmp_path / "out" / "attempts" / f"{cid}.jsonl"
    write_attempts(single[single["course_id"] == cid], journal)
    with journal.open("a") as fh:
        fh.write("{not json\n")
    (tmp_path / "out" / "attempts" / "broken.jsonl").write_bytes(b"\xff\xfe")
    export_logs(tmp_path / "out", ["broken", cid], str(tmp_path / "logs"), 0)
    assert len(read_attempts(tmp_path / "logs").frame) == int((single["course_id"] == cid).sum())
    reasons = (tmp_path / "out" / "export_quarantine.jsonl").read_text()
    assert "not valid JSON" in reasons and "broken.jsonl" in reasons


def test_router_train_ends_bad_input_with_one_line_not_a_traceback(tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    done = subprocess.run(
        [str(Path(sys.executable).parent / "router-train"), f"paths.logs={tmp_path}/nowhere",
         *tmp_paths(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("router-train: log path"), lines[-3:]


def test_course_hashes_are_sha256_of_salt_and_id_whatever_the_input_container():
    """Shards, splits and hold-outs hash course ids the same on every machine and engine."""
    import hashlib

    import numpy as np

    from router_model.files import stable_hash32

    ids = ["course-b", "course-a", "course-b", "kurs-ü"]
    expected = [int(hashlib.sha256(f"split-3:{v}".encode()).hexdigest()[:8], 16) for v in ids]
    for container in (ids, pd.Series(ids, dtype="str"), np.array(ids, dtype=object)):
        assert stable_hash32(container, "split-3:").tolist() == expected
    assert stable_hash32([], "x").tolist() == []
