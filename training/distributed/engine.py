"""The client's side of `train.engine=dask`.

1. Each log partition goes to a worker (`partitions.partition_examples`): the local engine's
   validation, quarantine and example building, per partition. The training rows stay on the
   workers; the client gathers only small things: per-partition counts and quarantined rows,
   category values, start-tier cells for the lookup table, a course sample of attempts (ladder
   statistics, drift reference), every audited attempt, and capped course samples of the
   calibration and held-out examples.
2. A task found in two partitions is dropped from both and quarantined: which copy is right is
   unknown (the local engine keeps exact copies once; across machines we cannot compare).
3. `lightgbm.dask.DaskLGBMClassifier` fits on the workers' rows, with the settings of
   conf/train's `lightgbm` entry; the calibrator is fitted on the calibration sample
   (held-out courses the trees never saw) on the client.
The result is the local engine's `Prepared` bundle, so the artifact has the same format.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from router_model.logs.store import expand_log_paths, open_binary, same_file, suffix
from router_model.model.features import FeatureSpec
from router_model.model.pass_model import PassModel
from training.dataset import (
    ExampleSet,
    build_examples,
    gate_errors,
    ladder_statistics,
    logs_hash,
    lookup_from_cells,
    support_from_cells,
)
from training.distributed.cluster import dask_client
from training.distributed.partitions import (
    PartitionPlan,
    PartitionResult,
    RowSummary,
    drop_tasks,
    fit_rows,
    partition_examples,
    rows_part,
    small_part,
    summarize_rows,
    text_keys,
)
from training.fitting import (
    Phases,
    Prepared,
    calibrate,
    fit_pass_model,
    make_estimator,
)
from training.reference import reference_profile
from training.train_job import TrainJob

ROWS_PER_JSONL_BYTE = 1 / 700  # a guess for JSONL partitions, whose row count costs a read
MIN_CALIBRATION = 1000  # examples: fewer and isotonic calibration gets coarse (warned)
PROCESS_LOCAL = "memory://"  # an fsspec store other processes cannot see
log = logging.getLogger("stage5_router.train.dask")


def estimated_rows(files: list[Any]) -> int:
    """Rows in the logs from Parquet footers (no data read), to size the client's samples."""
    import pyarrow.parquet as pq

    total = 0
    for f in files:
        try:
            with open_binary(f) as fh:
                if suffix(f) == ".parquet":
                    total += pq.ParquetFile(fh).metadata.num_rows
                else:
                    total += int(fh.seek(0, 2) * ROWS_PER_JSONL_BYTE)
        except Exception:  # an unreadable partition is quarantined by its worker later
            continue
    return max(total, 1)


def make_plan(job: TrainJob, spec: FeatureSpec, rows: int) -> PartitionPlan:
    """Split shares from conf/train, sample shares sized to keep the client's data small."""
    catalog, train = job.catalog, job.train
    test_size = train.test_size
    if train.split not in ("hash", "course"):
        raise ValueError(f"train.split={train.split!r} is not available with "
                         "train.engine=dask; use hash (course is drawn by hash there too)")
    if spec.brief_components:
        raise ValueError("router.features.brief_embedding_components > 0 is not available "
                         "with train.engine=dask yet; set it to 0 or use train.engine=local")
    cap, share = train.dask.client_rows_max, train.calibration_share
    return PartitionPlan(
        fields=tuple(catalog.fields), tiers=tuple(catalog.tier_names),
        categorical=spec.categorical, numeric=spec.numeric, seed=train.seed,
        test_size=test_size, holdout_share=job.data.holdout_share,
        calibration_share=share,
        keep_calibration=min(1.0, cap / (rows * (1 - test_size) * share)),
        keep_test=min(1.0, cap / (rows * test_size)),
        keep_stats=min(1.0, train.dask.stats_rows / rows))


def run_partitions(client: Any, files: list[Any], plan: PartitionPlan, progress: bool
                   ) -> tuple[list[PartitionResult], list[Any], list[Any]]:
    """Map every partition; gather the small parts; leave the lean rows on the workers.
    The partition futures are returned too: the caller keeps them until the fit is done (the
    lean rows are the same objects on the worker, so this costs no memory)."""
    from distributed import as_completed

    futures = client.map(partition_examples, files, plan=plan, pure=False)
    for _ in tqdm(as_completed(futures), total=len(futures), desc="partitions",
                  unit="part", disable=not progress, leave=False):
        pass
    small = client.gather(client.map(small_part, futures))
    rows = client.map(rows_part, futures)
    return small, rows, futures


