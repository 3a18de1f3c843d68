"""A client that survives the router: timeouts, retries, and the local rules fallback."""

from __future__ import annotations

import httpx
import pytest

from router_model.contract import EXAMPLE_TASK
from router_model.serve.client import (
    HttpRouterClient,
    LocalRouterClient,
    RouterClientSettings,
    RouterUnavailable,
)
from router_model.serve.core import RouterService
from tests.helpers import compose_config, tmp_paths

SETTINGS = RouterClientSettings(timeout_s=1.0, connect_timeout_s=0.5, retries=1,
                                backoff_s=0.0, down_s=30.0, fallback=True)


@pytest.fixture
def rules(tmp_path):
    cfg = compose_config("router_serve", [*tmp_paths(tmp_path), "serve.artifact=null",
                                          f"serve.decision_log={tmp_path}/local.jsonl"])
    service = RouterService.from_config(cfg)
    yield LocalRouterClient(service)
    service.close()


def test_an_unreachable_service_is_answered_by_the_local_rules(rules, tmp_path):
    client = HttpRouterClient("http://127.0.0.1:9", SETTINGS, fallback=rules)
    decision = client.route(EXAMPLE_TASK)
    assert decision["source"] == "rules_fallback" and decision["start_tier"]
    step = client.escalate(decision_id=decision["decision_id"], tier=decision["start_tier"],
                           similarity=0.5, schema_valid=True, retry_count=0)
    assert step["action"] == "jump_to_premium"
    assert client.fallbacks == 2
    client.close()
    rules.service.close()
    assert decision["decision_id"] in (tmp_path / "local.jsonl").read_text()


def test_without_a_fallback_an_unreachable_service_says_where_and_how_often(rules):
    settings = RouterClientSettings(1.0, 0.5, 2, 0.0, 30.0, False)
    client = HttpRouterClient("http://127.0.0.1:9", settings, fallback=rules)
    with pytest.raises(RouterUnavailable, match=r"127.0.0.1:9 is unreachable after 3 tries"):
        client.route(EXAMPLE_TASK)


def test_a_bad_request_is_raised_not_hidden_by_the_fallback(rules, tmp_path):
    import threading
    import time

    import uvicorn

    from pipeline.provider_sim.cli import free_port
    from router_model.serve.app import create_app

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(rules.service), host="127.0.0.1",
                                           port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    try:
        client = HttpRouterClient(f"http://127.0.0.1:{port}", SETTINGS, fallback=rules)
        assert client.route(EXAMPLE_TASK)["source"] == "rules"
        with pytest.raises(httpx.HTTPStatusError):
            client.route({"field": "lesson_content", "prompt_tokens": -1})
        assert client.fallbacks == 0
    finally:
        server.should_exit = True
