"""Fit, calibrate, evaluate and save the pass-probability model."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from router_model.artifact import RouterArtifact, save_artifact
from router_model.config import Catalog, typed
from router_model.features import FeatureSpec
from router_model.model import PassModel
from router_model.policy import PolicySettings, RoutingPolicy
from training.dataset import ExampleSet, load_examples, split_examples
from training.knob import calibrate_knob
from training.metrics import full_report, reliability_plot


def estimator_names(train_cfg: DictConfig) -> list[str]:
    """The entries of conf/train that describe an estimator (they carry a `_target_`)."""
    return [k for k, v in train_cfg.items() if isinstance(v, DictConfig) and "_target_" in v]


def make_estimator(kind: str, spec: FeatureSpec, train_cfg: DictConfig) -> Any:
    """An unfitted estimator built from conf/train's entry `kind` (`_target_` + settings)."""
    from hydra.utils import instantiate

    if kind not in estimator_names(train_cfg):
        raise ValueError(f"train model {kind!r} has no entry with a _target_ in conf/train; "
                         f"known: {estimator_names(train_cfg)}")
    return instantiate(train_cfg[kind], categorical_features=list(spec.categorical_indices),
                       random_state=int(train_cfg.seed), _convert_="all")


def fit_pass_model(kind: str, rows: pd.DataFrame, spec: FeatureSpec, train_cfg: DictConfig
                   ) -> PassModel:
    """Fit on all rows; calibrate on out-of-fold predictions from course-grouped folds."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import GroupKFold

    if train_cfg.calibration not in ("isotonic", "sigmoid"):
        raise ValueError(f"train.calibration={train_cfg.calibration!r}: "
                         "expected 'isotonic' or 'sigmoid'")
    X = spec.encode(rows)
    y = rows["label"].to_numpy(int)
    if len(np.unique(y)) < 2:
        raise ValueError("the training examples hold only one class (every attempt passed, or "
                         "none did); the model needs both. Add more logs.")
    folds = list(GroupKFold(n_splits=int(train_cfg.cv_folds)).split(
        X, y, groups=rows["course_id"].to_numpy()))
    calibrated = CalibratedClassifierCV(make_estimator(kind, spec, train_cfg),
                                        method=str(train_cfg.calibration), cv=folds,
                                        ensemble=False)
    calibrated.fit(X, y)
    return PassModel(spec=spec, calibrated=calibrated, kind=kind)


def calibrate_policy_knob(cfg: DictConfig, model: PassModel, ladder_stats: dict[str, Any],
                          rows: pd.DataFrame) -> dict[str, Any] | None:
    """The knob that meets router.calibrate on the held-out tasks (one row per task)."""
    candidate = RouterArtifact(model=model, manifest={"ladder_stats": ladder_stats,
                                                      "router_version": "candidate"}, path=None)
    settings = typed(PolicySettings, cfg.router.policy, "router.policy")
    policy = RoutingPolicy(Catalog.from_config(cfg), settings, candidate)
    tasks = rows.drop_duplicates("task_id").reset_index(drop=True)
    return calibrate_knob(policy, tasks, cfg.router.get("calibrate"))


@dataclass
class TrainResult:
    artifact: RouterArtifact
    metrics: dict[str, Any]
    reports_dir: Path
    seconds: dict[str, float]


def load_training_examples(cfg: DictConfig) -> ExampleSet:
    """Examples from a prepared file (data.examples) or from the logs via the cache."""
    catalog = Catalog.from_config(cfg)
    if cfg.data.get("examples"):
        path = Path(cfg.data.examples)
        if not path.exists():
            raise FileNotFoundError(f"data.examples={str(path)!r} does not exist; run "
                                    "router-prepare, or set data.examples=null to read logs")
        frame = pd.read_parquet(path)
        meta = json.loads(path.with_suffix(".json").read_text())
        return ExampleSet(frame, meta["data_hash"], meta["counts"], meta["ladder_stats"],
                          from_cache=True)
    return load_examples(cfg.data.logs, catalog, cache_dir=cfg.paths.cache_dir,
                         quarantine_path=cfg.paths.quarantine)


def run_train(cfg: DictConfig, progress: bool = True) -> TrainResult:
    """The whole job: examples -> split -> fit + calibrate -> metrics -> artifact."""
    timings: dict[str, float] = {}
    kinds = [str(cfg.train.model)] + ([str(cfg.train.baseline)] if cfg.train.get("baseline")
                                      and cfg.train.baseline != cfg.train.model else [])
    for kind in kinds:
        if kind not in estimator_names(cfg.train):
            raise ValueError(f"train model {kind!r} has no entry with a _target_ in conf/"
                             f"train; known: {estimator_names(cfg.train)}")
    steps = ["read logs", "split", *(f"fit {k}" for k in kinds), "evaluate", "calibrate knob",
             "save"]
    bar = tqdm(total=len(steps), desc="router-train", unit="step", disable=not progress)

    def phase(name: str) -> None:
        bar.set_postfix_str(name)
        timings[name] = time.perf_counter()

    def done(name: str) -> None:
        timings[name] = round(time.perf_counter() - timings[name], 2)
        bar.update(1)

    phase("read logs")
    data = load_training_examples(cfg)
    examples = data.examples
    done("read logs")

    phase("split")
    train_idx, test_idx = split_examples(examples, method=str(cfg.train.split),
                                         test_size=float(cfg.train.test_size),
                                         seed=int(cfg.train.seed))
    train_rows, test_rows = examples.iloc[train_idx], examples.iloc[test_idx]
    spec = FeatureSpec.from_config(cfg.router.features,
                                   embedding_cache=cfg.paths.cache_dir).fit(train_rows)
    done("split")

    models: dict[str, PassModel] = {}
    for kind in kinds:
        phase(f"fit {kind}")
        models[kind] = fit_pass_model(kind, train_rows, spec, cfg.train)
        done(f"fit {kind}")

    phase("evaluate")
    y_test = test_rows["label"].to_numpy(int)
    X_test = spec.encode(test_rows)
    main = models[kinds[0]]
    raw, calibrated = main.raw_and_calibrated(X_test)
    metrics: dict[str, Any] = {
        "model": kinds[0],
        **full_report(test_rows, y_test, calibrated),
        "uncalibrated": full_report(test_rows, y_test, raw)["overall"],
        "feature_importance": main.feature_importance(),
        "data": {**data.counts, "data_hash": data.data_hash, "from_cache": data.from_cache,
                 "train_examples": len(train_rows), "test_examples": len(test_rows),
                 "train_courses": int(train_rows["course_id"].nunique()),
                 "test_courses": int(test_rows["course_id"].nunique()),
                 "split": str(cfg.train.split)},
    }
    curves = {f"{kinds[0]} calibrated": (y_test, calibrated), f"{kinds[0]} raw": (y_test, raw)}
    for kind in kinds[1:]:
        p = models[kind].predict_matrix(X_test)
        metrics[f"baseline_{kind}"] = full_report(test_rows, y_test, p)
        curves[f"{kind} calibrated"] = (y_test, p)
    reports = Path(cfg.reports_dir)
    reports.mkdir(parents=True, exist_ok=True)
    reliability_plot(curves, y_test, str(reports / "reliability.png"))
    done("evaluate")

    phase("calibrate knob")
    knob = calibrate_policy_knob(cfg, main, data.ladder_stats, test_rows)
    metrics["knob_calibration"] = knob
    done("calibrate knob")

    phase("save")
    config = OmegaConf.to_container(cfg, resolve=True)
    artifact = save_artifact(main, cfg.router.artifact, data_hash=data.data_hash,
                             config=config, metrics=metrics, ladder_stats=data.ladder_stats,
                             policy={"knob": knob["knob"]} if knob else None)
    metrics["router_version"] = artifact.router_version
    done("save")
    bar.close()
    # metrics.json is a DVC output, byte-identical for a seed; timings live beside it.
    (reports / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (reports / "timings.json").write_text(json.dumps(timings, indent=2))
    (reports / "report.md").write_text(markdown_report(metrics))
    return TrainResult(artifact=artifact, metrics=metrics, reports_dir=reports,
                       seconds=dict(timings))


def _fmt(value: Any, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _metric_rows(groups: dict[str, dict[str, Any]]) -> list[str]:
    rows = ["| group | n | pass rate | ROC-AUC | PR-AUC | Brier | ECE |",
            "|---|---|---|---|---|---|---|"]
    for name, m in groups.items():
        rows.append(f"| {name} | {m['n']:,} | {_fmt(m['pass_rate'])} | {_fmt(m['roc_auc'])} | "
                    f"{_fmt(m['pr_auc'])} | {_fmt(m['brier'])} | {_fmt(m['ece'])} |")
    return rows


def markdown_report(metrics: dict[str, Any]) -> str:
    """A short report: headline comparison, per-tier and per-field reliability, importances."""
    d = metrics["data"]
    lines = [f"# Router training report: {metrics.get('router_version', '')}", "",
             f"{d['valid']:,} valid log rows ({d['quarantined']:,} quarantined) -> "
             f"{d['examples']:,} (task, tier) examples; held out {d['test_courses']:,} courses "
             f"({d['test_examples']:,} examples, split by {d['split']}).", "",
             "## Held-out comparison", "",
             "| model | log-loss | ROC-AUC | PR-AUC | Brier | ECE |", "|---|---|---|---|---|---|"]
    candidates = {metrics["model"] + " (calibrated)": metrics["overall"],
                  metrics["model"] + " (uncalibrated)": metrics["uncalibrated"]}
    candidates |= {k.removeprefix("baseline_") + " (calibrated)": v["overall"]
                   for k, v in metrics.items() if k.startswith("baseline_")}
    for name, m in candidates.items():
        lines.append(f"| {name} | {_fmt(m['log_loss'], 4)} | {_fmt(m['roc_auc'])} | "
                     f"{_fmt(m['pr_auc'])} | {_fmt(m['brier'], 4)} | {_fmt(m['ece'], 4)} |")
    lines += ["", "## By tier", "", *_metric_rows(metrics["by_tier"]),
              "", "## By field", "", *_metric_rows(metrics["by_field"]),
              "", "## Feature importance (share of gain)", ""]
    for name, share in sorted(metrics["feature_importance"].items(), key=lambda kv: -kv[1]):
        lines.append(f"- {name}: {share:.3f}")
    lines += ["", "![reliability](reliability.png)", ""]
    return "\n".join(lines)


def format_summary(result: TrainResult) -> str:
    m = result.metrics
    d = m["data"]
    o = m["overall"]
    lines = [f"Trained {m['model']} -> {result.artifact.path}",
             f"  data: {d['valid']:,} log rows ({d['quarantined']:,} quarantined), "
             f"{d['examples']:,} examples; held out {d['test_courses']:,} courses"
             + (" (cached dataset)" if d["from_cache"] else "")
             + (f"; {d['files_quarantined']:,} unreadable log files skipped (see the "
                "quarantine file)" if d.get("files_quarantined") else ""),
             f"  held-out: log-loss {_fmt(o['log_loss'], 4)}  ROC-AUC {_fmt(o['roc_auc'])}  "
             f"PR-AUC {_fmt(o['pr_auc'])}  Brier {_fmt(o['brier'], 4)}  ECE {_fmt(o['ece'], 4)}"]
    for key, value in m.items():
        if key.startswith("baseline_"):
            b = value["overall"]
            lines.append(f"  baseline {key.removeprefix('baseline_')}: log-loss "
                         f"{_fmt(b['log_loss'], 4)}  ROC-AUC {_fmt(b['roc_auc'])}  "
                         f"ECE {_fmt(b['ece'], 4)}")
    lines.append("  ECE by tier: " + ", ".join(f"{t} {_fmt(v['ece'])}"
                                               for t, v in m["by_tier"].items()))
    if m.get("knob_calibration"):
        k = m["knob_calibration"]
        lines.append(f"  policy knob {k['knob']:.3f}, calibrated to {k['target']} "
                     f"(target {k['target_value']:.4f}, expected {k['expected']:.4f})")
    top = sorted(m["feature_importance"].items(), key=lambda kv: -kv[1])[:5]
    lines.append("  top features: " + ", ".join(f"{k} {v:.2f}" for k, v in top))
    lines.append(f"  reports: {result.reports_dir}/{{metrics.json,report.md,reliability.png}}")
    lines.append("  seconds: " + ", ".join(f"{k} {v}" for k, v in result.seconds.items()))
    return "\n".join(lines)
