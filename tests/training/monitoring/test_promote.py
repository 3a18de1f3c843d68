"""router-promote: a better candidate is promoted, a degraded one is refused, LATEST is safe."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from router_model.model.artifact import LATEST_FILE, ArtifactError
from tests.helpers import compose_config, tmp_paths
from training.monitoring.cli import promote_job, promote_overrides
from training.monitoring.promote import HISTORY_FILE, PROMOTION_FILE, run_promote

# One worker runs the whole module, so its fixture (the simulated and trained champion) is
# built once, not once per pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("promote")


# Without the planner's pessimism, the high-impact floors and the audit's false-pass table:
# with them a model that learned nothing (shuffled labels) plans almost as the rules do,
# and is rightly not inferior on cost and quality; the comparison is tested where the
# models' choices differ (the fitted false-pass model reads each model's predictions).
PLAIN_PLANNER = ["router.policy.pessimism=0", "train.false_pass_model=true",
                 *(f"fields.{f}.floor_tolerance=null" for f in (
                     "course_title", "course_description", "learning_outcomes",
                     "pedagogical_strategy"))]


def train(tmp: Path, root: Path, *overrides: str) -> Path:
    from training.train import run_train
    from training.train_cli import train_job

    cfg = compose_config("router_train", [*tmp_paths(tmp), f"router.artifact={root}",
                                          "train.baseline=null", "train.publish=false",
                                          "train.lightgbm.n_estimators=150", *PLAIN_PLANNER,
                                          *overrides])
    OmegaConf.resolve(cfg)
    return run_train(train_job(cfg), progress=False).artifact.path


@pytest.fixture(scope="module")
def contenders(trained_router, tmp_path_factory):
    """A champion that learned nothing (300 courses of logs with shuffled labels), a model of
    the shared 2,000-course logs as the better candidate, one trained on those logs told that
    every tier passes as the degraded one, and a fresh judging world. (On the one world the
    gate passes most weak cheap-tier outputs, so a model of gate labels gains little true
    pass from more logs, and one of flipped labels even gains some: see the README.)"""
    from pipeline.simulate_cli import run_simulate
    from training.monitoring.trials_cli import corrupt_examples
    from training.settings_cli import compose

    train_cfg, _ = trained_router
    tmp = tmp_path_factory.mktemp("promote")
    run_simulate(compose_config("router_simulate", [*tmp_paths(tmp / "small"),
                                                    "simulate.n_courses=300",
                                                    "simulate.seed=5"]))
    blind = corrupt_examples(tmp / "small" / "data", tmp / "blind", "shuffled", seed=1)
    champion = train(tmp / "blind", tmp / "champions", f"data.examples={blind}")
    bad = corrupt_examples(Path(train_cfg.paths.data_dir), tmp / "bad", "optimistic", seed=1)
    degraded = train(tmp / "bad", tmp / "candidates", f"data.examples={bad}")
    better = train(tmp / "better", tmp / "candidates", f"paths.logs={train_cfg.paths.logs}")
    run_simulate(compose("router_simulate", [*tmp_paths(tmp / "judge"),
                                             "simulate.n_courses=800", "simulate.seed=99"]))
    return {"champion": champion, "better": better, "degraded": degraded,
            "judge": tmp / "judge" / "data"}


def serving_root(contenders, tmp: Path) -> Path:
    root = tmp / "serving"
    root.mkdir(parents=True)
    shutil.copytree(contenders["champion"], root / contenders["champion"].name)
    (root / LATEST_FILE).write_text(contenders["champion"].name)
    return root


def promote_config(root: Path, judge: Path, *extra: str):
    cfg = compose_config("router_promote", [
        f"router.artifact={root}", f"promote.tasks={judge}/tasks.parquet",
        f"promote.outcomes={judge}/outcomes.parquet", "promote.holdout_share=1.0",
        "promote.bootstrap=200", "router.policy.pessimism=0", *extra])
    OmegaConf.resolve(cfg)
    return promote_job(cfg)


def test_a_better_candidate_is_promoted_and_the_comparison_recorded(contenders, tmp_path):
    root = serving_root(contenders, tmp_path)
    result = run_promote(promote_config(root, contenders["judge"]), str(contenders["better"]))
    print(json.dumps(result))
    assert result["non_inferior"] and result["promoted"] and not result["forced"], result
    assert result["method"] == "exact replay" and result["courses"] == 800
    assert result["cost_change_upper"] <= 0.03 and result["quality_change_lower"] >= -0.003
    installed = root / contenders["better"].name
    assert (root / LATEST_FILE).read_text() == installed.name
    assert json.loads((installed / PROMOTION_FILE).read_text())["candidate"] == \
        result["candidate"]
    history = [json.loads(x) for x in (root / HISTORY_FILE).read_text().splitlines()]
    assert [h["promoted"] for h in history] == [True]


def test_a_candidate_told_every_tier_passes_is_refused(contenders, tmp_path):
    root = serving_root(contenders, tmp_path)
    result = run_promote(promote_config(root, contenders["judge"]),
                         str(contenders["degraded"]))
    assert not result["promoted"] and result["reasons"]
    assert (root / LATEST_FILE).read_text() == contenders["champion"].name
    assert not (root / contenders["degraded"].name).exists()  # never copied in
    assert json.loads((contenders["degraded"] / PROMOTION_FILE).read_text())["reasons"] == \
        result["reasons"]


def test_a_pipeline_can_keep_the_candidates_folder_untouched(contenders, tmp_path):
    """promote.beside_candidate=false (dvc.yaml): the candidate's folder, another stage's
    output, is left byte for byte as it was; the history still gets its line."""
    root = serving_root(contenders, tmp_path)
    candidate = tmp_path / "candidates" / contenders["degraded"].name
    shutil.copytree(contenders["degraded"], candidate)
    (candidate / PROMOTION_FILE).unlink(missing_ok=True)
    before = {f.name: f.read_bytes() for f in candidate.iterdir()}
    cfg = promote_config(root, contenders["judge"], "promote.beside_candidate=false")
    result = run_promote(cfg, str(candidate))
    assert not result["promoted"]
    assert {f.name: f.read_bytes() for f in candidate.iterdir()} == before
    history = [json.loads(x) for x in (root / HISTORY_FILE).read_text().splitlines()]
    assert [h["candidate"] for h in history] == [result["candidate"]]


def test_force_promotes_a_refused_candidate_and_says_so(contenders, tmp_path):
    root = serving_root(contenders, tmp_path)
    result = run_promote(promote_config(root, contenders["judge"], "promote.force=true"),
                         str(contenders["degraded"]))
    assert result["promoted"] and result["forced"] and not result["non_inferior"]
    assert (root / LATEST_FILE).read_text() == contenders["degraded"].name
    assert json.loads((root / HISTORY_FILE).read_text().splitlines()[-1])["forced"] is True


def test_a_corrupt_candidate_is_refused_even_with_force(contenders, tmp_path):
    root = serving_root(contenders, tmp_path)
    corrupt = tmp_path / "corrupt" / contenders["better"].name
    shutil.copytree(contenders["better"], corrupt)
    booster = corrupt / "booster.txt"
    booster.write_text(booster.read_text().replace("leaf_value=", "leaf_value=9", 1))
    with pytest.raises(ArtifactError, match="sha256"):
        run_promote(promote_config(root, contenders["judge"], "promote.force=true"),
                    str(corrupt))
    assert (root / LATEST_FILE).read_text() == contenders["champion"].name


def test_an_empty_serving_root_is_seeded_with_the_initial_champion(contenders, tmp_path):
    root = tmp_path / "serving"
    cfg = promote_config(root, contenders["judge"],
                         f"promote.initial_champion={contenders['champion']}")
    result = run_promote(cfg, str(contenders["degraded"]))
    assert result["champion"] is not None and not result["promoted"]
    assert (root / LATEST_FILE).read_text() == contenders["champion"].name


def test_the_cli_exits_2_on_a_refusal_and_prints_why(contenders, tmp_path):
    root = serving_root(contenders, tmp_path)
    judge = contenders["judge"]
    run = subprocess.run(
        [sys.executable, "-c", "from training.monitoring.cli import promote; promote()",
         str(contenders["degraded"]), f"router.artifact={root}",
         f"promote.tasks={judge}/tasks.parquet", f"promote.outcomes={judge}/outcomes.parquet",
         "promote.holdout_share=1.0", "promote.bootstrap=100"],
        capture_output=True, text=True, timeout=300)
    assert run.returncode == 2, run.stderr[-2000:]
    assert "REFUSED" in run.stdout and "LATEST is unchanged" in run.stdout


def test_promote_arguments_become_overrides():
    assert promote_overrides(["artifacts/router/x", "--force", "promote.cost_margin=0.05"]) == [
        "promote.candidate=artifacts/router/x", "promote.force=true", "promote.cost_margin=0.05"]


def test_shadow_decisions_in_the_decision_log_are_what_the_candidate_is_scored_on(
        contenders, trained_router, tmp_path):
    """Off-policy, on logs: where the candidate ran as the shadow artifact, its logged choices
    count, not a re-scoring. A log whose shadow always chose premium makes it far dearer."""
    from router_model.logs.attempts import read_attempts
    from router_model.model.artifact import load_artifact

    train_cfg, _ = trained_router
    logs = f"{train_cfg.paths.data_dir}/attempt_logs.parquet"
    root = serving_root(contenders, tmp_path)
    better = load_artifact(contenders["better"])
    first = read_attempts(logs).frame.drop_duplicates("task_id")
    lines = [json.dumps({"decision": {"decision_id": d, "start_tier": "gpt-oss-20b"},
                         "shadow": {"start_tier": "qwen3-max",
                                    "router_version": better.router_version}})
             for d in first["decision_id"]]
    (tmp_path / "decisions.jsonl").write_text("\n".join(lines) + "\n")
    base = [f"router.artifact={root}", f"paths.logs={logs}", "promote.holdout_share=0.3",
            "promote.bootstrap=100"]
    plain = run_promote(compose_config_resolved(base), str(contenders["better"]))
    root2 = serving_root(contenders, tmp_path / "again")
    shadowed = run_promote(compose_config_resolved(
        [f"router.artifact={root2}", *base[1:],
         f"promote.decision_log={tmp_path}/decisions.jsonl"]), str(contenders["better"]))
    assert plain["shadow_decisions"] == 0 and shadowed["shadow_decisions"] == shadowed["tasks"]
    assert shadowed["candidate_cost_per_course"] > 3 * plain["candidate_cost_per_course"]
    assert not shadowed["promoted"] and "cost" in shadowed["reasons"][0]


def compose_config_resolved(overrides: list[str]):
    cfg = compose_config("router_promote", overrides)
    OmegaConf.resolve(cfg)
    return promote_job(cfg)


def test_only_the_held_out_courses_of_an_outcome_table_are_judged(contenders, tmp_path):
    import pandas as pd

    from training.dataset import in_holdout

    root = serving_root(contenders, tmp_path)
    tasks = pd.read_parquet(contenders["judge"] / "tasks.parquet")
    held = tasks["course_id"][in_holdout(tasks["course_id"], 0.3)].nunique()
    cfg = compose_config_resolved([
        f"router.artifact={root}", f"promote.tasks={contenders['judge']}/tasks.parquet",
        f"promote.outcomes={contenders['judge']}/outcomes.parquet", "promote.holdout_share=0.3",
        "promote.bootstrap=100"])
    result = run_promote(cfg, str(contenders["better"]))
    assert result["courses"] == held and 150 < held < 330


def test_an_empty_or_mistyped_root_gets_no_silent_first_promotion(contenders, tmp_path):
    from training.monitoring.promote import PromotionError

    cfg = promote_config(tmp_path / "typo", contenders["judge"])
    with pytest.raises(PromotionError, match=r"nothing is serving.*allow_first"):
        run_promote(cfg, str(contenders["better"]))
    assert not (tmp_path / "typo" / LATEST_FILE).exists()


def test_a_candidate_under_another_versions_name_is_refused(contenders, tmp_path):
    root = serving_root(contenders, tmp_path)
    disguised = tmp_path / "elsewhere" / contenders["champion"].name
    shutil.copytree(contenders["better"], disguised)
    with pytest.raises(ArtifactError, match="named after its version"):
        run_promote(promote_config(root, contenders["judge"], "promote.force=true"),
                    str(disguised))
    assert (root / LATEST_FILE).read_text() == contenders["champion"].name
    assert not (root / contenders["champion"].name / PROMOTION_FILE).exists()


def test_logs_without_exploration_give_no_off_policy_verdict(contenders, trained_router,
                                                               tmp_path):
    from router_model.logs.attempts import read_attempts, write_attempts
    from training.monitoring.promote import PromotionError

    train_cfg, _ = trained_router
    logs = read_attempts(f"{train_cfg.paths.data_dir}/attempt_logs.parquet").frame
    logs = logs.assign(start_source="rules", propensity=1.0)
    write_attempts(logs, tmp_path / "greedy.parquet")
    root = serving_root(contenders, tmp_path)
    cfg = compose_config_resolved([f"router.artifact={root}",
                                   f"paths.logs={tmp_path}/greedy.parquet"])
    with pytest.raises(PromotionError, match="explored"):
        run_promote(cfg, str(contenders["better"]))
    assert (root / LATEST_FILE).read_text() == contenders["champion"].name


def test_promote_settings_are_range_checked(contenders, tmp_path):
    from router_model.config import ConfigError

    root = serving_root(contenders, tmp_path)
    with pytest.raises(ConfigError, match=r"promote\.confidence"):
        promote_config(root, contenders["judge"], "promote.confidence=2")
    with pytest.raises(ConfigError, match=r"promote\.holdout_share"):
        compose_config_resolved([
            f"router.artifact={root}", f"promote.tasks={contenders['judge']}/tasks.parquet",
            f"promote.outcomes={contenders['judge']}/outcomes.parquet",
            "promote.holdout_share=-0.5"])
