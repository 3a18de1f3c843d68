"""Dataset building, splits, the model, calibration and the artifact round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from router_model.model.artifact import (
    ArtifactError,
    load_artifact,
    resolve_version_dir,
)
from router_model.model.features import FeatureSpec
from tests.helpers import compose_config, policy_settings
from training.dataset import build_examples, load_examples, split_examples
from training.fitting import TrainSettings
from training.settings_cli import paths


def chain(task, course, steps):
    """Attempt rows for one task: steps are (tier, error_kind, passed)."""
    return [{"task_id": task, "course_id": course, "attempt": i + 1, "tier": tier,
             "error_kind": kind, "passed": passed, "completion_tokens": 100 + i,
             "start_source": "rules", "propensity": 0.9, "field": "exercise",
             "timestamp": pd.Timestamp("2025-09-01", tz="UTC")}
            for i, (tier, kind, passed) in enumerate(steps)]


def test_labels_come_from_the_first_verdict_at_each_tier_tried():
    rows = (chain("t1", "c1", [("a", "low_similarity", False), ("a", "none", True)])
            + chain("t2", "c1", [("a", "schema", False), ("b", "low_similarity", False),
                                 ("b", "low_similarity", False), ("b", "low_similarity", False),
                                 ("c", "none", True)])
            # cut short: a rate limit, then a verdict, then a timeout that ends the chain
            + chain("t3", "c2", [("a", "rate_limit", False), ("a", "none", True)])
            + chain("t4", "c2", [("b", "timeout", False)]))
    ex = build_examples(pd.DataFrame(rows)).set_index(["task_id", "tier"])["label"].to_dict()
    assert ex == {("t1", "a"): 0, ("t2", "a"): 0, ("t2", "b"): 0, ("t2", "c"): 1,
                  ("t3", "a"): 1}
    # t1 never tried b or c, t4 never got a verdict: nothing is imputed for them.


def test_is_start_and_propensity_come_from_the_chain_start():
    ex = build_examples(pd.DataFrame(chain("t", "c", [("a", "schema", False),
                                                        ("b", "none", True)])))
    assert ex.set_index("tier")["is_start"].to_dict() == {"a": True, "b": False}
    assert (ex["propensity"] == 0.9).all()
    assert (ex["expected_output_tokens"] == 100).all()


def test_examples_and_task_rows_do_not_depend_on_the_order_of_the_log():
    from training.reference import task_frame

    rows = pd.DataFrame(
        chain("t2", "c1", [("a", "schema", False), ("b", "rate_limit", False),
                           ("b", "low_similarity", False), ("b", "none", True)])
        + chain("t1", "c1", [("b", "low_similarity", False), ("b", "none", True)])
        + chain("t3", "c2", [("a", "timeout", False)])).assign(
            cost_usd=np.arange(7) / 8, phase=1)
    shuffled = rows.sample(frac=1.0, random_state=3)
    ex = build_examples(rows)
    pd.testing.assert_frame_equal(build_examples(shuffled), ex)
    assert list(ex["task_id"]) == ["t1", "t2", "t2"]  # (task, attempt) order
    assert list(ex["label"]) == [0, 0, 0] and list(ex["tier"]) == ["b", "a", "b"]
    tasks = task_frame(shuffled).set_index("task_id")
    pd.testing.assert_frame_equal(task_frame(rows).set_index("task_id"), tasks)
    assert tasks["start_tier"].to_dict() == {"t1": "b", "t2": "a", "t3": "a"}
    assert tasks["escalated"].to_dict() == {"t1": False, "t2": True, "t3": False}
    assert tasks["flagged"].to_dict() == {"t1": False, "t2": False, "t3": True}
    assert tasks["cost"].to_dict() == {"t1": 9 / 8, "t2": 6 / 8, "t3": 6 / 8}
    assert tasks["first_pass"].fillna(-1).to_dict() == {"t1": 0.0, "t2": 0.0, "t3": -1}
    assert tasks["expected_output_tokens"].fillna(-1).to_dict() == {
        "t1": 100, "t2": 100, "t3": -1}
    assert build_examples(rows.iloc[:0]).empty and task_frame(rows.iloc[:0]).empty


def calibration_rows(n_courses: int = 400, per_course: int = 40) -> pd.DataFrame:
    """Examples whose held-out calibration courses pass far more often than the rest."""
    from training.dataset import calibration_courses

    rng = np.random.default_rng(5)
    course = np.repeat([f"c{i}" for i in range(n_courses)], per_course)
    tokens = rng.integers(100, 2000, len(course))
    held = calibration_courses(course, 0.15, 0)
    p = np.where(held, 0.85, 0.15 + 0.3 * (tokens > 1000))
    return pd.DataFrame({"course_id": course, "field": "exercise", "tier": "a",
                         "prompt_tokens": tokens, "label": (rng.random(len(course)) < p)
                         .astype(int)}).assign(held=held)


def train_settings(**changes) -> TrainSettings:
    """conf/train's defaults with `changes` merged in, typed as router-train types them."""
    from training.train_cli import train_settings as typed_train

    return typed_train(OmegaConf.merge(compose_config("router_train").train, changes))


