"""router-gateway against the official openai client (sync, async, streaming) and the
provider simulator: routing, the gate, escalation, the OpenAI answer, and the logs."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from router_model.logs.attempts import read_attempts
from tests.pipeline.gateway_helpers import KEY, example_tasks, gateway, routing
from tests.pipeline.generator.helpers import simulator


@pytest.fixture(scope="module")
def served(tmp_path_factory, embedder):
    import os

    os.environ["GW_PROVIDER_KEY"] = KEY
    tmp = tmp_path_factory.mktemp("gateway")
    with simulator(embedder) as (url, sim), gateway(tmp, url, embedder) as (gw_url, gw):
        yield gw_url, gw, sim, tmp


def test_the_official_client_gets_a_gated_answer_with_the_routing_block(served, catalog):
    url, gw, _, tmp = served
    task = example_tasks(catalog)["course_title"]
    client = openai.OpenAI(base_url=url, api_key="anything")
    raw = client.chat.completions.with_raw_response.create(
        model="stage5-router", messages=task.messages(list(task.items)),
        response_format={"type": "json_schema", "json_schema": {
            "name": "course_title", "schema": task.spec.json_schema()}},
        extra_body={"stage5": routing(task, course_id="c1", task_id="t1")})
    answer = raw.parse()
    s5 = answer.model_extra["stage5"]
    assert answer.model == s5["tiers"][-1] and answer.model in catalog.tiers
    assert json.loads(answer.choices[0].message.content)
    assert raw.headers["x-stage5-decision-id"] == s5["decision_id"]
    assert raw.headers["x-stage5-tiers"] == ",".join(s5["tiers"])
    assert float(raw.headers["x-stage5-cost-usd"]) == pytest.approx(s5["cost_usd"])
    assert s5["routed_from"] == "metadata" and s5["gated"] and s5["similarity"] is not None
    assert answer.usage.total_tokens > 0
    logs = read_attempts(gw.attempts.path).frame
    mine = logs[logs["decision_id"] == s5["decision_id"]]
    assert len(mine) == s5["attempts"] and set(mine["course_id"]) == {"c1"}
    assert list(mine["tier"]) == s5["tiers"]
    gw.service.decision_log.flush()
    decisions = "".join(p.read_text() for p in tmp.rglob("decisions*.jsonl"))
    assert s5["decision_id"] in decisions


def test_async_and_streaming_clients(served, catalog):
    url, *_ = served
    task = example_tasks(catalog)["section_title"]
    fmt = {"type": "json_schema", "json_schema": {"name": task.field,
                                                  "schema": task.spec.json_schema()}}

    async def go() -> tuple[str, str]:
        client = openai.AsyncOpenAI(base_url=url, api_key="anything")
        whole = await client.chat.completions.create(
            model="stage5-router:0.05", messages=task.messages(list(task.items)),
            response_format=fmt, extra_body={"stage5": routing(task)})
        stream = await client.chat.completions.create(
            model="stage5-router", messages=task.messages(list(task.items)), stream=True,
            response_format=fmt, stream_options={"include_usage": True},
            extra_body={"stage5": routing(task)})
        parts, usage = [], None
        async for chunk in stream:
            usage = chunk.usage or usage
            parts += [c.delta.content for c in chunk.choices if c.delta.content]
        await client.close()
        assert usage is not None and usage.total_tokens > 0
        return whole.choices[0].message.content, "".join(parts)

    whole, streamed = asyncio.run(go())
    assert json.loads(whole) and json.loads(streamed)


def test_metadata_as_openai_strings_and_messages_alone(served, catalog):
    url, *_ = served
    task = example_tasks(catalog)["course_title"]
    client = openai.OpenAI(base_url=url, api_key="anything")
    meta = {"stage5_field": task.field, "stage5_analysis": json.dumps(task.analysis)}
    answer = client.chat.completions.create(model="stage5-router", metadata=meta,
                                            messages=task.messages(list(task.items)))
    assert answer.model_extra["stage5"]["routed_from"] == "metadata"
    bare = client.chat.completions.create(model="stage5-router",
                                          messages=task.messages(list(task.items)))
    s5 = bare.model_extra["stage5"]
    assert s5["routed_from"] == "messages" and not s5["gated"] and s5["attempts"] == 1


@pytest.mark.parametrize("extra, param", [
    ({"stage5": {"field": "course_title", "analysis": {"complexity": 7}}},
     "stage5.analysis.complexity"),
    ({"metadata": {"stage5_analysis": "{not json"}}, "metadata.stage5_analysis"),
    ({"stage5": {"colour": "red"}}, "stage5.colour"),
    ({"stage5": {"lam": -1}}, "stage5.lam"),
    # found by the hostile probe: each was a 500, the last two after a paid provider call
    ({"metadata": {"stage5_analysis": "[" * 5000 + "]" * 5000}}, "metadata.stage5_analysis"),
    ({"metadata": {"stage5_analysis": '{"x": 1' + "0" * 5000 + "}"}},
     "metadata.stage5_analysis"),
    ({"stage5": {"reference": {"a": 1}}}, "stage5.reference"),
    ({"stream": True, "stream_options": "yes"}, "stream_options")])
def test_bad_metadata_is_a_400_naming_the_field(served, extra, param):
    url, *_ = served
    body = {"model": "stage5-router", "messages": [{"role": "user", "content": "hi"}], **extra}
    r = httpx.post(f"{url}/chat/completions", json=body)
    assert r.status_code == 400 and r.json()["error"]["param"] == param
    assert param in r.json()["error"]["message"]


def test_an_empty_body_is_a_400_not_a_500(served):
    url, *_ = served
    r = httpx.post(f"{url}/chat/completions", content=b"",
                   headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["param"] == "body"


def test_an_unknown_model_is_404_and_models_lists_the_router(served):
    url, *_ = served
    client = openai.OpenAI(base_url=url, api_key="anything")
    assert [m.id for m in client.models.list()] == ["stage5-router"]
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user",
                                                                  "content": "hi"}])


def test_an_oversize_body_is_a_413(served):
    url, gw, *_ = served
    size = gw.service.settings.max_body_bytes + 10
    body = json.dumps({"model": "stage5-router", "messages": [
        {"role": "user", "content": "x" * size}]})
    r = httpx.post(f"{url}/chat/completions", content=body,
                   headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_route_takes_an_openai_request_and_a_per_request_lam(served, catalog):
    url, *_ = served
    task = example_tasks(catalog)["lesson_content"]
    body = {"model": "stage5-router:1000", "messages": task.messages(list(task.items)),
            "stage5": routing(task)}
    r = httpx.post(url.removesuffix("/v1") + "/v1/route", json=body)
    assert r.status_code == 200, r.text
    decision = r.json()
    assert decision["routed_from"] == "metadata" and decision["lam"] == 1000.0
    plain = httpx.post(url.removesuffix("/v1") + "/v1/route?lam=0.01",
                       json={"field": "lesson_content", "prompt_tokens": 4000})
    assert plain.status_code == 200 and plain.json()["lam"] == 0.01
    bad = httpx.post(url.removesuffix("/v1") + "/v1/route",
                     json={"field": "lesson_content", "prompt_tokens": -4})
    assert bad.status_code == 422 and "prompt_tokens" in bad.text
