"""Several replicas behind one artifact folder (issue 16, part 4): two real `router-serve`
processes on 127.0.0.1 pick up a newly published artifact, write one decision log each that
joins by decision id, and label their /metrics with their replica name; the compose
deployment that runs them is checked for shape (Docker is not run here)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml

from router_model.config import ConfigError, typed
from router_model.contract import EXAMPLE_TASK, Decision, DecisionLogRecord
from router_model.logs.decisions import DecisionLog
from router_model.model.artifact import save_artifact
from router_model.serve.core import ServeSettings
from tests.helpers import REPO, compose_config, metric_samples, metric_values, tmp_paths
from tests.router_model.model.test_artifact import _fit
from tests.router_model.serve.test_app import free_port

# One worker runs the whole module, so its fixture (the two-replica fleet) is built once, not once
# per pytest-xdist worker.
pytestmark = pytest.mark.xdist_group("replicas")

ROUTER_SERVE = Path(sys.executable).with_name("router-serve")
PICKUP_TIMEOUT_S = 60  # generous: the watch polls every 0.2 s; the machine may be busy


def serve_settings(*overrides: str) -> ServeSettings:
    cfg = compose_config("router_serve", list(overrides))
    return typed(ServeSettings, cfg.serve, "serve")


# ---- the replica's name, and the decision-log file it picks --------------------------------


def test_the_replica_defaults_to_host_and_port_and_names_the_decision_log(monkeypatch):
    monkeypatch.delenv("ROUTER_REPLICA", raising=False)
    a, b = serve_settings("serve.port=9001"), serve_settings("serve.port=9002")
    assert a.replica.endswith("-9001") and b.replica.endswith("-9002")
    host = socket.gethostname()
    if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,55}", host):  # a name that needs no cleaning
        assert a.replica == f"{host}-9001"
    assert a.decision_log.endswith(f"decisions/decisions.{a.replica}.jsonl")
    assert a.decision_log != b.decision_log  # two replicas on one host: two files


def test_the_replica_comes_from_config_or_router_replica(monkeypatch):
    monkeypatch.setenv("ROUTER_REPLICA", "router-b")
    assert serve_settings().replica == "router-b"
    assert serve_settings().decision_log.endswith("decisions.router-b.jsonl")
    assert serve_settings("serve.replica=eu-1").replica == "eu-1"  # config wins
    explicit = serve_settings("serve.decision_log=/tmp/x/one.jsonl")
    assert explicit.decision_log == "/tmp/x/one.jsonl"  # a path without {replica} is kept


@pytest.mark.parametrize("name", ["../up", "a b", "-dash-first", "x" * 65, 'quo"te'])
def test_a_replica_name_that_cannot_name_a_file_or_label_is_refused(name):
    with pytest.raises(ConfigError, match=r"serve\.replica"):
        serve_settings(f"serve.replica='{name}'")


def _decision(i: int) -> dict:
    return Decision(decision_id=f"{i:032x}", router_version="v", start_tier="gpt-oss-20b",
                    model="openai/gpt-oss-20b", provider="openrouter", base_url="-",
                    source="rules", propensity=1.0, ladder=["gpt-oss-20b"]).to_dict()


def test_a_second_process_on_the_same_decision_log_is_refused(tmp_path):
    path = tmp_path / "decisions.jsonl"
    code = ("import sys\nfrom router_model.logs.decisions import DecisionLog\n"
            "log = DecisionLog(sys.argv[1], replica='other')\n"
            "log.write('route', {'field': 'exercise'}, {'decision_id': 'from-other'})\n"
            "log.close()\n")
    held = DecisionLog(path, replica="first")
    try:
        held.write("route", {"field": "exercise"}, _decision(1))
        refused = subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO,
                                 capture_output=True, text=True)
        assert refused.returncode != 0
        assert "DecisionLogBusy" in refused.stderr and "serve.decision_log" in refused.stderr
    finally:
        held.close()
    lines = [DecisionLogRecord.model_validate_json(x) for x in path.read_text().splitlines()]
    assert [(r.replica, r.decision.decision_id) for r in lines] == [("first", f"{1:032x}")]
    # once the first writer is gone, the file is free again
    subprocess.run([sys.executable, "-c", code, str(path)], cwd=REPO, check=True)
    assert "from-other" in path.read_text().splitlines()[-1]


def test_the_monitor_reads_a_folder_of_replica_logs_as_one(tmp_path):
    from training.monitoring.monitor import read_decisions

    folder = tmp_path / "decisions"
    for replica, ids in (("a", range(0, 5)), ("b", range(5, 12))):
        log = DecisionLog(folder / f"decisions.{replica}.jsonl", max_bytes=1500, backups=9,
                          replica=replica)
        for i in ids:
            log.write("route", {"field": "exercise"}, _decision(i))
            log.flush()  # one line at a time, so rotation splits them across files
        log.close()
    assert len(list(folder.iterdir())) > 2  # rotated files are there too
    frame, counts = read_decisions(str(folder))
    assert sorted(frame["decision_id"]) == [f"{i:032x}" for i in range(12)]
    assert counts == {"lines": 12, "unreadable": 0}


# ---- two real router-serve processes, one artifact root ------------------------------------


@dataclass
class Replica:
    name: str
    url: str
    process: subprocess.Popen
    output: Path


def _start(name: str, root: Path, tmp: Path, name_by_env: bool) -> Replica:
    """One `router-serve` subprocess; its name comes from ROUTER_REPLICA or serve.replica."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("ROUTER_REPLICA", None)
    args = [str(ROUTER_SERVE), f"serve.port={port}", f"router.artifact={root}",
            "serve.reload_poll_s=0.2", *tmp_paths(tmp)]
    if name_by_env:
        env["ROUTER_REPLICA"] = name
    else:
        args.append(f"serve.replica={name}")
    output = tmp / f"{name}.out"
    with output.open("wb") as out:
        process = subprocess.Popen(args, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT)
    return Replica(name, f"http://127.0.0.1:{port}", process, output)