@pytest.mark.parametrize("holdout_from", [0, None])
def test_large_training_sets_calibrate_on_held_out_courses(holdout_from):
    from training.fitting import fit_pass_model

    rows = calibration_rows()
    spec = FeatureSpec(categorical=("field", "tier"), numeric=("prompt_tokens",)).fit(rows)
    train_cfg = train_settings(**{"holdout_calibration_from": holdout_from,
                                "lightgbm": {"n_estimators": 30}})
    model = fit_pass_model("lightgbm", rows, spec, train_cfg)
    held = rows["held"].to_numpy()
    p = model.predict_matrix(spec.encode(rows))
    if holdout_from == 0:  # trees from the other courses, calibrator from the held-out ones
        assert model.calibrated is None
        assert p[held].mean() == pytest.approx(rows["label"][held].mean(), abs=1e-9)
        assert model._raw_score(spec.encode(rows))[~held].mean() < 0.5
    else:  # one model on every row, calibrated out of fold: the overall rate
        assert model.calibrated is not None
        assert p.mean() == pytest.approx(rows["label"].mean(), abs=0.03)
        assert abs(p[held].mean() - rows["label"][held].mean()) > 0.3


@pytest.mark.parametrize("kind", ["lightgbm", "logreg"])
def test_raw_and_calibrated_probabilities_are_the_estimators_and_the_calibrated_models(kind):
    """Evaluation reads both from one prediction for LightGBM; they must be what the
    estimator and the calibrated model each give on their own."""
    from training.fitting import fit_pass_model

    rows = calibration_rows()
    spec = FeatureSpec(categorical=("field", "tier"), numeric=("prompt_tokens",)).fit(rows)
    model = fit_pass_model(kind, rows, spec, train_settings(lightgbm={"n_estimators": 30}))
    X = spec.encode(rows)
    raw, calibrated = model.raw_and_calibrated(X)
    np.testing.assert_array_equal(raw, model.estimator.predict_proba(X)[:, 1])
    np.testing.assert_allclose(calibrated, model.calibrated.predict_proba(X)[:, 1],
                               rtol=0, atol=1e-12)
    assert not np.allclose(raw, calibrated)


def test_a_calibration_share_outside_zero_and_one_is_refused():
    with pytest.raises(ValueError, match=r"train.calibration_share=1.5: must be between"):
        train_settings(holdout_calibration_from=0, calibration_share=1.5)


def test_a_missing_train_setting_names_its_key_and_group():
    from training.train_cli import train_settings as typed_train

    node = OmegaConf.to_container(compose_config("router_train").train)
    del node["cv_folds"]
    with pytest.raises(ValueError, match=r"train.cv_folds is missing; add it \(see conf/train\)"):
        typed_train(node)


@pytest.mark.parametrize("method", ["course", "time"])
def test_no_course_is_on_both_sides_of_a_split(method):
    rng = np.random.default_rng(0)
    ex = pd.DataFrame({"course_id": rng.integers(0, 50, 2000).astype(str),
                       "timestamp": pd.Timestamp("2025-01-01", tz="UTC")
                       + pd.to_timedelta(rng.integers(0, 10_000, 2000), unit="min")})
    train, test = split_examples(ex, method=method, test_size=0.2, seed=1)
    assert len(train) + len(test) == len(ex)
    assert not set(ex["course_id"].iloc[train]) & set(ex["course_id"].iloc[test])
    if method == "time":
        newest_train = ex.iloc[train].groupby("course_id")["timestamp"].min().max()
        oldest_test = ex.iloc[test].groupby("course_id")["timestamp"].min().min()
        assert newest_train <= oldest_test


