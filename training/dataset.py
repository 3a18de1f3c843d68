"""Attempt logs -> labelled (task, tier) examples, cached on disk, split by course.

Each escalation chain says, for every tier it tried, whether that tier's first gate-judged
attempt passed. That is one labelled example per (task, tier tried). Tiers a chain never tried
stay unlabelled: nothing is imputed. Attempts that ended without a gate verdict (rate limit,
timeout, provider error, context overflow) label nothing, so a chain cut short by an error
still yields the verdicts it did reach.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from router_model.config import Catalog, LogReading
from router_model.contract import GATE_VERDICTS
from router_model.files import stable_hash32
from router_model.logs.attempts import read_attempts
from router_model.logs.read_files import read_options
from router_model.logs.store import LogSource, expand_log_paths, fingerprint, same_file
from training.chains import OUTCOME_COLUMNS, Chains
from training.reference import reference_profile

# Bump when the example-building logic changes, so stale caches are never reused.
DATASET_VERSION = 5  # 5: examples carry their chain's final verdict (the guarantee's)


def build_examples(attempts: pd.DataFrame, chains: Chains | None = None) -> pd.DataFrame:
    """One row per (task, tier tried): features of the task, label = first verdict passed.
    `chains`: the attempts' chains when the caller has them already."""
    chains = chains if chains is not None else Chains.of(attempts)
    rows = chains.first_judged(by_tier=True)
    source = chains.order[rows]
    keep = [c for c in attempts.columns if c not in OUTCOME_COLUMNS]
    examples = attempts[keep].iloc[source].reset_index(drop=True)
    examples["label"] = attempts["passed"].to_numpy()[source].astype(np.int8)
    # The task's expected output size: what its first judged attempt produced.
    first = chains.first_judged()
    tokens = attempts["completion_tokens"].to_numpy()[chains.order[first]]
    expected = chains.per_chain(first, tokens)
    examples["expected_output_tokens"] = expected[chains.chain[rows]]
    examples["is_start"] = chains.tier[rows] == chains.start_tier()[rows]
    start = chains.order[chains.first][chains.chain[rows]]
    examples["start_source"] = attempts["start_source"].iloc[start].to_numpy()
    examples["propensity"] = attempts["propensity"].iloc[start].to_numpy()
    # How the chain ended: its last attempt's gate verdict, and the audit's where there is
    # one (what the quality guarantee certifies on).
    last = chains.order[chains.last][chains.chain[rows]]
    examples["final_passed"] = attempts["passed"].to_numpy()[last].astype(bool)
    examples["final_audit"] = (pd.Series(attempts["audit_passed"], dtype="boolean").to_numpy()[last]
                               if "audit_passed" in attempts.columns
                               else pd.array([pd.NA] * len(rows), dtype="boolean"))
    return examples


LADDER_COLUMNS = ("task_id", "attempt", "field", "tier", "error_kind", "passed",
                  "completion_tokens", "audit_passed")  # all ladder_statistics reads


def ladder_statistics(attempts: pd.DataFrame, chains: Chains | None = None
                      ) -> dict[str, dict[str, float]]:
    """What the policy's expected-cost model needs beyond pass probabilities, per tier.

    `schema_share` / `severe_share`: of the failed verdicts, how many were schema errors and
    severe similarity (the rest retry); `retry_pass_rate`: how often a same-tier retry passed.
    Also the median completion tokens per field, used when a request gives no expected size.
    `chains`: as in `build_examples`.
    """
    attempts = attempts[[c for c in LADDER_COLUMNS if c in attempts.columns]]
    judged = attempts[attempts["error_kind"].isin(GATE_VERDICTS)]
    failed = judged[~judged["passed"]]
    by_tier: dict[str, dict[str, float]] = {}
    chains = chains if chains is not None else Chains.of(attempts)
    retries = attempts[["tier", "passed"]].iloc[chains.order[chains.retries()]]
    for tier in sorted(judged["tier"].unique()):
        f = failed[failed["tier"] == tier]
        r = retries[retries["tier"] == tier]
        by_tier[str(tier)] = {
            "schema_share": float((f["error_kind"] == "schema").mean()) if len(f) else 0.0,
            "severe_share": float((f["error_kind"] == "severe_similarity").mean())
            if len(f) else 0.0,
            "retry_pass_rate": float(r["passed"].mean()) if len(r) else float("nan"),
            "retries_seen": len(r),
        }
    output = judged.groupby("field")["completion_tokens"].median()
    return {"tiers": by_tier, "median_output_tokens": {str(k): float(v)
                                                       for k, v in output.items()},
            "gate_errors": gate_errors(attempts)}