def _wait_ready(replica: Replica, deadline: float) -> None:
    while True:
        if replica.process.poll() is not None:
            raise RuntimeError(f"{replica.name} exited: {replica.output.read_text()[-3000:]}")
        try:
            if httpx.get(f"{replica.url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{replica.name} not ready: {replica.output.read_text()[-3000:]}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> Iterator[tuple[list[Replica], Path, Path]]:
    """Two replicas sharing one artifact root and one data folder (decision logs)."""
    tmp = tmp_path_factory.mktemp("replicas")
    root = tmp / "artifacts" / "router"
    model, _ = _fit("lightgbm", "isotonic")
    save_artifact(model, root, data_hash="d" * 64, config={}, metrics={})
    replicas = [_start("router-a", root, tmp, name_by_env=False),
                _start("router-b", root, tmp, name_by_env=True)]
    try:
        deadline = time.monotonic() + 180  # two cold starts on a shared 2-core machine
        for replica in replicas:
            _wait_ready(replica, deadline)
        yield replicas, root, tmp
    finally:
        for replica in replicas:
            replica.process.terminate()
        for replica in replicas:
            try:
                replica.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                replica.process.kill()
                replica.process.wait()


@pytest.mark.slow
def test_both_replicas_pick_up_a_published_artifact(fleet):
    replicas, root, _ = fleet
    before = {httpx.get(f"{r.url}/readyz").json()["router_version"] for r in replicas}
    assert len(before) == 1
    model, _ = _fit("lightgbm", "isotonic")
    # Published as router-train and router-promote do: a new version folder, then LATEST.
    new = save_artifact(model, root, data_hash="e" * 64, config={}, metrics={}).router_version
    assert new not in before
    deadline = time.monotonic() + PICKUP_TIMEOUT_S
    seen = {}
    while time.monotonic() < deadline:
        seen = {r.name: httpx.get(f"{r.url}/readyz").json() for r in replicas}
        if all(s["router_version"] == new for s in seen.values()):
            break
        time.sleep(0.1)
    assert {name: s["router_version"] for name, s in seen.items()} == {
        "router-a": new, "router-b": new}
    assert {name: s["mode"] for name, s in seen.items()} == {"router-a": "learned",
                                                             "router-b": "learned"}
    for r in replicas:
        served = httpx.post(f"{r.url}/v1/route", json=EXAMPLE_TASK).json()
        assert served["router_version"] == new
        text = httpx.get(f"{r.url}/metrics").text
        assert metric_values(text, "router_model_info", replica=r.name,
                             router_version=new) == [1.0]
        assert metric_values(text, "router_reloads_total", replica=r.name,
                             result="ok") == [1.0]


@pytest.mark.slow
def test_each_replica_writes_its_own_decision_log_and_the_logs_join_by_id(fleet):
    replicas, _, tmp = fleet
    received: dict[str, str] = {}  # decision id -> the replica that answered it
    with httpx.Client() as client:
        for r in replicas:
            for i in range(40):
                task = {**EXAMPLE_TASK, "task_id": f"{r.name}-{i}"}
                answer = client.post(f"{r.url}/v1/route", json=task)
                assert answer.status_code == 200, answer.text
                received[answer.json()["decision_id"]] = r.name
            batch = client.post(f"{r.url}/v1/route/batch", json={"tasks": [EXAMPLE_TASK] * 30})
            received.update({d["decision_id"]: r.name for d in batch.json()["decisions"]})
    assert len(received) == 2 * 70  # ids the clients got are unique across replicas

    folder = tmp / "data" / "decisions"
    files = {r.name: folder / f"decisions.{r.name}.jsonl" for r in replicas}
    deadline = time.monotonic() + PICKUP_TIMEOUT_S  # lines are flushed every 0.2 s
    logged: list[tuple[str, DecisionLogRecord]] = []
    while time.monotonic() < deadline:
        logged = [(name, DecisionLogRecord.model_validate_json(line))
                  for name, file in files.items() if file.exists()
                  for line in file.read_text().splitlines()]
        if received.keys() <= {rec.decision.decision_id for _, rec in logged}:
            break
        time.sleep(0.1)
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        f.name for f in files.values())  # one file per replica, named by it
    ids = [rec.decision.decision_id for _, rec in logged]
    assert len(ids) == len(set(ids))  # no id twice, within or across replicas
    assert all(rec.replica == name for name, rec in logged)  # each line names its writer
    by_id = {rec.decision.decision_id: rec.replica for _, rec in logged}
    assert {i: by_id.get(i) for i in received} == received  # the join: id -> replica


