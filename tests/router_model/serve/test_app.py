"""The routing service over real HTTP on 127.0.0.1: every endpoint, reloads, fallbacks,
malformed input (including a hypothesis fuzz), auth and the decision log."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from router_model.contract import EXAMPLE_TASK, Decision, DecisionLogRecord
from router_model.model.artifact import LATEST_FILE
from router_model.serve.app import create_app, server_options
from router_model.serve.client import HttpRouterClient, LocalRouterClient
from router_model.serve.core import RouterService
from tests.helpers import REPO, compose_config, metric_values

TASK = EXAMPLE_TASK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(tmp: Path, artifact: str | None, **serve: object):
    """Start the real app under uvicorn on a free loopback port; yield (base_url, service)."""
    overrides = [f"serve.artifact={artifact if artifact else 'null'}",
                 f"serve.decision_log={tmp}/decisions/decisions.jsonl",
                 *(f"serve.{k}={'null' if v is None else v}" for k, v in serve.items())]
    cfg = compose_config("router_serve", overrides)
    OmegaConf.resolve(cfg)
    service = RouterService.from_config(cfg, seed=0)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port,
                                           log_level="warning",
                                           **server_options(service.settings)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", service
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def artifact_root(trained_router, tmp_path_factory) -> Path:
    """A private copy of the trained artifact root (tests below swap versions in it)."""
    _, result = trained_router
    root = tmp_path_factory.mktemp("artifacts") / "router"
    root.mkdir()
    shutil.copytree(result.artifact.path, root / result.artifact.path.name)
    shutil.copytree(result.artifact.path, root / "second-version")
    (root / LATEST_FILE).write_text(result.artifact.path.name)
    return root


@pytest.fixture(scope="module")
def server(artifact_root, tmp_path_factory, monkeypatch_module):
    monkeypatch_module.setenv("ROUTER_ADMIN_TOKEN", "s3cret")
    tmp = tmp_path_factory.mktemp("serve")
    with running(tmp, str(artifact_root), reload_poll_s=0) as (url, service):
        yield url, service, tmp


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_route_returns_a_full_decision_record(server):
    url, service, _ = server
    r = httpx.post(f"{url}/v1/route", json=TASK)
    assert r.status_code == 200
    d = r.json()
    assert d["source"] == "learned" and d["start_tier"] in d["pass_probabilities"]
    assert d["router_version"] == service.policy.router_version
    for key in ("decision_id", "model", "provider", "expected_costs", "ladder", "propensity"):
        assert key in d
    assert d["model"] == {"gpt-oss-20b": "openai/gpt-oss-20b", "gpt-oss-120b":
                          "openai/gpt-oss-120b", "qwen3-max": "qwen/qwen3-max"}[d["start_tier"]]


def test_explain_gives_top_feature_contributions(server):
    url, _, _ = server
    d = httpx.post(f"{url}/v1/route", params={"explain": "true"}, json=TASK).json()
    contributions = d["explanation"]
    assert 1 <= len(contributions) <= 5
    assert {"feature", "value", "contribution"} <= set(contributions[0])
    sizes = [abs(c["contribution"]) for c in contributions]
    assert sizes == sorted(sizes, reverse=True)


def test_batch_routes_every_task(server):
    url, _, _ = server
    tasks = [TASK, {**TASK, "field": "course_title"}, {**TASK, "context_tokens": 200_000}]
    decisions = httpx.post(f"{url}/v1/route/batch", json={"tasks": tasks}).json()["decisions"]
    assert len(decisions) == 3 and decisions[2]["start_tier"] == "gemini-2.5-flash"
    assert len({d["decision_id"] for d in decisions}) == 3


@pytest.mark.parametrize(("body", "action", "next_tier", "retry"), [
    ({"tier": "gpt-oss-20b", "similarity": 0.8, "schema_valid": True}, "accept",
     "gpt-oss-20b", 0),
    ({"tier": "gpt-oss-20b", "similarity": 0.7, "schema_valid": True}, "retry",
     "gpt-oss-20b", 1),
    ({"tier": "gpt-oss-20b", "similarity": 0.7, "schema_valid": True, "retry_count": 2},
     "escalate", "gpt-oss-120b", 0),
    ({"tier": "gpt-oss-120b", "similarity": 0.9, "schema_valid": False}, "escalate",
     "qwen3-max", 0),
    ({"tier": "gpt-oss-20b", "similarity": 0.9, "schema_valid": True, "error_kind": "schema"},
     "escalate", "gpt-oss-120b", 0),
    ({"tier": "gpt-oss-20b", "similarity": 0.3, "schema_valid": True}, "jump_to_premium",
     "qwen3-max", 0),
    ({"tier": "qwen3-max", "similarity": 0.7, "schema_valid": True, "retry_count": 2},
     "flag_for_review", "qwen3-max", 2),
    ({"tier": "gpt-oss-20b", "schema_valid": True, "error_kind": "rate_limit"}, "retry",
     "gpt-oss-20b", 1),
    ({"tier": "gpt-oss-120b", "schema_valid": True, "error_kind": "context_overflow"},
     "escalate", "gemini-2.5-flash", 0),
])
def test_escalate_follows_every_ladder_branch(server, body, action, next_tier, retry):
    url, _, _ = server
    r = httpx.post(f"{url}/v1/escalate", json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["action"], out["next_tier"], out["retry_count"]) == (action, next_tier, retry)


def test_escalate_by_decision_id_remembers_the_tier(server):
    url, _, _ = server
    d = httpx.post(f"{url}/v1/route", json=TASK).json()
    step = httpx.post(f"{url}/v1/escalate", json={"decision_id": d["decision_id"],
                                                  "similarity": 0.9, "schema_valid": False})
    nxt = step.json()["next_tier"]
    assert step.status_code == 200 and nxt != d["start_tier"]
    again = httpx.post(f"{url}/v1/escalate", json={"decision_id": d["decision_id"],
                                                   "similarity": 0.9, "schema_valid": True})
    assert again.json()["next_tier"] == nxt and again.json()["action"] == "accept"


def test_readiness_and_metrics(server):
    url, service, _ = server
    ready = httpx.get(f"{url}/readyz").json()
    assert ready["mode"] == "learned" and ready["router_version"] == service.policy.router_version
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    httpx.post(f"{url}/v1/route", json=TASK)
    text = httpx.get(f"{url}/metrics").text
    assert metric_values(text, "router_decisions_total", source="learned",
                         replica=ready["replica"])
    assert "router_decision_latency_seconds_bucket" in text
    assert metric_values(text, "router_model_info", mode="learned", replica=ready["replica"],
                         router_version=ready["router_version"]) == [1.0]
    assert httpx.get(f"{url}/openapi.json").json()["paths"]["/v1/route"]


@pytest.mark.parametrize(("body", "field"), [
    ({"prompt_tokens": 10}, "field"),
    ({"field": "exercise"}, "prompt_tokens"),
    ({"field": "exercise", "prompt_tokens": -3}, "prompt_tokens"),
    ({"field": "exercise", "prompt_tokens": "many"}, "prompt_tokens"),
    ({"field": "exercise", "prompt_tokens": 1, "analysis": {"complexity": 7}}, "complexity"),
    ({"field": "exercise", "prompt_tokens": 1, "surprise": True}, "surprise"),
])
def test_malformed_route_bodies_get_a_422_naming_the_field(server, body, field):
    url, _, _ = server
    r = httpx.post(f"{url}/v1/route", json=body)
    assert r.status_code == 422
    assert any(field in map(str, err["loc"]) for err in r.json()["detail"]), r.text


@pytest.mark.parametrize(("body", "field"), [
    ({"similarity": 0.5, "schema_valid": True}, "tier"),
    ({"tier": "gpt-9", "similarity": 0.5, "schema_valid": True}, "tier"),
    ({"tier": "gpt-oss-20b", "similarity": 1.5, "schema_valid": True}, "similarity"),
    ({"tier": "gpt-oss-20b", "schema_valid": True, "error_kind": "boom"}, "error_kind"),
])
def test_malformed_escalate_bodies_get_a_422_naming_the_field(server, body, field):
    url, _, _ = server
    r = httpx.post(f"{url}/v1/escalate", json=body)
    assert r.status_code == 422
    assert any(field in map(str, err["loc"]) for err in r.json()["detail"]), r.text


def test_unknown_categories_are_accepted_and_marked(server):
    url, _, _ = server
    d = httpx.post(f"{url}/v1/route", json={**TASK, "field": "course_tagline", "analysis": {
        "domain": "astrology"}}).json()
    assert d["unknown_categories"] == {"field": "course_tagline", "analysis.domain": "astrology"}


SCALARS = (st.none() | st.booleans() | st.integers(-10**12, 10**12)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
JSON_VALUES = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3)
    | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
ROUTE_KEYS = st.sampled_from(["field", "prompt_tokens", "context_tokens",
                              "expected_output_tokens", "analysis", "course_id", "task_id"])
ANALYSIS = st.dictionaries(st.sampled_from(["domain", "language", "complexity", "section_count",
                                            "lesson_count", "extra"]), JSON_VALUES, max_size=4)


@settings(max_examples=120, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.dictionaries(ROUTE_KEYS, JSON_VALUES | ANALYSIS, max_size=7) | JSON_VALUES,
       escalate=st.dictionaries(st.sampled_from(["tier", "decision_id", "similarity",
                                                 "schema_valid", "error_kind", "retry_count"]),
                                JSON_VALUES, max_size=6))
def test_fuzzed_bodies_never_get_a_500(server, body, escalate):
    url, _, _ = server
    for path, payload in (("/v1/route", body), ("/v1/escalate", escalate),
                          ("/v1/route/batch", {"tasks": [body]})):
        r = httpx.post(f"{url}{path}", json=payload)
        assert r.status_code in (200, 422), (path, payload, r.status_code, r.text)


def test_admin_reload_needs_the_token(server):
    url, _, _ = server
    assert httpx.post(f"{url}/admin/reload").status_code == 401
    wrong = {"Authorization": "Bearer nope"}
    assert httpx.post(f"{url}/admin/reload", headers=wrong).status_code == 401
    ok = httpx.post(f"{url}/admin/reload", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.json()["reloaded"]


def test_admin_is_disabled_without_a_configured_token(artifact_root, tmp_path, monkeypatch):
    monkeypatch.delenv("ROUTER_ADMIN_TOKEN", raising=False)
    with running(tmp_path, str(artifact_root), reload_poll_s=0) as (url, _):
        r = httpx.post(f"{url}/admin/reload", headers={"Authorization": "Bearer x"})
        assert r.status_code == 503 and "ROUTER_ADMIN_TOKEN" in r.json()["detail"]


def test_reload_under_concurrent_requests_drops_nothing(server, artifact_root):
    url, _, _ = server
    failures, done = [], threading.Event()
    counts = [0]

    def hammer() -> None:
        with httpx.Client() as client:
            while not done.is_set():
                r = client.post(f"{url}/v1/route", json=TASK)
                counts[0] += 1
                if r.status_code != 200 or r.json()["source"] != "learned":
                    failures.append(r.text)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    first = (artifact_root / LATEST_FILE).read_text()
    versions = []
    for target in ["second-version", first] * 3:
        (artifact_root / LATEST_FILE).write_text(target)
        r = httpx.post(f"{url}/admin/reload", headers={"Authorization": "Bearer s3cret"})
        versions.append(r.json()["reloaded"])
        time.sleep(0.1)
    done.set()
    for t in threads:
        t.join()
    assert all(versions) and not failures and counts[0] > 20


def test_a_corrupt_artifact_is_rejected_and_the_old_model_keeps_serving(server, artifact_root):
    url, _, _ = server
    before = httpx.get(f"{url}/readyz").json()["router_version"]
    bad = artifact_root / "corrupt-version"
    shutil.copytree(artifact_root / "second-version", bad)
    (bad / "model.json").write_bytes(b"not a model")
    latest = (artifact_root / LATEST_FILE).read_text()
    (artifact_root / LATEST_FILE).write_text("corrupt-version")
    try:
        r = httpx.post(f"{url}/admin/reload", headers={"Authorization": "Bearer s3cret"})
        assert r.status_code == 409 and "sha256" in r.json()["error"]
        assert httpx.get(f"{url}/readyz").json()["router_version"] == before
        assert httpx.post(f"{url}/v1/route", json=TASK).json()["source"] == "learned"
    finally:
        (artifact_root / LATEST_FILE).write_text(latest)


def test_the_artifact_folder_is_watched(artifact_root, tmp_path):
    with running(tmp_path, str(artifact_root), reload_poll_s=0.1) as (url, service):
        before = service.reloads["ok"]
        latest = (artifact_root / LATEST_FILE).read_text()
        (artifact_root / LATEST_FILE).write_text("second-version")
        try:
            deadline = time.monotonic() + 10
            while service.reloads["ok"] == before and time.monotonic() < deadline:
                time.sleep(0.05)
            assert service.reloads["ok"] == before + 1
            assert metric_values(httpx.get(f"{url}/metrics").text, "router_reloads_total",
                                 result="ok", replica=service.settings.replica) == [1.0]
        finally:
            (artifact_root / LATEST_FILE).write_text(latest)


def test_without_an_artifact_the_rules_answer(tmp_path):
    with running(tmp_path, str(tmp_path / "missing"), reload_poll_s=0) as (url, service):
        ready = httpx.get(f"{url}/readyz").json()
        assert ready["mode"] == "rules" and ready["fallback_reason"].startswith("artifact_error")
        d = httpx.post(f"{url}/v1/route", json={**TASK, "field": "course_title"}).json()
        assert (d["source"], d["start_tier"]) == ("rules", "qwen3-max")
        assert metric_values(httpx.get(f"{url}/metrics").text, "router_fallbacks_total",
                             reason="artifact_error", replica=service.settings.replica) == [1.0]


def test_decision_log_lines_parse_and_shadow_decisions_are_logged(artifact_root, tmp_path):
    with running(tmp_path, str(artifact_root), reload_poll_s=0,
                 shadow_artifact=str(artifact_root / "second-version")) as (url, _):
        served = httpx.post(f"{url}/v1/route", json=TASK).json()
        httpx.post(f"{url}/v1/route/batch", json={"tasks": [TASK, TASK]})
    lines = (tmp_path / "decisions" / "decisions.jsonl").read_text().splitlines()
    records = [DecisionLogRecord.model_validate_json(line) for line in lines]
    assert len(records) == 3
    assert records[0].decision.decision_id == served["decision_id"]
    assert records[0].shadow is not None and records[0].shadow.source == "learned"
    assert records[0].task["field"] == "lesson_content"


def test_local_and_http_clients_answer_alike(server):
    url, service, _ = server
    local, remote = LocalRouterClient(service), HttpRouterClient(url)
    try:
        a, b = local.route(TASK), remote.route(TASK)
        assert a["start_tier"] == b["start_tier"]
        assert a["pass_probabilities"] == pytest.approx(b["pass_probabilities"])
        gate = {"tier": "gpt-oss-20b", "similarity": 0.7, "schema_valid": True}
        assert local.escalate(**gate)["action"] == remote.escalate(**gate)["action"] == "retry"
        assert len(remote.route_batch([TASK] * 5)) == len(local.route_batch([TASK] * 5)) == 5
        with pytest.raises(httpx.HTTPStatusError):
            remote.route({"field": "x"})
    finally:
        remote.close()


def test_serving_imports_neither_torch_nor_sentence_transformers(artifact_root, tmp_path):
    log = tmp_path / "decisions.jsonl"
    code = (
        "import sys\n"
        "from router_model.serve.app import create_app\n"
        "from router_model.serve.core import RouterService\n"
        "from tests.helpers import compose_config\n"
        f"cfg = compose_config('router_serve', ['serve.artifact={artifact_root}', "
        f"'serve.decision_log={log}'])\n"
        "service = RouterService.from_config(cfg)\n"
        "create_app(service)\n"
        "assert service.policy.learned\n"
        "service.route({'field': 'exercise', 'prompt_tokens': 10})\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'datasets') if m in sys.modules]\n"
        "print(heavy)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=REPO, check=True)
    assert json.loads(out.stdout.strip().replace("'", '"')) == []
    assert len(log.read_text().splitlines()) == 1  # the decision went to the tmp log only


def test_the_decision_log_rotates_by_size(tmp_path):
    from router_model.logs.decisions import DecisionLog

    log = DecisionLog(tmp_path / "d.jsonl", max_bytes=2000, backups=2)
    decision = Decision(decision_id="x" * 32, router_version="v", start_tier="gpt-oss-20b",
                        model="openai/gpt-oss-20b", provider="openrouter", base_url="-",
                        source="rules", propensity=1.0, ladder=["gpt-oss-20b"]).to_dict()
    for _ in range(40):
        log.write("route", {"field": "exercise"}, decision)
    log.close()
    files = sorted((p.name for p in tmp_path.iterdir()), key=lambda n: (len(n), n))
    assert len(files) == 3 and files[0] == "d.jsonl"  # the live file and 2 numbered backups
    numbers = [int(name.rsplit(".", 1)[1]) for name in files[1:]]
    assert numbers[1] == numbers[0] + 1 and numbers[0] > 1  # older ones were dropped
    assert log.dropped["lines"] > 0 and log.dropped["bytes"] > 0
    for name in files:
        lines = (tmp_path / name).read_text().splitlines()
        assert lines and (tmp_path / name).stat().st_size <= 2000
        for line in lines:
            DecisionLogRecord.model_validate_json(line)