# Each (field, tier) cell's rate is its audited accepted attempts plus AUDIT_PRIOR pseudo
# attempts at its tier's rate, raised by AUDIT_PESSIMISM standard errors: a thin cell reads
# as its tier plus doubt, a well-audited one as itself.
AUDIT_PRIOR = 20.0
AUDIT_PESSIMISM = 1.645


def gate_errors(attempts: pd.DataFrame) -> dict[str, Any]:
    """P(truly failing | the gate accepted) by tier, and by (field, tier) for every cell the
    audit saw, shrunk toward its tier and pessimistic where thin (`field_tier`, what a move
    away from the rules is planned on) or not (`field_tier_point`, what each field's static
    tier is planned on); from the rows with an audit verdict."""
    if "audit_passed" not in attempts.columns:
        return {"tier": {}, "field_tier": {}, "field_tier_point": {}, "audited_accepted": 0}
    audit = pd.Series(attempts["audit_passed"], dtype="boolean")
    rows = attempts.loc[audit.notna().to_numpy() & attempts["passed"].to_numpy(bool)]
    bad = ~pd.Series(rows["audit_passed"], dtype="boolean").astype(bool)
    by_tier = bad.groupby(rows["tier"]).mean()
    cells = bad.groupby([rows["field"], rows["tier"]]).agg(["sum", "size"])
    field_tier: dict[str, dict[str, float]] = {}
    point: dict[str, dict[str, float]] = {}
    for (f, t), row in cells.iterrows():
        n = row["size"] + AUDIT_PRIOR
        rate = (row["sum"] + AUDIT_PRIOR * by_tier[t]) / n
        upper = rate + AUDIT_PESSIMISM * np.sqrt(rate * (1 - rate) / n)
        field_tier.setdefault(str(f), {})[str(t)] = float(min(upper, 1.0))
        point.setdefault(str(f), {})[str(t)] = float(rate)
    return {"tier": {str(t): float(v) for t, v in by_tier.items()}, "field_tier": field_tier,
            "field_tier_point": point, "audited_accepted": len(rows)}


def start_cells(examples: pd.DataFrame) -> pd.DataFrame:
    """Passes and counts of first attempts per (field, tier) among chains that started there:
    what the lookup table is made of, and what partitions add up."""
    started = examples.loc[examples["is_start"].to_numpy(bool), ["field", "tier", "label"]]
    return started.groupby(["field", "tier"], observed=True)["label"].agg(
        passes="sum", n="size").reset_index()


def lookup_table(examples: pd.DataFrame) -> dict[str, dict[str, float]]:
    """The simple baseline every learned claim is measured against: per field and tier, the
    first-attempt pass rate among chains that started on that tier (30 numbers by default);
    a cell without a started chain takes the tier's overall first-attempt rate."""
    return lookup_from_cells(start_cells(examples), sorted(examples["field"].unique()))