def test_feature_spec_handles_unseen_categories_and_missing_values():
    spec = FeatureSpec(categorical=("field", "tier"), numeric=("prompt_tokens",))
    spec.fit(pd.DataFrame({"field": ["a", "b"], "tier": ["x", "y"], "prompt_tokens": [1, 2]}))
    rows = [{"field": "never-seen", "tier": "x", "prompt_tokens": None}, {"tier": "y"}]
    X = spec.encode_records(rows)
    assert np.isnan(X[0, 0]) and X[0, 1] == 0 and np.isnan(X[0, 2])
    assert np.isnan(X[1, 0]) and X[1, 1] == 1
    np.testing.assert_array_equal(X, spec.encode(pd.DataFrame(rows)), strict=False)
    assert spec.unknowns(rows[0]) == {"field": "never-seen"}
    with pytest.raises(ValueError, match="feature prompt_tokens='many' is not a number"):
        spec.encode_records([{"prompt_tokens": "many"}])


@pytest.fixture(scope="module")
def trained(trained_router):
    return trained_router


def test_training_writes_calibrated_metrics_and_reports(trained):
    _, result = trained
    m = result.metrics
    assert m["overall"]["ece"] <= 0.03
    assert m["overall"]["roc_auc"] > 0.7
    assert set(m["by_tier"]) >= {"gpt-oss-20b", "gpt-oss-120b", "qwen3-max"}
    assert set(m["by_field"]) >= {"course_title", "lesson_content", "exercise"}
    assert "baseline_logreg" in m
    assert m["data"]["train_courses"] + m["data"]["test_courses"] == 2000
    for name in ("metrics.json", "report.md", "reliability.png"):
        assert (result.reports_dir / name).stat().st_size > 0
    assert json.loads((result.reports_dir / "metrics.json").read_text())["model"] == "lightgbm"


def test_train_save_load_predict_round_trip_is_identical(trained):
    cfg, result = trained
    loaded = load_artifact(cfg.router.artifact)  # via LATEST
    assert loaded.router_version == result.artifact.router_version
    examples = load_examples(cfg.paths.logs, _catalog(cfg), cache_dir=cfg.paths.cache_dir,
                             reading=paths(cfg).log_reading)
    assert examples.from_cache  # the second read, under the same rules, hits the cache
    frame = examples.examples.head(500)
    np.testing.assert_array_equal(result.artifact.model.predict_frame(frame),
                                  loaded.model.predict_frame(frame))
    records = frame[loaded.model.spec.columns].to_dict(orient="records")
    fast = loaded.model.predict_matrix(loaded.model.spec.encode_records(records))
    np.testing.assert_allclose(fast, loaded.model.predict_frame(frame))


def test_predicting_with_unseen_categories_and_missing_features(trained):
    _, result = trained
    model = result.artifact.model
    rows = pd.DataFrame([
        {"field": "course_title", "tier": "gpt-oss-20b", "analysis.domain": "astrology",
         "analysis.language": "tlh", "prompt_tokens": 2000},
        {"field": "brand_new_field", "tier": "qwen3-max"},
        {},
    ])
    p = model.predict_frame(rows)
    assert p.shape == (3,) and np.isfinite(p).all() and ((p >= 0) & (p <= 1)).all()


def _catalog(cfg):
    from router_model.config import Catalog

    return Catalog.from_config(cfg)


