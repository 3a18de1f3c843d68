"""`train.engine=dask` on a real LocalCluster: the same held-out courses and metrics as the
local engine within a tolerance, the same artifact format, served; a corrupt partition is
quarantined and the rest trains; a task in two partitions is left out, not trained twice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import fsspec
import pytest
from omegaconf import OmegaConf

from router_model.contract import EXAMPLE_TASK
from router_model.logs.attempts import read_attempts
from router_model.model.artifact import load_artifact
from router_model.serve.core import RouterService
from tests.helpers import compose_config, tmp_paths
from training.dataset import build_examples

# One worker runs the whole module, so its fixtures (simulated logs, a local cluster and a
# trained artifact) are built once, not once per pytest-xdist worker.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("dask_engine")]

SMALL = ["train.lightgbm.n_estimators=80", "train.split=hash", "train.baseline=null",
         "train.dask.n_workers=2"]


@pytest.fixture(scope="module")
def logs(tmp_path_factory):
    """1,500 simulated courses as a dataset partitioned by date; one partition corrupted."""
    from pipeline.simulate_cli import run_simulate

    tmp = tmp_path_factory.mktemp("dask")
    cfg = compose_config(overrides=[*tmp_paths(tmp), "simulate.n_courses=1500",
                                    "simulate.courses_per_day=250",
                                    f"paths.logs={tmp}/logs"])
    OmegaConf.resolve(cfg)
    run_simulate(cfg)
    parts = sorted(Path(cfg.paths.logs).rglob("*.parquet"))
    corrupt = parts[-1]
    corrupt.write_bytes(corrupt.read_bytes()[:1000])
    return Path(cfg.paths.logs), corrupt


def train(tmp: Path, logs: Path | str, engine: str, *extra: str):
    from training.train import run_train
    from training.train_cli import train_job

    cfg = compose_config("router_train", [*tmp_paths(tmp), f"paths.logs={logs}",
                                          f"train.engine={engine}", *SMALL, *extra])
    OmegaConf.resolve(cfg)
    return cfg, run_train(train_job(cfg), progress=False)


@pytest.fixture(scope="module")
def both(logs, tmp_path_factory):
    root, _ = logs
    local = train(tmp_path_factory.mktemp("local"), root, "local")
    dask = train(tmp_path_factory.mktemp("dask_run"), root, "dask")
    return local, dask


def test_dask_matches_the_local_engine_on_the_same_held_out_courses(both):
    (_, local), (_, dask) = both
    for key in ("test_examples", "test_courses", "valid", "quarantined", "files_quarantined"):
        assert dask.metrics["data"][key] == local.metrics["data"][key], key
    assert dask.metrics["engine"]["engine"] == "dask"
    assert dask.metrics["engine"]["workers"] == 2
    # the local engine calibrates on out-of-fold predictions of all training courses; the
    # Dask engine fits on 85% and calibrates on the other 15%: close, not identical
    assert abs(dask.metrics["overall"]["log_loss"] - local.metrics["overall"]["log_loss"]) < 0.01
    assert abs(dask.metrics["overall"]["roc_auc"] - local.metrics["overall"]["roc_auc"]) < 0.02
    assert dask.metrics["overall"]["ece"] < 0.03


def test_the_dask_artifact_has_the_local_format_and_serves(both, tmp_path):
    (_, local), (dask_cfg, dask) = both
    a, b = load_artifact(local.artifact.path), load_artifact(dask.artifact.path)
    assert set(a.manifest) == set(b.manifest)
    model_a = json.loads((Path(a.path) / "model.json").read_text())
    model_b = json.loads((Path(b.path) / "model.json").read_text())
    assert model_a.keys() == model_b.keys() and model_b["estimator"] == {"type": "lightgbm"}
    assert b.manifest["lookup"] == a.manifest["lookup"]  # exact: summed over partitions
    serve = compose_config("router_serve", [
        f"serve.artifact={dask_cfg.router.artifact}", f"serve.decision_log={tmp_path}/d.jsonl",
        f"serve.compiled_cache={tmp_path}/compiled"])
    service = RouterService.from_config(serve)
    decision = service.route(EXAMPLE_TASK)
    assert service.policy.learned and decision["router_version"] == b.router_version
    assert decision["source"] == "learned" and decision["fallback_reason"] is None
    assert all(0.0 < p < 1.0 for p in decision["pass_probabilities"].values())


def test_a_corrupt_partition_is_quarantined_and_the_rest_trains(both, logs):
    _, corrupt = logs
    (dask_cfg, dask) = both[1]
    assert dask.metrics["data"]["files_quarantined"] == 1
    entries = [json.loads(x) for x in Path(dask_cfg.paths.quarantine).read_text().splitlines()]
    assert [e["source"] for e in entries if e["row"] is None] == [str(corrupt)]
    assert "not a readable Parquet file" in entries[0]["reason"]
    assert dask.metrics["data"]["valid"] > 0


def test_a_task_in_two_partitions_is_left_out_and_quarantined(logs, tmp_path):
    root, corrupt = logs
    copy = tmp_path / "logs"
    shutil.copytree(root, copy)
    good = sorted(p for p in copy.rglob("*.parquet") if p.parent.name != corrupt.parent.name)[0]
    twin = copy / "date=2099-01-01" / good.name
    twin.parent.mkdir()
    shutil.copy(good, twin)
    cfg, result = train(tmp_path / "run", copy, "dask", "train.lightgbm.n_estimators=20")
    twinned = build_examples(read_attempts(good).frame)
    assert result.metrics["data"]["tasks_in_several_partitions"] == twinned["task_id"].nunique()
    reasons = [json.loads(x)["reason"]
               for x in Path(cfg.paths.quarantine).read_text().splitlines()]
    assert sum("also appear in another partition" in r for r in reasons) == 2
    # left out everywhere: the counts and the lookup table see neither copy
    _, clean = train(tmp_path / "clean", root, "dask", "train.lightgbm.n_estimators=20")
    assert result.metrics["data"]["examples"] == clean.metrics["data"]["examples"] - len(twinned)
    assert result.metrics["data"]["tasks"] == \
        clean.metrics["data"]["tasks"] - twinned["task_id"].nunique()
    lookup_all = load_artifact(clean.artifact.path).manifest["lookup"]
    lookup_twin = load_artifact(result.artifact.path).manifest["lookup"]
    assert lookup_twin != lookup_all  # the twinned tasks are out of the cells, not doubled


def test_logs_that_all_sit_in_two_partitions_say_so_before_the_fit(logs, tmp_path):
    root, _ = logs
    copy = tmp_path / "logs"
    shutil.copytree(root, copy / "a")
    shutil.copytree(root, copy / "b")
    with pytest.raises(ValueError, match="found in several partitions"):
        train(tmp_path / "run", copy, "dask")


def test_a_process_local_store_is_refused_for_workers(logs, tmp_path):
    root, _ = logs
    memory = fsspec.filesystem("memory")
    for p in root.rglob("*.parquet"):
        memory.pipe(f"/probe/{p.relative_to(root)}", p.read_bytes())
    with pytest.raises(ValueError, match="Dask workers cannot read it"):
        train(tmp_path, "memory://probe", "dask")


def test_dask_settings_are_checked_before_a_cluster_starts(logs, tmp_path):
    root, _ = logs
    with pytest.raises(ValueError, match="calibration_share"):
        train(tmp_path, root, "dask", "train.calibration_share=1.5")
    with pytest.raises(ValueError, match="memory_limit='lots'"):
        train(tmp_path, root, "dask", "train.dask.memory_limit=lots")
    with pytest.raises(ValueError, match=r"not available with train\.engine=dask"):
        train(tmp_path, root, "dask", "train.split=time")
    with pytest.raises(ValueError, match=r"train\.engine='spark'"):
        train(tmp_path, root, "spark")


def test_the_cluster_comes_from_an_address_or_a_target(logs, tmp_path):
    """A running scheduler by address (as on a real cluster), and a cluster object built
    from config by `_target_` (as dask_kubernetes' KubeCluster would be)."""
    from distributed import LocalCluster

    root, _ = logs
    quick = "train.lightgbm.n_estimators=20"
    with LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=":0",
                      scheduler_kwargs={"dashboard": False}) as cluster:
        _, by_address = train(tmp_path / "a", root, "dask", quick,
                              f"train.dask.address='{cluster.scheduler_address}'")
        assert len(cluster.scheduler_info["workers"]) == 1
    assert by_address.metrics["engine"]["workers"] == 1
    _, by_target = train(tmp_path / "t", root, "dask", quick, (
        "train.dask.cluster={_target_:distributed.LocalCluster,n_workers:1,"
        "threads_per_worker:1,dashboard_address:':0'}"))
    assert by_target.metrics["engine"]["workers"] == 1
    assert by_target.metrics["data"]["valid"] == by_address.metrics["data"]["valid"]
