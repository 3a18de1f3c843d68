"""The production loop on the generator's own logs: generate -> monitor -> retrain -> promote.

Rules with exploration generate the first courses; a champion trains on their logs and is
promoted into an empty serving root; it then serves more courses (its decision log written by
the generator's in-process router); router-monitor joins those logs with the decisions; a
candidate retrains on all logs except the promotion hold-out; router-promote judges it
off-policy on the held-out courses (a generator has no outcome table) and records why.
"""

from __future__ import annotations

import json
import os

import pytest
from omegaconf import OmegaConf

from pipeline.generator.cli import run
from pipeline.generator.inputs import parse_analysis_result
from router_model.model.artifact import LATEST_FILE
from tests.helpers import compose_config, tmp_paths
from tests.pipeline.generator.helpers import (
    ONE_VECTOR_GATE,
    generate_config,
    simulator,
    synthetic_result,
)

N_FIRST = int(os.environ.get("LOOP_FIRST_COURSES", "40"))
N_SERVED = int(os.environ.get("LOOP_SERVED_COURSES", "30"))


def resolved(name: str, overrides: list[str]):
    """The command's job, typed by the conversion its CLI uses."""
    from training.monitoring.cli import monitor_job, promote_job
    from training.train_cli import train_job

    cfg = compose_config(name, overrides)
    OmegaConf.resolve(cfg)
    return {"router_train": train_job, "router_monitor": monitor_job,
            "router_promote": promote_job}[name](cfg)


@pytest.mark.slow
@pytest.mark.xdist_group("generator_loops")  # one worker: the second reuses the vectors
def test_generate_monitor_retrain_promote(tmp_path, monkeypatch, embedder):
    from training.monitoring.monitor import run_monitor
    from training.monitoring.promote import run_promote
    from training.train import run_train

    monkeypatch.setenv("PROVIDER_SIM_API_KEY", "k")
    serving = tmp_path / "serving"
    first = [parse_analysis_result(synthetic_result(i, seed=1)) for i in range(N_FIRST)]
    served = [parse_analysis_result(synthetic_result(i, seed=2)) for i in range(N_SERVED)]
    logs = [f"{tmp_path}/first/out/attempts", f"{tmp_path}/served/out/attempts"]
    with simulator(embedder) as (url, _):
        run(generate_config(tmp_path / "first", url, "generate.explore_epsilon=0.3",
                            *ONE_VECTOR_GATE), first,
            embedder)
        champion = run_train(resolved("router_train", [
            *tmp_paths(tmp_path / "t1"), f"paths.logs={logs[0]}", "train.model=logreg",
            "train.baseline=null", "train.publish=false", *ONE_VECTOR_GATE]),
            progress=False).artifact
        with pytest.raises(ValueError, match="nothing is serving"):
            run_promote(resolved("router_promote", [f"router.artifact={serving}"]),
                        str(champion.path))
        assert run_promote(resolved("router_promote", [f"router.artifact={serving}",
                                                       "promote.allow_first=true"]),
                           str(champion.path))["promoted"]
        run(generate_config(tmp_path / "served", url, f"serve.artifact={serving}",
                            "router.policy.epsilon=0.2", *ONE_VECTOR_GATE), served, embedder)

    monitored = run_monitor(resolved("router_monitor", [
        *tmp_paths(tmp_path / "m"), f"router.artifact={serving}", f"paths.logs={logs[1]}",
        f"monitor.decision_log={tmp_path}/served/out/decisions.jsonl",
        "monitor.window_days=null", "monitor.drift.min_tasks=50", "monitor.bootstrap=50"]))
    assert monitored["router_version"] == champion.router_version
    window = monitored["window"]["window_tasks"]
    assert window > 100 and monitored["decision_log"]["joined_tasks"] == window
    assert monitored["calibration"]["n"] > 0 and "serving" in monitored["policy_value"][
        "policies"]

    candidate = run_train(resolved("router_train", [
        *tmp_paths(tmp_path / "t2"), f"paths.logs=[{logs[0]},{logs[1]}]", "train.model=logreg",
        "train.baseline=null", "train.publish=false", *ONE_VECTOR_GATE, "data.holdout_share=0.3"]),
        progress=False).artifact
    result = run_promote(resolved("router_promote", [
        f"router.artifact={serving}", f"paths.logs=[{logs[0]},{logs[1]}]",
        "promote.holdout_share=0.3", "promote.bootstrap=100"]), str(candidate.path))
    print("\n" + json.dumps({k: result.get(k) for k in (
        "method", "courses", "cost_change", "cost_change_upper", "quality_change",
        "promoted", "reasons")}, indent=1))
    assert result["method"].startswith("off-policy") and result["courses"] > 5
    assert result["champion"] == champion.router_version
    latest = (serving / LATEST_FILE).read_text()
    assert latest == (candidate.path.name if result["promoted"] else champion.path.name)
    assert bool(result["reasons"]) != result["promoted"]