def _copy_version(cfg, tmp_path) -> Path:
    src = resolve_version_dir(cfg.router.artifact)
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def test_corrupt_artifacts_are_refused(trained, tmp_path):
    cfg, _ = trained
    flipped = _copy_version(cfg, tmp_path / "a")
    data = bytearray((flipped / "booster.txt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (flipped / "booster.txt").write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="does not match the sha256"):
        load_artifact(flipped)
    broken_manifest = _copy_version(cfg, tmp_path / "b")
    (broken_manifest / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest\.json is corrupt"):
        load_artifact(broken_manifest)
    with pytest.raises(ArtifactError, match="not a router artifact"):
        load_artifact(tmp_path / "empty")


@pytest.mark.parametrize(("change", "message"), [
    ({"schema_version": 99}, "schema_version=99"),
    ({"library_versions": {"scikit-learn": "0.24.2", "lightgbm": "4.7.0", "numpy": "2.0.0"}},
     "built with scikit-learn 0.24.2"),
])
def test_mismatched_artifacts_are_refused(trained, tmp_path, change, message):
    cfg, _ = trained
    folder = _copy_version(cfg, tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    if "library_versions" in change:
        change = {"library_versions": {**manifest["library_versions"],
                                       "scikit-learn": "0.24.2"}}
    manifest.update(change)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=message):
        load_artifact(folder)


@pytest.mark.slow
def test_the_optional_brief_embedding_feature_trains_and_serves(tmp_path, catalog):
    """A PCA of the MiniLM embedding of each task's brief: off by default, real when on."""
    from omegaconf import OmegaConf

    from pipeline.simulate_cli import run_simulate
    from router_model.contract import EXAMPLE_TASK
    from router_model.decide.policy import RoutingPolicy
    from router_model.model.embeddings import read_cache
    from tests.helpers import compose_config, tmp_paths
    from training.train import run_train
    from training.train_cli import train_job

    run_simulate(compose_config("router_simulate", [*tmp_paths(tmp_path),
                                                    "simulate.n_courses=100"]))
    cfg = compose_config("router_train", [*tmp_paths(tmp_path), "train.baseline=null",
                                          "train.lightgbm.n_estimators=50",
                                          "router.features.brief_embedding_components=3"])
    OmegaConf.resolve(cfg)
    result = run_train(train_job(cfg), progress=False)
    spec = result.artifact.model.spec
    assert spec.columns[-3:] == ["brief_pca_0", "brief_pca_1", "brief_pca_2"]
    cached = read_cache(tmp_path / "cache")
    assert cached and all(v.shape == (384,) for v in cached.values())
    policy = RoutingPolicy(catalog, policy_settings(), load_artifact(result.artifact.path))
    with_brief = policy.decide({**EXAMPLE_TASK, "brief": "Write the lesson content for a "
                                "beginner programming course taught in en."})
    without = policy.decide(EXAMPLE_TASK)
    assert with_brief.source == without.source == "learned"
    assert "brief" in without.missing_features and "brief" not in with_brief.missing_features


@pytest.mark.slow
def test_the_planner_reads_the_audit_table_unless_the_false_pass_model_is_asked(trained,
                                                                               tmp_path):
    """By default (train.false_pass_model=false) the artifact has no fitted model and the
    planner's false-pass rate of a (field, tier) is the audit table's; with true, the
    fitted logistic of tier and predicted pass replaces the table."""
    from router_model.decide.policy import RoutingPolicy
    from router_model.model.artifact import load_artifact
    from tests.helpers import path_overrides
    from training.train import run_train
    from training.train_cli import train_job

    train_cfg, result = trained
    errors = result.artifact.manifest["ladder_stats"]["gate_errors"]
    assert errors["model"] is None
    job = train_job(train_cfg)
    field, tier, rate = next((f, t, r) for f, rates in errors["field_tier"].items()
                             for t, r in rates.items() if t in job.catalog.ladder)
    choice = RoutingPolicy(job.catalog, job.router.policy, result.artifact).choice
    at = job.catalog.ladder.index(tier)
    assert choice.false_pass(field, [0.9] * len(job.catalog.ladder))[at] == rate
    cfg = compose_config("router_train", [
        *path_overrides(train_cfg), f"paths.reports_dir={tmp_path}/reports",
        f"router.artifact={tmp_path}/router", "train.baseline=null",
        "train.lightgbm.n_estimators=20", "train.false_pass_model=true"])
    OmegaConf.resolve(cfg)
    fitted = load_artifact(run_train(train_job(cfg), progress=False).artifact.path)
    model = fitted.manifest["ladder_stats"]["gate_errors"]["model"]
    assert set(model["intercept"]) >= {tier} and model["rows"] >= 200
    choice = RoutingPolicy(job.catalog, job.router.policy, fitted).choice
    confident, doubtful = (choice.false_pass(field, [p] * len(job.catalog.ladder))[at]
                           for p in (0.99, 0.5))
    assert confident != doubtful  # the model reads the predicted pass; the table does not


def test_the_artifact_records_the_gate_it_learned_so_serving_it_warns_of_nothing(
        trained_router, catalog):
    """The scorer's version (`gate_version`) and the gate's rules (`gate_rules`) are both in
    the manifest; one used to overwrite the other, and every served artifact then warned
    that its gate had changed."""
    from router_model.catalog_check import catalog_differences, gate_rules
    from router_model.decide.gate import gate_mismatch, gate_version

    manifest = trained_router[1].artifact.manifest
    assert manifest["gate_version"] == gate_version(catalog.gate)
    assert manifest["gate_rules"] == gate_rules(catalog)
    assert gate_mismatch(catalog.gate, manifest) is None
    assert catalog_differences(manifest, catalog) == []