def duplicated_tasks(parts: list[PartitionResult], files: list[Any]
                     ) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Task keys found in more than one partition, and one quarantine entry per partition."""
    keys = np.concatenate([p.task_keys for p in parts]) if parts else np.empty(0, np.uint64)
    values, counts = np.unique(keys, return_counts=True)
    twice = values[counts > 1]
    entries = []
    for part, source in zip(parts, files, strict=True):
        n = int(np.isin(part.task_keys, twice).sum())
        if n:
            entries.append({"source": str(source), "row": None, "record": None, "reason": (
                f"{n} tasks of this partition also appear in another partition; a course's "
                "rows belong to one partition, so all their rows are left out of training")})
    return twice, entries


def concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def without_tasks(frame: pd.DataFrame, keys: np.ndarray) -> pd.DataFrame:
    if not len(keys) or frame.empty:
        return frame
    return frame[~np.isin(text_keys(frame["task_id"]), keys)].reset_index(drop=True)


def gathered_examples(job: TrainJob, files: list[Any], small: list[PartitionResult],
                      summaries: list[RowSummary], twice: np.ndarray,
                      dup_entries: list[dict[str, Any]]) -> ExampleSet:
    """The local engine's `ExampleSet` meta (counts, ladder statistics, drift reference) from
    the partitions' small parts; its `examples` is the calibration sample."""
    counts: dict[str, int] = {}
    for part in [*(p.counts for p in small), *(s.counts for s in summaries)]:
        for k, v in part.items():
            counts[k] = counts.get(k, 0) + int(v)
    quarantined = [q for p in small for q in p.quarantined] + dup_entries
    counts["quarantined"] = len(quarantined)
    counts["tasks_in_several_partitions"] = len(twice)
    if job.paths.quarantine and quarantined:
        from router_model.logs.attempts import write_quarantine

        write_quarantine(quarantined, job.paths.quarantine)
    if counts.get("valid", 0) == 0:
        first = quarantined[0] if quarantined else {"source": "?", "reason": "no rows"}
        raise ValueError(f"no row of the {len(files)} log partitions met the attempt-log "
                         f"contract (first: {first['source']}: {str(first['reason'])[:200]})")
    stats = without_tasks(concat([p.stats for p in small]), twice)
    ladder = ladder_statistics(stats)
    audited = without_tasks(concat([p.audited for p in small]), twice)
    ladder["gate_errors"] = gate_errors(audited) if len(audited) else ladder["gate_errors"]
    calibration = without_tasks(concat([p.calibration for p in small]), twice)
    return ExampleSet(calibration, logs_hash(files, job.catalog), counts, ladder,
                      from_cache=False, reference=reference_profile(stats))


def check_trainable(counts: dict[str, int], calibration: pd.DataFrame, twice: np.ndarray
                    ) -> None:
    """Refuse before the cluster fits: no rows, one class, or too few to calibrate on."""
    if counts.get("fit_rows", 0) == 0:
        raise ValueError("no training rows are left" + (
            f" after leaving out {len(twice):,} tasks found in several partitions (see the "
            "quarantine)" if len(twice) else "; add logs"))
    if counts["fit_passes"] in (0, counts["fit_rows"]):
        raise ValueError("the training examples hold only one class (every attempt passed, "
                         "or none did); the model needs both. Add more logs.")
    if len(calibration) < MIN_CALIBRATION:
        log.warning("calibrating on %d examples only (fewer than %d); raise "
                    "train.calibration_share or add logs", len(calibration),
                    MIN_CALIBRATION)


