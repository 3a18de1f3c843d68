"""router-monitor: drift statistics, alerts on a shifted world, silence on a fresh default one."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from router_model.config import yaml_defaults
from router_model.logs.attempts import read_attempts
from tests.helpers import compose_config, tmp_paths
from training.monitoring.cli import monitor_job
from training.monitoring.drift import (
    DriftSettings,
    calibration_drift,
    feature_drift,
    outcome_drift,
    psi,
)
from training.reference import feature_reference, outcome_reference, task_frame

SETTINGS = yaml_defaults(DriftSettings, "monitor", "drift", min_tasks=50)


def tasks_like(n: int, seed: int, domain_p: tuple[float, float] = (0.7, 0.3)) -> pd.DataFrame:
    """A small task frame: 10 tasks per course, course-level analysis, task-level tokens."""
    rng = np.random.default_rng(seed)
    courses = np.repeat(np.arange(n // 10), 10)
    domain = rng.choice(["math", "arts"], n // 10, p=domain_p)[courses]
    return pd.DataFrame({
        "course_id": [f"c{seed}-{c}" for c in courses], "field": "lesson_content",
        "prompt_tokens": rng.integers(100, 5000, n), "analysis.domain": domain,
        "analysis.complexity": rng.beta(2, 3, n // 10)[courses],
        "start_tier": "gpt-oss-20b", "first_pass": (rng.random(n) < 0.8).astype(float),
        "escalated": rng.random(n) < 0.2, "flagged": rng.random(n) < 0.01,
        "cost": rng.random(n) / 100})


def test_psi_is_zero_for_equal_shares_and_grows_with_the_move():
    assert psi(np.array([0.5, 0.5]), np.array([0.5, 0.5])) == pytest.approx(0.0)
    assert psi(np.array([0.5, 0.5]), np.array([0.4, 0.6])) < psi(np.array([0.5, 0.5]),
                                                                  np.array([0.1, 0.9]))


def test_a_fresh_sample_of_the_same_mix_raises_no_feature_alert():
    ref = feature_reference(tasks_like(5000, 0))
    rows = feature_drift(ref, tasks_like(3000, 1), SETTINGS)
    assert {r["feature"] for r in rows} == {"field", "prompt_tokens", "analysis.domain",
                                           "analysis.complexity"}
    assert not [r for r in rows if r["alert"]]


def test_a_moved_category_mix_alerts_on_that_feature_only():
    ref = feature_reference(tasks_like(5000, 0))
    rows = {r["feature"]: r for r in feature_drift(ref, tasks_like(3000, 1, (0.2, 0.8)),
                                                   SETTINGS)}
    assert rows["analysis.domain"]["alert"] and rows["analysis.domain"]["psi"] > 0.2
    assert not rows["prompt_tokens"]["alert"] and not rows["field"]["alert"]


def test_a_feature_the_logs_stopped_carrying_alerts_and_unseen_categories_count():
    ref = feature_reference(tasks_like(5000, 0))
    recent = tasks_like(3000, 1).drop(columns="analysis.complexity")
    recent["analysis.domain"] = "cooking"  # never seen in training
    rows = {r["feature"]: r for r in feature_drift(ref, recent, SETTINGS)}
    assert rows["analysis.complexity"]["absent"] and rows["analysis.complexity"]["alert"]
    assert rows["analysis.domain"]["unseen_share"] == 1.0 and rows["analysis.domain"]["alert"]


def test_too_few_tasks_never_alert():
    ref = feature_reference(tasks_like(5000, 0))
    rows = feature_drift(ref, tasks_like(40, 1, (0.0, 1.0)), SETTINGS)
    assert rows and not [r for r in rows if r["alert"]]


def test_outcome_drift_alerts_on_a_dropped_pass_rate_with_intervals():
    ref = outcome_reference(tasks_like(5000, 0))
    recent = tasks_like(3000, 1)
    same = outcome_drift(ref, recent, SETTINGS)
    assert not [r for r in same["rates"] if r["alert"]]
    row = next(r for r in same["rates"] if r["family"] == "first_pass")
    assert row["ci_low"] <= row["rate"] <= row["ci_high"]
    recent["first_pass"] = (np.random.default_rng(2).random(len(recent)) < 0.6).astype(float)
    moved = outcome_drift(ref, recent, SETTINGS)
    alerts = [r for r in moved["rates"] if r["alert"]]
    assert [(r["family"], r["field"], r["tier"]) for r in alerts] == [
        ("first_pass", "lesson_content", "gpt-oss-20b")]
    assert moved["cost_per_course"]["ci_low"] < moved["cost_per_course"]["value"]


def test_calibration_drift_tells_right_probabilities_from_wrong_ones():
    rng = np.random.default_rng(0)
    p = rng.uniform(0.3, 0.99, 4000)
    right = (rng.random(p.size) < p).astype(float)
    wrong = (rng.random(p.size) < p - 0.25).astype(float)
    ok = calibration_drift(p, right, 0.01, SETTINGS)
    bad = calibration_drift(p, wrong, 0.01, SETTINGS)
    assert not ok["alert"] and ok["ece"] < 0.03
    assert bad["alert"] and bad["ece"] > 0.2 and bad["p_value"] < 0.01
    assert sum(c["n"] for c in bad["curve"]) == p.size


def test_task_frame_reads_chains(catalog):
    logs = pd.DataFrame({
        "task_id": ["a", "a", "a", "b"], "course_id": ["c", "c", "c", "c"],
        "attempt": [1, 2, 3, 1], "tier": ["gpt-oss-20b", "gpt-oss-20b", "gpt-oss-120b",
                                          "qwen3-max"],
        "error_kind": ["rate_limit", "low_similarity", "none", "schema"],
        "passed": [False, False, True, False], "cost_usd": [0.0, 0.01, 0.02, 0.05],
        "completion_tokens": [0, 100, 120, 90], "field": "exercise"})
    tasks = task_frame(logs).set_index("task_id")
    assert tasks.loc["a", "first_pass"] == 0.0 and tasks.loc["a", "escalated"]
    assert not tasks.loc["a", "flagged"] and tasks.loc["b", "flagged"]
    assert tasks.loc["a", "cost"] == pytest.approx(0.03)
    assert tasks.loc["a", "expected_output_tokens"] == 100


@pytest.fixture(scope="module")
def windows(trained_router, tmp_path_factory):
    """Fresh recent logs from the default world and from the shifted one."""
    from pipeline.simulate_cli import run_simulate

    out = {}
    for name, extra in (("default", []), ("shift", ["simulate=shift", "simulate.shifted=true"])):
        tmp = tmp_path_factory.mktemp(f"recent-{name}")
        run_simulate(compose_config("router_simulate", [
            *tmp_paths(tmp), *extra, "simulate.n_courses=300", "simulate.seed=77"]))
        out[name] = tmp / "data" / "attempt_logs.parquet"
    return out


def monitor_config(trained_router, logs, tmp, *extra, artifact=None):
    train_cfg, _ = trained_router
    cfg = compose_config("router_monitor", [
        *tmp_paths(tmp), f"router.artifact={artifact or train_cfg.router.artifact}",
        f"paths.logs={logs}",
        "monitor.window_days=null", "monitor.bootstrap=50", *extra])
    OmegaConf.resolve(cfg)
    return monitor_job(cfg)


def test_the_shifted_world_raises_the_drift_alerts_and_the_default_one_none(
        trained_router, windows, tmp_path):
    from training.monitoring.monitor import run_monitor

    quiet = run_monitor(monitor_config(trained_router, windows["default"], tmp_path / "a",
                                       "monitor.ope=false"))
    assert quiet["alerts"] == []
    loud = run_monitor(monitor_config(trained_router, windows["shift"], tmp_path / "b",
                                      "monitor.ope=false"))
    drifted = {a["name"] for a in loud["alerts"] if a["kind"] == "feature"}
    # The shift moves the domain, audience, complexity and completeness mix (conf/simulate).
    assert {"analysis.domain", "analysis.complexity", "analysis.analysis_completeness"} <= drifted
    assert "field" not in drifted and "prompt_tokens" not in drifted
    assert all(a["threshold"] == 0.2 and "retrain" in a["advice"] for a in loud["alerts"]
               if a["kind"] == "feature")


def test_monitor_reports_policy_values_and_writes_its_reports(trained_router, windows,
                                                              tmp_path):
    from training.monitoring.monitor import run_monitor
    from training.monitoring.report import write_reports

    job = monitor_config(trained_router, windows["default"], tmp_path)
    result = run_monitor(job)
    value = result["policy_value"]
    assert set(value["policies"]) == {"serving", *job.monitor.ope_routers}
    premium = value["policies"]["always-premium"]["cost"]["dr"]["value"]
    assert premium > 3 * value["policies"]["serving"]["cost"]["dr"]["value"]
    assert 0.05 < value["explored_share"] < 0.15  # the simulator explores 10% of tasks
    write_reports(result, tmp_path / "out")
    saved = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert saved["window"]["window_tasks"] == result["window"]["window_tasks"] > 1000
    report = (tmp_path / "out" / "report.md").read_text()
    assert "No alerts" in report and "| serving |" in report
    for plot in ("feature_drift.png", "reliability.png", "pass_rate.png"):
        assert (tmp_path / "out" / plot).read_bytes()[:4] == b"\x89PNG"


def test_the_decision_log_joins_by_decision_id_and_bad_lines_are_counted(
        trained_router, windows, tmp_path):
    from training.monitoring.monitor import read_decisions, run_monitor

    logs = read_attempts(windows["default"]).frame
    first = logs.drop_duplicates("task_id").head(500)
    lines = [json.dumps({"decision": {"decision_id": d, "start_tier": t,
                                      "pass_probabilities": {t: 0.5}}})
             for d, t in zip(first["decision_id"], first["tier"], strict=True)]
    path = tmp_path / "decisions.jsonl"
    path.write_bytes(("\n".join(lines) + "\n{not json\n").encode() + b"\xff\xfe\n")
    decisions, counts = read_decisions(str(path))
    assert len(decisions) == 500 and counts["unreadable"] == 2
    result = run_monitor(monitor_config(trained_router, windows["default"], tmp_path,
                                        "monitor.ope=false", f"monitor.decision_log={path}"))
    assert result["decision_log"]["joined_tasks"] == 500


def test_an_artifact_without_a_reference_is_refused_with_advice(trained_router, windows,
                                                                 tmp_path):
    import shutil

    from training.monitoring.monitor import run_monitor

    _, result = trained_router
    old = tmp_path / "router" / result.artifact.path.name
    shutil.copytree(result.artifact.path, old)
    manifest = json.loads((old / "manifest.json").read_text())
    del manifest["reference"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    cfg = monitor_config(trained_router, windows["default"], tmp_path, "monitor.ope=false",
                         artifact=old)
    with pytest.raises(ValueError, match=r"no drift reference.*retrain"):
        run_monitor(cfg)


def test_a_numeric_feature_the_logs_lost_alerts_as_absent():
    ref = feature_reference(tasks_like(5000, 0))
    recent = tasks_like(3000, 1).assign(**{"analysis.complexity": np.nan})
    rows = {r["feature"]: r for r in feature_drift(ref, recent, SETTINGS)}
    assert rows["analysis.complexity"]["absent"] and rows["analysis.complexity"]["alert"]


@pytest.mark.parametrize(("key", "value"), [("alpha", 0.0), ("alpha", 2.0), ("psi_alert", -1.0),
                                            ("min_tasks", -5), ("outcome_alerts", ("bogus",))])
def test_drift_settings_out_of_range_name_the_key(key, value):
    from router_model.config import ConfigError

    with pytest.raises(ConfigError, match=rf"monitor\.drift\.{key}"):
        yaml_defaults(DriftSettings, "monitor", "drift", **{key: value})


def test_served_probabilities_that_are_not_probabilities_are_ignored(tmp_path):
    from training.monitoring.monitor import read_decisions

    lines = [{"decision": {"decision_id": str(i), "start_tier": "t",
                           "pass_probabilities": {"t": p}}}
             for i, p in enumerate(["abc", 7.5, True, None, 0.4])]
    path = tmp_path / "d.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    decisions, counts = read_decisions(str(path))
    assert decisions["served_p"].isna().sum() == 4
    assert decisions["served_p"].dropna().tolist() == [0.4] and counts["unreadable"] == 0


def test_a_window_is_never_set_by_a_row_from_the_future():
    from training.monitoring.monitor import in_window

    now = pd.Timestamp.now(tz="UTC")
    logs = pd.DataFrame({"task_id": ["a", "b", "c"],
                         "timestamp": [now - pd.Timedelta(days=1), now - pd.Timedelta(days=2),
                                       pd.Timestamp("2262-01-01", tz="UTC")]})
    assert sorted(in_window(logs, 7, None)["task_id"]) == ["a", "b"]
    with pytest.raises(ValueError, match=r"monitor\.window_days=0"):
        monitor_job(compose_config("router_monitor", ["monitor.window_days=0"]))
