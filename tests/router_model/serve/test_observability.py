"""Traces with OpenTelemetry's GenAI names (in-memory exporter), request counts by handler
and status on /metrics (413/422 included), and JSON logs."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time

import httpx
import pytest

from router_model.contract import EXAMPLE_TASK
from router_model.serve.app import create_app
from router_model.serve.core import RouterService
from router_model.serve.json_logs import JsonFormatter, LogSettings, uvicorn_log_config
from tests.helpers import compose_config, metric_values, tmp_paths

sdk = pytest.importorskip("opentelemetry.sdk.trace")


@pytest.fixture(scope="module")
def spans():
    from opentelemetry import trace
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = sdk.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return exporter


@pytest.fixture
def service(tmp_path):
    cfg = compose_config("router_serve", [*tmp_paths(tmp_path), "serve.artifact=null",
                                          "serve.reload_poll_s=0"])
    s = RouterService.from_config(cfg)
    yield s
    s.close()


def test_route_attempt_and_gate_spans_carry_genai_attributes(spans, service, catalog,
                                                            monkeypatch):
    from pipeline.generator.llm_client import LLMClient
    from router_model.serve.openai_route import decide
    from router_model.tracing import gate_span, judged
    from tests.pipeline.generator.stub_provider import completion, stub_provider
    from tests.pipeline.generator.test_providers import call, settings

    spans.clear()
    decision = decide(service, EXAMPLE_TASK, lam=0.5)
    monkeypatch.setenv("STUB_KEY", "k")
    with stub_provider([("ok", completion())]) as (url, _):
        call(LLMClient(catalog, settings(url)))
    with gate_span("gpt-oss-20b") as s:
        judged(s, 0.81, True, "none")
    by_name = {s.name: s for s in spans.get_finished_spans()}
    route = by_name["stage5.route"].attributes
    assert route["stage5.decision_id"] == decision["decision_id"] and route["stage5.lam"] == 0.5
    chat = by_name["chat openai/gpt-oss-20b"].attributes
    assert chat["gen_ai.operation.name"] == "chat" and chat["gen_ai.request.model"] \
        == "openai/gpt-oss-20b"
    assert chat["gen_ai.usage.input_tokens"] == 100 and chat["gen_ai.usage.output_tokens"] == 20
    assert chat["gen_ai.response.model"] == "stub-model-2025"
    assert tuple(chat["gen_ai.response.finish_reasons"]) == ("stop",)
    gate = by_name["stage5.gate"].attributes
    assert gate["gen_ai.evaluation.score.value"] == 0.81
    assert gate["gen_ai.evaluation.score.label"] == "pass"


def test_metrics_count_requests_by_handler_and_status(service):
    import uvicorn

    from pipeline.provider_sim.cli import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    base = f"http://127.0.0.1:{port}"
    try:
        assert httpx.post(f"{base}/v1/route", json=EXAMPLE_TASK).status_code == 200
        assert httpx.post(f"{base}/v1/route", json={"field": "x"}).status_code == 422
        big = b'{"field": "' + b"x" * (service.settings.max_body_bytes + 1) + b'"}'
        assert httpx.post(f"{base}/v1/route", content=big, headers={
            "content-type": "application/json"}).status_code == 413
        assert httpx.get(f"{base}/nowhere").status_code == 404
        text = httpx.get(f"{base}/metrics").text
    finally:
        server.should_exit = True
    for status in ("200", "422", "413"):
        assert metric_values(text, "router_http_requests_total", handler="/v1/route",
                             status=status) == [1.0], status
    assert metric_values(text, "router_http_requests_total", handler="other",
                         status="404") == [1.0]


def test_json_logs_are_one_object_a_line():
    record = logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1,
                               '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:5", "POST", "/v1/route", "1.1", 200), None)
    line = json.loads(JsonFormatter().format(record))
    assert line["path"] == "/v1/route" and line["status"] == 200 and line["level"] == "info"
    assert uvicorn_log_config(LogSettings("text")) is None
    assert uvicorn_log_config(LogSettings("json"))["formatters"]["json"]
    asyncio.run(asyncio.sleep(0))
