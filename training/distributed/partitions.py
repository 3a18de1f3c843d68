"""What a Dask worker does with one log partition: the local engine's own reader, validator
and example builder, applied to that partition alone (a course never spans partitions), then
split by course hash into the rows that stay on the worker for the fit and the small samples
the client gathers."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from router_model.logs.attempts import validate_sources
from router_model.logs.store import LogSource
from training.dataset import (
    build_examples,
    calibration_courses,
    course_draw,
    hash_test_courses,
    start_cells,
)


@dataclass(frozen=True)
class PartitionPlan:
    """Everything a worker needs to treat one partition the way the client decided."""

    fields: tuple[str, ...]
    tiers: tuple[str, ...]
    categorical: tuple[str, ...]
    numeric: tuple[str, ...]
    seed: int
    test_size: float
    holdout_share: float | None
    calibration_share: float
    keep_calibration: float  # of the calibration courses, the share gathered to the client
    keep_test: float
    keep_stats: float


FIT, CALIBRATION, TEST = 0, 1, 2  # a lean row's role


@dataclass
class PartitionResult:
    """One partition's outputs; `rows` (every example, lean) stay on the worker, the rest is
    small and gathered by the client."""

    rows: pd.DataFrame
    calibration: pd.DataFrame = field(default_factory=pd.DataFrame)
    test: pd.DataFrame = field(default_factory=pd.DataFrame)
    stats: pd.DataFrame = field(default_factory=pd.DataFrame)
    audited: pd.DataFrame = field(default_factory=pd.DataFrame)
    task_keys: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    counts: dict[str, int] = field(default_factory=dict)
    quarantined: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RowSummary:
    """What the client needs from a partition's lean rows, once duplicates are gone."""

    cells: pd.DataFrame
    categories: dict[str, list[str]]
    counts: dict[str, int]


def text_keys(values: pd.Series) -> np.ndarray:
    """A 64-bit hash per value: tasks and courses as 8 bytes, compared across partitions."""
    return pd.util.hash_array(values.astype(str).to_numpy(object))


def task_keys(task_ids: pd.Series) -> np.ndarray:
    """The distinct tasks' keys: how the client finds a task in two partitions."""
    return np.unique(text_keys(task_ids))


def lean_rows(examples: pd.DataFrame, role: np.ndarray, plan: PartitionPlan) -> pd.DataFrame:
    """Only what the fit and the counts need, categoricals as pandas categories: ~100 bytes
    a row."""
    examples = examples.reset_index(drop=True)  # columns are assigned by index below
    out = pd.DataFrame(index=examples.index)
    for c in plan.categorical:
        out[c] = examples[c].astype("category") if c in examples else np.nan
    for c in plan.numeric:
        out[c] = pd.to_numeric(examples[c], errors="coerce").to_numpy(float) \
            if c in examples else np.nan
    out["label"] = examples["label"].to_numpy(np.int8)
    out["is_start"] = examples["is_start"].to_numpy(bool)
    out["role"] = role.astype(np.int8)
    out["task_key"] = text_keys(examples["task_id"])
    out["course_key"] = text_keys(examples["course_id"])
    return out


def partition_examples(source: LogSource, plan: PartitionPlan) -> PartitionResult:
    """Validate one partition, build its examples, and split them by course hash."""
    loaded = validate_sources([source], known_fields=plan.fields, known_tiers=plan.tiers)
    quarantined = loaded.quarantined.to_dict("records")
    counts = dict(loaded.counts)
    attempts = loaded.frame
    if attempts.empty:
        return PartitionResult(rows=pd.DataFrame(), quarantined=quarantined, counts=counts)
    if plan.holdout_share:  # courses router-promote judges on: never trained on
        attempts = attempts[course_draw(attempts["course_id"]) >= plan.holdout_share]
    examples = build_examples(attempts)
    is_test = hash_test_courses(examples["course_id"], plan.test_size, plan.seed)
    calibrating = ~is_test & calibration_courses(examples["course_id"], plan.calibration_share,
                                                 plan.seed)
    sample = course_draw(examples["course_id"], f"sample-{plan.seed}:")
    role = np.where(is_test, TEST, np.where(calibrating, CALIBRATION, FIT))
    stats_courses = course_draw(attempts["course_id"], f"stats-{plan.seed}:") < plan.keep_stats
    audit = pd.Series(attempts["audit_passed"], dtype="boolean").notna().to_numpy() \
        if "audit_passed" in attempts else np.zeros(len(attempts), bool)
    return PartitionResult(
        rows=lean_rows(examples, role, plan),
        calibration=examples[calibrating & (sample < plan.keep_calibration)].drop(
            columns="brief", errors="ignore"),
        test=examples[is_test & (sample < plan.keep_test)].drop(columns="brief",
                                                               errors="ignore"),
        stats=attempts[stats_courses].drop(columns="brief", errors="ignore"),
        audited=attempts[audit].drop(columns="brief", errors="ignore"),
        task_keys=task_keys(examples["task_id"]),
        counts=counts, quarantined=quarantined)


ROW_COUNTS = ("examples", "tasks", "train_examples", "train_courses", "fit_rows", "fit_passes")


def summarize_rows(rows: pd.DataFrame, categorical: tuple[str, ...]) -> RowSummary:
    """Start-tier cells and category values of the training rows, and the example counts."""
    if rows.empty:  # a partition that was all quarantined
        return RowSummary(pd.DataFrame(columns=["field", "tier", "passes", "n"]), {},
                          dict.fromkeys(ROW_COUNTS, 0))
    train = rows[rows["role"] != TEST]
    fit = rows[rows["role"] == FIT]
    counts = {"examples": len(rows), "tasks": int(rows["task_key"].nunique()),
              "train_examples": len(train), "train_courses": int(train["course_key"].nunique()),
              "fit_rows": len(fit), "fit_passes": int(fit["label"].sum())}
    categories = {c: sorted(map(str, train[c].dropna().unique())) for c in categorical}
    return RowSummary(start_cells(train), categories, counts)


def small_part(result: PartitionResult) -> PartitionResult:
    """Everything but the lean rows: what the client gathers."""
    return replace(result, rows=result.rows.iloc[:0])


def rows_part(result: PartitionResult) -> pd.DataFrame:
    return result.rows


def drop_tasks(rows: pd.DataFrame, keys: np.ndarray) -> pd.DataFrame:
    """The lean rows without the tasks found in more than one partition."""
    if rows.empty:
        return rows
    return rows[~np.isin(rows["task_key"].to_numpy(), keys)]


def fit_rows(rows: pd.DataFrame) -> pd.DataFrame:
    return rows[rows["role"] == FIT]