def fit_on_cluster(client: Any, parts: list[Any], spec: FeatureSpec, estimator: Any
                   ) -> Any:
    """DaskLGBMClassifier on the workers' rows; returns the local estimator holding its trees."""
    import dask.dataframe as dd
    from lightgbm.dask import DaskLGBMClassifier

    parts = client.map(fit_rows, parts)
    meta = client.submit(lambda f: f.iloc[:0], parts[0]).result()
    rows = dd.from_delayed(parts, meta=meta, verify_meta=False)
    width = len(spec.columns)
    encoded = rows.map_partitions(
        lambda f: pd.DataFrame(spec.encode(f), columns=range(width), index=f.index),
        meta=pd.DataFrame({i: pd.Series(dtype=float) for i in range(width)}))
    X = encoded.to_dask_array(lengths=True)
    y = rows["label"].to_dask_array(lengths=True)
    X, y = client.persist([X, y])  # on the workers once, not re-encoded per use
    params = estimator.lgbm_params()
    params.pop("n_jobs")  # lightgbm.dask uses each worker's threads
    with warnings.catch_warnings():  # it warns that it ignores n_jobs even when unset
        warnings.filterwarnings("ignore", "Parameter n_jobs will be ignored")
        model = DaskLGBMClassifier(client=client, **params).fit(
            X, y, categorical_feature=list(spec.categorical_indices))
    return estimator.use_booster(model.booster_, model.classes_)


def train_on_dask(job: TrainJob, kinds: list[str], phases: Phases,
                  progress: bool = True) -> Prepared:
    """The Dask engine: examples per partition, LightGBM on the cluster, the same bundle."""
    if kinds[0] != "lightgbm":
        raise ValueError(f"train.model={kinds[0]!r}: train.engine=dask trains lightgbm only")
    if job.router.guarantee.enabled:
        raise ValueError("router.guarantee.enabled=true needs train.engine=local (the Dask "
                         "engine does not keep certification courses out of its statistics)")
    spec = FeatureSpec.from_config(job.router.features, embedding_cache=job.paths.cache_dir)
    files = [f for f in expand_log_paths(job.paths.logs)
             if not same_file(f, job.paths.quarantine)]
    local_only = [f for f in files if str(f).startswith(PROCESS_LOCAL)]
    if local_only:
        raise ValueError(f"{str(local_only[0])[:200]!r}: a memory:// store lives in this "
                         "process only, and Dask workers cannot read it; write the logs to "
                         "files or an object store, or use train.engine=local")
    plan = make_plan(job, spec, estimated_rows(files))
    with dask_client(job.train.dask) as client:
        with phases("read logs"):
            small, parts, _futures = run_partitions(client, files, plan, progress)
            twice, dup_entries = duplicated_tasks(small, files)
            if len(twice):  # scattered once: a large argument inlined into every task
                # of a map trips the scheduler (distributed 2026.8)
                dropped = client.scatter(twice, broadcast=True)
                parts = client.map(drop_tasks, parts, keys=dropped)
            summaries = client.gather(client.map(summarize_rows, parts,
                                                 categorical=spec.categorical))
            data = gathered_examples(job, files, small, summaries, twice, dup_entries)
        with phases("split"):
            check_trainable(data.counts, data.examples, twice)
            spec.fit_categories({c: [v for s in summaries for v in s.categories.get(c, [])]
                                 for c in spec.categorical})
            parts = [p for p, s in zip(parts, summaries, strict=True) if s.counts["fit_rows"]]
        workers = len(client.scheduler_info()["workers"])
        with phases(f"fit {kinds[0]}"):
            estimator = fit_on_cluster(client, parts, spec,
                                       make_estimator(kinds[0], spec, job.train))
            calibrator = calibrate(estimator, spec.encode(data.examples),
                                   data.examples["label"].to_numpy(int), job.train.calibration)
            models = {kinds[0]: PassModel(spec=spec, calibrated=None, kind=kinds[0],
                                          estimator=estimator, calibrator=calibrator)}
    for kind in kinds[1:]:  # baselines: fitted in memory on the calibration sample
        with phases(f"fit {kind}"):
            models[kind] = fit_pass_model(kind, data.examples, spec, job.train)
    test = without_tasks(concat([p.test for p in small]), twice)
    cells = concat([s.cells for s in summaries])
    audited = without_tasks(concat([p.audited for p in small]), twice)
    return Prepared(
        data=data, spec=spec, models=models, train_rows=data.examples, test_rows=test,
        audit_examples=build_examples(audited) if len(audited) else data.examples,
        lookup=lookup_from_cells(cells, sorted(cells["field"].unique())),
        support=support_from_cells(cells),
        engine_info={"engine": "dask", "workers": workers, "partitions": len(files),
                     "calibration_examples": len(data.examples),
                     "sampled": {"calibration": plan.keep_calibration, "test": plan.keep_test,
                                 "stats": plan.keep_stats}})
