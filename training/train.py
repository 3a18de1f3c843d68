"""Fit, calibrate, evaluate and save the pass-probability model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from router_model.catalog_check import catalog_record
from router_model.config import Catalog, Paths
from router_model.decide.gate import gate_version
from router_model.decide.policy import RoutingPolicy
from router_model.decide.settings import POLICY_VARIANTS
from router_model.model.artifact import RouterArtifact, save_artifact
from router_model.model.features import FeatureSpec
from router_model.model.pass_model import PassModel
from training.dataset import (
    ExampleSet,
    certification_courses,
    in_holdout,
    load_examples,
    lookup_table,
    split_examples,
    support_table,
)
from training.fitting import Phases, Prepared, TrainSettings, fit_pass_model
from training.guarantee import learn_then_test
from training.knob import calibrate_dial
from training.metrics import (
    classification_metrics,
    expected_calibration_error,
    full_report,
    reliability_plot,
)
from training.publish_gate import publish_gate
from training.train_job import TrainJob
from training.train_report import markdown_report


def false_pass_model(model: PassModel, examples: pd.DataFrame, min_rows: int = 200,
                     min_bad: int = 10) -> dict[str, Any] | None:
    """P(truly failing | the gate accepted) = sigmoid(c_tier + b * logit(p)), fitted on the
    audited examples the gate accepted, p being the pass model's prediction there: a hard
    task's pass on a cheap tier is likelier a false one. None when the audit is too small
    (the planner then uses the audit's plain rates per tier and field)."""
    from sklearn.linear_model import LogisticRegression

    if "audit_passed" not in examples.columns:
        return None
    audit = pd.Series(examples["audit_passed"], dtype="boolean")
    rows = examples[audit.notna().to_numpy() & (examples["label"] == 1).to_numpy()]
    bad = (~pd.Series(rows["audit_passed"], dtype="boolean").astype(bool)).to_numpy(int)
    if len(rows) < min_rows or bad.sum() < min_bad or bad.sum() == len(bad):
        return None
    p = np.clip(model.predict_frame(rows), 1e-6, 1 - 1e-6)
    tiers = sorted(rows["tier"].unique())
    X = np.column_stack([(rows["tier"].to_numpy() == t).astype(float) for t in tiers]
                        + [np.log(p / (1 - p))])
    fit = LogisticRegression(C=10.0, fit_intercept=False, max_iter=1000).fit(X, bad)
    coef = fit.coef_[0]
    return {"intercept": {str(t): float(c) for t, c in zip(tiers, coef, strict=False)},
            "slope": float(coef[-1]), "rows": len(rows), "bad": int(bad.sum())}


def guaranteed_dial(job: TrainJob, model: PassModel, manifest: dict[str, Any],
                    rows: pd.DataFrame | None, field_lams: dict[str, float]
                    ) -> dict[str, Any] | None:
    """Learn-then-Test for the learned policy (with its floored fields' dials) on the
    certification courses, when router.guarantee asks for it."""
    if not job.router.guarantee.enabled or rows is None:
        return None
    candidate = RouterArtifact(model=model, manifest={**manifest, "router_version": "candidate",
                                                      "policy": {"field_lams": field_lams}},
                               path=None)
    policy = RoutingPolicy(job.catalog, job.router.policy, candidate)
    return learn_then_test(policy, rows, job.router.guarantee)


def calibrate_policies(job: TrainJob, model: PassModel, manifest: dict[str, Any],
                       rows: pd.DataFrame) -> dict[str, Any]:
    """Each variant's dial meeting router.calibrate on the held-out tasks (one per task)."""
    candidate = RouterArtifact(model=model, manifest={**manifest, "router_version": "candidate"},
                               path=None)
    tasks = rows.drop_duplicates("task_id").reset_index(drop=True)
    target = job.router.calibrate
    model_p = None  # the variants on the model share its predictions (the lookup's are cheap)
    out = {}
    for key, (_, on_lookup) in POLICY_VARIANTS.items():
        policy = RoutingPolicy(job.catalog, job.router.policy, candidate).variant(key)
        if not on_lookup and model_p is None and target.one() and policy.learned:
            model_p = policy.start_tiers(tasks, quantities=("cost", "bad"))["p"]
        out[key] = calibrate_dial(policy, tasks, target, None if on_lookup else model_p)
    return out


def start_tier_calibration(rows: pd.DataFrame, y: np.ndarray, p: np.ndarray
                           ) -> dict[str, Any]:
    """ECE on held-out start-tier attempts: what router-monitor measures on live traffic."""
    start = rows["is_start"].to_numpy(bool)
    if not start.any():
        return {"ece": None, "n": 0}
    return {"ece": expected_calibration_error(y[start], p[start]), "n": int(start.sum())}


@dataclass
class TrainResult:
    artifact: RouterArtifact
    metrics: dict[str, Any]
    reports_dir: Path
    seconds: dict[str, float]


def load_training_examples(job: TrainJob) -> ExampleSet:
    """Examples from a prepared file (data.examples) or from the logs via the cache."""
    if job.data.examples:
        path = Path(job.data.examples)
        if not path.exists():
            raise FileNotFoundError(f"data.examples={str(path)!r} does not exist; run "
                                    "router-prepare, or set data.examples=null to read logs")
        frame = pd.read_parquet(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        return ExampleSet(frame, meta["data_hash"], meta["counts"], meta["ladder_stats"],
                          from_cache=True, reference=meta.get("reference"))
    return load_examples(job.paths.logs, job.catalog, cache_dir=job.paths.cache_dir,
                         quarantine_path=job.paths.quarantine, certify=certify_split(job),
                         reading=job.paths.log_reading)


def certify_split(job: TrainJob) -> tuple[float, int] | None:
    """(share, seed) of the courses kept to certify the guarantee on, when it is asked for."""
    g = job.router.guarantee
    return (g.share, job.train.seed) if g.enabled else None


def prepare_examples(catalog: Catalog, paths: Paths, train: TrainSettings, out: Path
                     ) -> ExampleSet:
    """router-prepare: the examples from the logs, each marked with its split, written to
    `out` with their meta (hash, counts, ladder statistics, drift reference)."""
    data = load_examples(paths.logs, catalog, cache_dir=paths.cache_dir,
                         quarantine_path=paths.quarantine, reading=paths.log_reading)
    _, test = split_examples(data.examples, method=train.split, test_size=train.test_size,
                             seed=train.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    data.examples.assign(held_out=data.examples.index.isin(test)).to_parquet(out, index=False)
    meta = {"data_hash": data.data_hash, "counts": data.counts,
            "ladder_stats": data.ladder_stats, "reference": data.reference}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=2))
    return data


def train_locally(job: TrainJob, kinds: list[str], phases: Phases) -> Prepared:
    """The local engine: every example in memory, calibrated on course-grouped folds."""
    with phases("read logs"):
        data = load_training_examples(job)
        examples = data.examples
        if job.data.holdout_share:  # courses router-promote judges on: never trained on
            keep = ~in_holdout(examples["course_id"], job.data.holdout_share)
            examples = examples[keep].reset_index(drop=True)
        certify_rows = None
        if certify_split(job):  # the guarantee's courses: out of every fit
            kept = certification_courses(examples["course_id"], *certify_split(job))
            certify_rows = examples[kept].reset_index(drop=True)
            examples = examples[~kept].reset_index(drop=True)
    with phases("split"):
        train_idx, test_idx = split_examples(examples, method=job.train.split,
                                             test_size=job.train.test_size, seed=job.train.seed)
        train_rows, test_rows = examples.iloc[train_idx], examples.iloc[test_idx]
        spec = FeatureSpec.from_config(job.router.features,
                                       embedding_cache=job.paths.cache_dir).fit(train_rows)
    models: dict[str, PassModel] = {}
    for kind in kinds:
        with phases(f"fit {kind}"):
            models[kind] = fit_pass_model(kind, train_rows, spec, job.train)
    return Prepared(data=data, spec=spec, models=models, train_rows=train_rows,
                    test_rows=test_rows, audit_examples=examples,
                    lookup=lookup_table(train_rows), support=support_table(train_rows),
                    certify_rows=certify_rows, engine_info={"engine": "local"})


def run_train(job: TrainJob, progress: bool = True) -> TrainResult:
    """The whole job: examples -> split -> fit + calibrate -> metrics -> artifact."""
    kinds = job.train.kinds
    phases = Phases(["read logs", "split", *(f"fit {k}" for k in kinds), "evaluate",
                     "calibrate dials", "save"], progress)
    try:  # the bar is closed on an error too, so the error is the last thing printed
        if job.train.engine == "dask":
            from training.distributed.engine import train_on_dask

            prepared = train_on_dask(job, kinds, phases, progress)
        else:
            prepared = train_locally(job, kinds, phases)
        with phases("evaluate"):
            metrics, reports = evaluate(job, prepared, kinds)
        with phases("calibrate dials"):
            main = prepared.models[kinds[0]]
            ladder_stats = prepared.data.ladder_stats
            ladder_stats["gate_errors"]["model"] = (
                false_pass_model(main, prepared.audit_examples) if job.train.false_pass_model
                else None)
            metrics["false_pass_model"] = ladder_stats["gate_errors"]["model"]
            lookup = {"lookup": prepared.lookup, "ladder_stats": ladder_stats,
                      "support": prepared.support}
            dials = calibrate_policies(job, main, lookup, prepared.test_rows)
            metrics["calibration"] = dials
        with phases("save"):
            artifact = save_trained(job, prepared, main, metrics, lookup, dials)
    finally:
        phases.close()
    # metrics.json is a DVC output, byte-identical for a seed; timings live beside it.
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (reports / "timings.json").write_text(json.dumps(phases.seconds, indent=2))
    (reports / "report.md").write_text(markdown_report(metrics))
    return TrainResult(artifact=artifact, metrics=metrics, reports_dir=reports,
                       seconds=dict(phases.seconds))


def evaluate(job: TrainJob, prepared: Prepared, kinds: list[str]
             ) -> tuple[dict[str, Any], Path]:
    """Held-out metrics of the model and its baselines, and the reliability plot."""
    test_rows, data = prepared.test_rows, prepared.data
    y_test = test_rows["label"].to_numpy(int)
    X_test = prepared.spec.encode(test_rows)
    main = prepared.models[kinds[0]]
    raw, calibrated = main.raw_and_calibrated(X_test)
    metrics: dict[str, Any] = {
        "model": kinds[0],
        **full_report(test_rows, y_test, calibrated),
        "uncalibrated": classification_metrics(y_test, raw),
        "feature_importance": main.feature_importance(),
        "data": {**data.counts, "data_hash": data.data_hash, "from_cache": data.from_cache,
                 "train_examples": int(data.counts.get("train_examples",
                                                       len(prepared.train_rows))),
                 "test_examples": len(test_rows),
                 "train_courses": int(data.counts.get(
                     "train_courses", prepared.train_rows["course_id"].nunique())),
                 "test_courses": int(test_rows["course_id"].nunique()),
                 "split": job.train.split},
        **({"engine": prepared.engine_info} if prepared.engine_info.get("engine") != "local"
           else {}),
    }
    metrics["start_tier_calibration"] = start_tier_calibration(test_rows, y_test, calibrated)
    curves = {f"{kinds[0]} calibrated": (y_test, calibrated), f"{kinds[0]} raw": (y_test, raw)}
    for kind in kinds[1:]:
        p = prepared.models[kind].predict_matrix(X_test)
        metrics[f"baseline_{kind}"] = full_report(test_rows, y_test, p)
        curves[f"{kind} calibrated"] = (y_test, p)
    reports = Path(job.reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    reliability_plot(curves, y_test, str(reports / "reliability.png"))
    return metrics, reports


def save_trained(job: TrainJob, prepared: Prepared, main: PassModel, metrics: dict[str, Any],
                 lookup: dict[str, Any], dials: dict[str, Any]) -> RouterArtifact:
    """The artifact: model, dials (certified when asked), lookup table and drift reference."""
    guarantee = guaranteed_dial(job, main, lookup, prepared.certify_rows,
                                (dials["policy"] or {}).get("field_lams", {}))
    metrics["guarantee"] = guarantee
    if guarantee and guarantee["certified"]:  # serve the certified dial, not the point one
        guarantee["point_value"] = (dials["policy"] or {}).get("value")
        dials = {**dials, "policy": {**(dials["policy"] or {}), "dial": guarantee["dial"],
                                     "value": guarantee["value"]}}
    calibrated = {key: {d["dial"]: d["value"], **({"field_lams": d["field_lams"]}
                                                  if d.get("field_lams") else {})}
                  for key, d in dials.items() if d}
    data = prepared.data
    reference = {**(data.reference or {}), "calibration": metrics["start_tier_calibration"]}
    artifact = save_artifact(main, job.router.artifact, data_hash=data.data_hash,
                             config=job.record, metrics=metrics, ladder_stats=data.ladder_stats,
                             extra_manifest={"lookup": lookup["lookup"], "reference": reference,
                                             "support": lookup["support"], **calibrated,
                                             "gate_version": gate_version(job.catalog.gate),
                                             **catalog_record(job.catalog)},
                             publish=publish_gate(job.train, metrics, prepared.test_rows,
                                                  lookup["lookup"], job.catalog.ladder))
    metrics["router_version"] = artifact.router_version
    return artifact