def lookup_from_cells(cells: pd.DataFrame, fields: Sequence[str]) -> dict[str, dict[str, float]]:
    """`lookup_table` from summed (field, tier, passes, n) cells, e.g. of many partitions."""
    cells = cells.groupby(["field", "tier"], observed=True)[["passes", "n"]].sum()
    tiers = cells.groupby(level="tier").sum()
    tier_rate = tiers["passes"] / tiers["n"]
    rate = cells["passes"] / cells["n"]
    return {str(f): {str(t): float(rate.get((f, t), tier_rate[t])) for t in tier_rate.index}
            for f in sorted(fields)}


def support_from_cells(cells: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per field and tier, how many chains started there: the evidence behind each cell,
    which the planner's pessimism reads (few started chains, a wider bound)."""
    counts = cells.groupby(["field", "tier"], observed=True)["n"].sum()
    out: dict[str, dict[str, int]] = {}
    for (f, t), n in counts.items():
        out.setdefault(str(f), {})[str(t)] = int(n)
    return out


def support_table(examples: pd.DataFrame) -> dict[str, dict[str, int]]:
    """`support_from_cells` of the examples' start cells."""
    return support_from_cells(start_cells(examples))


@dataclass
class ExampleSet:
    """Labelled examples plus what reading the logs found."""

    examples: pd.DataFrame
    data_hash: str
    counts: dict[str, int]
    ladder_stats: dict[str, dict]
    from_cache: bool
    reference: dict[str, Any] | None = None  # training/reference.py: what drift is measured to


def logs_hash(paths: Sequence[LogSource], catalog: Catalog,
              reading: LogReading | None = None) -> str:
    """Content hash of the log files plus what shapes the examples (fields, tiers, version,
    and the reading rules when given)."""
    rules = f"|{reading}" if reading is not None else ""
    h = hashlib.sha256(f"v{DATASET_VERSION}|{sorted(catalog.fields)}|{catalog.tier_names}"
                       f"{rules}".encode())
    for p in paths:
        fingerprint(p, h)
    return h.hexdigest()


def load_examples(logs: str | Path | Sequence[str | Path], catalog: Catalog, *,
                  cache_dir: str | Path | None, quarantine_path: str | Path | None = None,
                  certify: tuple[float, int] | None = None,
                  reading: LogReading | None = None) -> ExampleSet:
    """Read logs through the contract and build examples, reusing the on-disk cache.

    The cache is a `datasets` Arrow dataset keyed by the logs' content hash: a retrain on
    unchanged logs memory-maps it instead of re-validating every row. `certify` (share,
    seed): courses kept for the quality guarantee (`certification_courses`), left out of the
    ladder statistics as they are out of every fit. `reading`: `paths.log_reading` (None:
    the readers' defaults); the cache key includes it, since it decides which rows count.
    """
    options = read_options(reading)
    files = expand_log_paths(logs, url_schemes=options["url_schemes"])
    # the quarantine file is never a log, even when it lies in the logs folder
    files = [f for f in files if not same_file(f, quarantine_path)]
    key = logs_hash(files, catalog, reading) + (f"-certify-{certify[0]}-{certify[1]}"
                                                if certify else "")
    cache = Path(cache_dir) / "examples" / key if cache_dir else None
    if cache is not None and (cache / "meta.json").exists():
        import datasets

        frame = datasets.load_from_disk(str(cache)).to_pandas()
        meta = json.loads((cache / "meta.json").read_text())
        return ExampleSet(frame, key, meta["counts"], meta["ladder_stats"], from_cache=True,
                          reference=meta.get("reference"))

    loaded = read_attempts(files, known_fields=catalog.fields, known_tiers=catalog.tier_names,
                           quarantine_path=quarantine_path, **options)
    chains = Chains.of(loaded.frame)
    examples = build_examples(loaded.frame, chains)
    counts = {**loaded.counts, "examples": len(examples),
              "tasks": int(examples["task_id"].nunique()) if len(examples) else 0}
    stats = ladder_statistics(loaded.frame, chains)
    if certify is not None:
        kept = loaded.frame[~certification_courses(loaded.frame["course_id"], *certify)]
        stats = ladder_statistics(kept.reset_index(drop=True))
    result = ExampleSet(examples, key, counts, stats, from_cache=False,
                        reference=reference_profile(loaded.frame, chains))
    if cache is not None:
        _write_cache(result, cache)
    return result


def _write_cache(data: ExampleSet, cache: Path) -> None:
    import datasets

    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.parent / f".tmp-{uuid.uuid4().hex}"
    datasets.Dataset.from_pandas(data.examples, preserve_index=False).save_to_disk(str(tmp))
    meta = {"counts": data.counts, "ladder_stats": data.ladder_stats,
            "reference": data.reference}
    (tmp / "meta.json").write_text(json.dumps(meta))
    try:
        os.rename(tmp, cache)
    except OSError:  # another process cached the same key first: theirs is as good
        shutil.rmtree(tmp, ignore_errors=True)


def course_draw(course_ids: pd.Series | Sequence[str], salt: str = "") -> np.ndarray:
    """A uniform number in [0, 1) per row from a stable hash of (salt, course id): the same
    on every machine and in every partition, so splits never need the whole log at once."""
    return stable_hash32(course_ids, salt) / 16**8


def in_holdout(course_ids: pd.Series | Sequence[str], share: float) -> np.ndarray:
    """Courses kept for promotion: a stable hash of the course id falls below `share`, so
    retraining (which drops them) and router-promote (which judges on them) always agree."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"holdout share {share!r} must be in [0, 1]")
    return course_draw(course_ids) < share


def certification_courses(course_ids: pd.Series | Sequence[str], share: float, seed: int
                          ) -> np.ndarray:
    """Courses kept for certifying the quality guarantee: out of the model's fit, the
    ladder statistics and the false-pass model alike, so the certificate's data is
    independent of everything the certified policy was built from."""
    return course_draw(course_ids, f"certify-{seed}:") < share


def hash_test_courses(course_ids: pd.Series | Sequence[str], test_size: float, seed: int
                      ) -> np.ndarray:
    """`train.split=hash`: a course is held out when its seeded hash falls below test_size;
    both engines draw the same courses, partition by partition."""
    return course_draw(course_ids, f"split-{seed}:") < test_size


def calibration_courses(course_ids: pd.Series | Sequence[str], share: float, seed: int
                        ) -> np.ndarray:
    """Training courses kept out of the fit to calibrate on (when the data is large): the
    same seeded course hash in both engines, so they calibrate on the same courses."""
    return course_draw(course_ids, f"calibration-{seed}:") < share


def split_examples(examples: pd.DataFrame, *, method: str, test_size: float, seed: int
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Train / held-out row indices with no course on both sides.

    `course`: a random share of courses is held out. `time`: the newest courses (by their first
    attempt) are held out, so a retrain validates on the most recent logs. `hash`: courses
    whose seeded hash falls below test_size (the Dask engine's split, the same courses).
    """
    if not 0.0 < test_size < 1.0:
        raise ValueError(f"train.test_size={test_size} must be between 0 and 1")
    courses = examples["course_id"].to_numpy()
    if method == "course":
        from sklearn.model_selection import GroupShuffleSplit

        splitter = GroupShuffleSplit(n_splits=1, test_size=test_size, random_state=seed)
        train, test = next(splitter.split(examples, groups=courses))
        return train, test
    if method == "time":
        started = examples.groupby("course_id")["timestamp"].min().sort_values(kind="stable")
        n_test = max(1, round(test_size * len(started)))
        newest = set(started.index[-n_test:])
        is_test = examples["course_id"].isin(newest).to_numpy()
        return np.flatnonzero(~is_test), np.flatnonzero(is_test)
    if method == "hash":
        is_test = hash_test_courses(examples["course_id"], test_size, seed)
        return np.flatnonzero(~is_test), np.flatnonzero(is_test)
    raise ValueError(f"train.split={method!r}: expected 'course', 'time' or 'hash'")