@pytest.mark.slow
def test_each_replica_labels_every_metric_with_its_name(fleet):
    replicas, _, _ = fleet
    for r in replicas:
        assert httpx.post(f"{r.url}/v1/route", json=EXAMPLE_TASK).status_code == 200
    for r in replicas:
        samples = metric_samples(httpx.get(f"{r.url}/metrics").text)
        assert {labels.get("replica") for _, labels, _ in samples} == {r.name}
        assert {name for name, _, _ in samples} >= {
            "router_decisions_total", "router_model_info", "router_degraded",
            "router_live_window_decisions", "router_decision_log_dropped_bytes_total"}
        assert sum(value for name, labels, value in samples
                   if name == "router_decisions_total") >= 1


# ---- the compose deployment, as far as it can be checked without Docker --------------------


def _overrides(command: list[str]) -> list[str]:
    return [arg for arg in command if "=" in arg and not arg.startswith("-")]


def test_the_compose_file_runs_two_named_replicas_on_one_artifact_volume_scraped_by_prometheus(
        monkeypatch):
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    routers = {name: s for name, s in services.items()
               if s.get("command") and s["command"][0] == "router-serve"}
    assert len(routers) == 2

    dockerfile = REPO / routers[next(iter(routers))]["build"]["dockerfile"]
    assert dockerfile.is_file() and "router-serve" in dockerfile.read_text()

    names, ports, artifact_mounts = {}, {}, {}
    for service, spec in routers.items():
        overrides = _overrides(spec["command"])
        monkeypatch.setenv("ROUTER_REPLICA", spec["environment"]["ROUTER_REPLICA"])
        cfg = compose_config("router_serve", overrides)  # the command is a valid config
        settings = typed(ServeSettings, cfg.serve, "serve")
        names[service], ports[service] = settings.replica, settings.port
        assert settings.host == "0.0.0.0" and settings.decision_log.endswith(
            f"decisions.{settings.replica}.jsonl")
        volumes = {v.split(":")[1]: v.split(":")[0] for v in spec["volumes"]}
        artifact_mounts[service] = next(
            volume for mount, volume in volumes.items()
            if str(cfg.router.artifact).startswith(mount.rstrip("/") + "/"))
    assert len(set(names.values())) == 2  # distinct replica labels and log files
    assert len(set(artifact_mounts.values())) == 1  # one shared artifact volume
    assert next(iter(artifact_mounts.values())) in compose["volumes"]

    prometheus = services["prometheus"]
    mounted = {v.split(":")[1]: v.split(":")[0] for v in prometheus["volumes"]}
    config_file = REPO / mounted["/etc/prometheus/prometheus.yml"]
    scrape = yaml.safe_load(config_file.read_text())
    targets = {t for job in scrape["scrape_configs"] for group in job["static_configs"]
               for t in group["targets"]}
    assert targets == {f"{service}:{port}" for service, port in ports.items()}
