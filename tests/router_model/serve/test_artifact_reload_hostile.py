"""A crafted artifact cannot crash, hang or silently degrade the service (issue 29, class 1).

In a live `router-serve`: crafted boosters (truncated, cyclic, out of range, oversized) and
the manifest edits that gave 500s are rejected with a 409; the old model keeps serving, and
`/readyz` and `/metrics` say what happened. In process: whatever a root holds, the service
starts (from the rules, degraded and saying why); compiling happens off the request path,
bounded in time, while LightGBM predicts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from omegaconf import OmegaConf

from router_model.contract import EXAMPLE_TASK
from router_model.model.artifact import BOOSTER_FILE, LATEST_FILE, MANIFEST_FILE, save_artifact
from router_model.serve.core import RouterService
from tests.helpers import REPO, compose_config, metric_values, tmp_paths
from tests.router_model.model.test_artifact import _fit
from tests.router_model.model.test_artifact_hostile import (
    CRAFTED_BOOSTERS,
    _in_time,
    copy_version,
    forge,
)
from tests.router_model.serve.test_app import free_port

TOKEN = "reload-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
ROUTER_SERVE = Path(REPO) / ".venv" / "bin" / "router-serve"
BOOSTER_CASES = ["truncated in a tree", "a child pointing back up", "a loop below the root",
                 "a split feature out of range", "a leaf index out of range",
                 "too many leaves", "a NUL byte"]
MANIFEST_CASES = {  # the five edits that gave 500s (issue 29)
    "router_version missing": lambda m: m.pop("router_version"),
    "policy.lam a string": lambda m: m.update(policy={"lam": "abc"}),
    "policy.lam NaN": lambda m: m.update(policy={"lam": float("nan")}),
    "ladder_stats a string": lambda m: m.update(ladder_stats="fast"),
    "gate_errors.model without slope": lambda m: m["ladder_stats"]["gate_errors"].update(
        model={"intercept": {"gpt-oss-20b": -1.0}}),
}


@pytest.fixture(scope="module")
def good_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("reload-hostile") / "router"
    model, _ = _fit("lightgbm", "isotonic")
    save_artifact(model, root, data_hash="d" * 64, config={}, metrics={},
                  extra_manifest={"policy": {"lam": 0.05}})
    return root


@pytest.fixture(scope="module")
def live(good_root, tmp_path_factory):
    """A real `router-serve` process on the good root (reloads by the admin endpoint). The
    free port is free when picked, not when bound: a process that lost it to another test's
    server exits, and is started again on another port (an answer from that other server,
    with its own admin token, once made every test here fail)."""
    tmp = tmp_path_factory.mktemp("reload-hostile-serve")
    env = {**os.environ, "ROUTER_ADMIN_TOKEN": TOKEN, "HF_HUB_OFFLINE": "1"}
    for _ in range(3):
        port, out = free_port(), tmp / "serve.out"
        with out.open("wb") as fh:
            process = subprocess.Popen(
                [str(ROUTER_SERVE), f"serve.port={port}", f"router.artifact={good_root}",
                 "serve.reload_poll_s=0", "serve.replica=hostile", *tmp_paths(tmp)],
                cwd=tmp, env=env, stdout=fh, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        if _serving(url, process, out):
            break
    else:
        pytest.fail(out.read_text()[-3000:])
    try:
        yield url, process, good_root
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _serving(url: str, process: subprocess.Popen, out: Path) -> bool:
    """Whether `process` came up and is the one answering at `url` (its replica's metrics);
    False when it exited (its port was taken)."""
    deadline = time.monotonic() + 120
    while process.poll() is None:
        try:
            if 'replica="hostile"' in httpx.get(f"{url}/metrics", timeout=2).text:
                return process.poll() is None
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, out.read_text()[-3000:]
        time.sleep(0.1)
    return False


def _reload_rejected(url: str, process: subprocess.Popen, good: str) -> dict:
    """A reload that must be refused, leaving `good` serving and saying so everywhere."""
    r = httpx.post(f"{url}/admin/reload", headers=AUTH, timeout=60)
    assert process.poll() is None, "the server died"
    assert r.status_code == 409, r.text
    assert r.json()["router_version"] == good
    ready = httpx.get(f"{url}/readyz", timeout=10)
    assert ready.status_code == 200
    body = ready.json()
    assert (body["mode"], body["status"], body["router_version"]) == ("learned", "ok", good)
    assert body["last_reload"]["ok"] is False and body["last_reload"]["error"]
    text = httpx.get(f"{url}/metrics", timeout=10).text
    assert metric_values(text, "router_reload_rejected") == [1.0]
    assert metric_values(text, "router_degraded") == [0.0]  # the old model, not the rules
    assert metric_values(text, "router_model_info", router_version=good, mode="learned") \
        == [1.0]
    decision = httpx.post(f"{url}/v1/route", json=EXAMPLE_TASK, timeout=10).json()
    assert (decision["source"], decision["router_version"]) == ("learned", good)
    return r.json()


def _publish(root: Path, name: str, edit) -> None:
    """A copy of the served version under `name`, edited, then LATEST moved to it."""
    good = (root / LATEST_FILE).read_text()
    shutil.copytree(root / good, root / name)
    edit(root / name)
    (root / LATEST_FILE).write_text(name)


def _restore(url: str, root: Path, good: str) -> None:
    (root / LATEST_FILE).write_text(good)
    r = httpx.post(f"{url}/admin/reload", headers=AUTH, timeout=60)
    assert r.status_code == 200 and r.json()["router_version"] == good
    assert metric_values(httpx.get(f"{url}/metrics").text, "router_reload_rejected") == [0.0]


@pytest.mark.parametrize("case", BOOSTER_CASES)
def test_a_crafted_booster_leaves_the_old_model_serving(live, case):
    url, process, root = live
    good = (root / LATEST_FILE).read_text()

    def edit(folder: Path) -> None:
        forge(folder, BOOSTER_FILE, CRAFTED_BOOSTERS[case]((folder / BOOSTER_FILE).read_text()))

    _publish(root, f"bad-booster-{BOOSTER_CASES.index(case)}", edit)
    try:
        answer = _reload_rejected(url, process, good)
        assert "LightGBM model text is refused" in answer["error"]
    finally:
        _restore(url, root, good)


@pytest.mark.parametrize("case", list(MANIFEST_CASES))
def test_a_manifest_edit_is_a_409_never_a_500(live, case):
    url, process, root = live
    good = (root / LATEST_FILE).read_text()

    def edit(folder: Path) -> None:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        manifest.setdefault("ladder_stats", {}).setdefault("gate_errors", {})
        MANIFEST_CASES[case](manifest)
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest))

    _publish(root, f"bad-manifest-{list(MANIFEST_CASES).index(case)}", edit)
    try:
        answer = _reload_rejected(url, process, good)
        assert "manifest schema" in answer["error"]
    finally:
        _restore(url, root, good)


# ---- start-up: any root starts the service ----------------------------------------------------


def _service(tmp: Path, root: Path, **serve) -> RouterService:
    overrides = [f"serve.artifact={root}", f"serve.decision_log={tmp}/d/decisions.jsonl",
                 f"serve.compiled_cache={tmp}/cache", "serve.reload_poll_s=0",
                 *(f"serve.{k}={v}" for k, v in serve.items())]
    cfg = compose_config("router_serve", overrides)
    OmegaConf.resolve(cfg)
    return RouterService.from_config(OmegaConf.to_container(cfg), seed=0)


def _fifo(path: Path) -> None:
    path.unlink() if path.exists() or path.is_symlink() else None
    os.mkfifo(path)


CRAFTED_ROOTS = {
    "LATEST is a FIFO": lambda root, v: _fifo(root / LATEST_FILE),
    "LATEST is a folder": lambda root, v: ((root / LATEST_FILE).unlink(),
                                           (root / LATEST_FILE).mkdir()),
    "LATEST is binary": lambda root, v: (root / LATEST_FILE).write_bytes(b"\xff\xfe\x00\x01"),
    "the manifest is a FIFO": lambda root, v: _fifo(v / MANIFEST_FILE),
    "the manifest is a list": lambda root, v: (v / MANIFEST_FILE).write_text("[]"),
    "the manifest nests deeply": lambda root, v: (v / MANIFEST_FILE).write_text(
        "[" * 200_000 + "]" * 200_000),
    "the version is a file": lambda root, v: (shutil.rmtree(v), v.write_text("x")),
    "the booster is truncated": lambda root, v: forge(
        v, BOOSTER_FILE, (v / BOOSTER_FILE).read_text()[:5000]),
    "the booster loops": lambda root, v: forge(
        v, BOOSTER_FILE, CRAFTED_BOOSTERS["a loop below the root"](
            (v / BOOSTER_FILE).read_text())),
    "the dial is NaN": lambda root, v: (v / MANIFEST_FILE).write_text(
        (v / MANIFEST_FILE).read_text().replace('"lam": 0.05', '"lam": NaN')),
}


@pytest.mark.parametrize("case", list(CRAFTED_ROOTS))
def test_a_crafted_root_starts_the_service_on_the_rules_saying_why(good_root, tmp_path, case):
    version = copy_version(good_root, tmp_path / "root")
    CRAFTED_ROOTS[case](tmp_path / "root", version)
    service = _in_time(lambda: _service(tmp_path, tmp_path / "root"))
    try:
        ready = service.readiness()
        assert (ready["status"], ready["mode"], ready["ready"]) == ("degraded", "rules", True)
        assert ready["fallback_reason"].startswith("artifact_error")
        assert service.degraded()
        json.dumps(ready, allow_nan=False)  # /readyz can always answer
        decision = service.route(EXAMPLE_TASK)
        assert decision["source"] == "rules" and decision["fallback_reason"]
    finally:
        service.close()


def test_a_router_the_artifact_cannot_serve_starts_on_the_rules(good_root, tmp_path):
    """serve.router=lookup on an artifact without a lookup table stopped the start-up."""
    service = _in_time(lambda: _service(tmp_path, good_root, router="lookup"))
    try:
        assert service.readiness()["mode"] == "rules" and service.degraded()
    finally:
        service.close()


# ---- compiling: off the request path, cached, bounded -------------------------------------------


def test_a_compile_past_its_time_is_killed_and_lightgbm_serves(good_root, tmp_path):
    service = _service(tmp_path, good_root, compile_timeout_s=0.01, compile_wait_s=20)
    try:
        assert service.trees == "lightgbm"  # the compile was killed, the wait ended
        assert service.policy.artifact.model.compiled is None
        assert service.route(EXAMPLE_TASK)["source"] == "learned"
        assert not list((tmp_path / "cache" / "compiled").glob("*.o"))
    finally:
        service.close()


def test_a_reload_serves_at_once_and_the_compiled_trees_follow(good_root, tmp_path):
    root = tmp_path / "root"
    copy_version(good_root, root)
    service = _service(tmp_path, root, compile_wait_s=60)
    try:
        assert service.trees == "compiled"
        model, _ = _fit("lightgbm", "sigmoid")  # another model: not in the compile cache
        new = save_artifact(model, root, data_hash="e" * 64, config={}, metrics={})
        result = service.reload()
        assert result["reloaded"] and result["router_version"] == new.router_version
        assert service.policy.router_version == new.router_version
        assert service.route(EXAMPLE_TASK)["source"] == "learned"  # LightGBM, meanwhile
        deadline = time.monotonic() + 120
        while service.trees != "compiled" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert service.trees == "compiled"
        assert service.policy.artifact.model.compiled is not None
        assert service.readiness()["last_reload"]["ok"] is True
        # A second service on the same cache loads the compiled object at once.
        again = _service(tmp_path / "again", root, compiled_cache=tmp_path / "cache",
                         compile_wait_s=60)
        try:
            assert again.trees == "compiled"
        finally:
            again.close()
    finally:
        service.close()
