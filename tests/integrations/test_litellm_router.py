"""The LiteLLM plugin against the real litellm package and the provider simulator, and
litellm against router-gateway."""

from __future__ import annotations

import asyncio
import json
import os

import pytest

litellm = pytest.importorskip("litellm")

from integrations.litellm_router import Stage5RoutingStrategy, ladder_completion  # noqa: E402
from router_model.serve.client import LocalRouterClient  # noqa: E402
from router_model.serve.core import RouterService  # noqa: E402
from tests.helpers import compose_config, tmp_paths  # noqa: E402
from tests.pipeline.gateway_helpers import KEY, example_tasks, gateway, routing  # noqa: E402
from tests.pipeline.generator.helpers import simulator  # noqa: E402


@pytest.fixture(scope="module")
def sim(embedder):
    with simulator(embedder) as (url, s):
        yield url, s


def model_list(catalog, url):
    return [{"model_name": "stage5",
             "litellm_params": {"model": f"openai/{catalog.tiers[t].model_id}",
                                "api_base": url, "api_key": KEY},
             "model_info": {"id": t}} for t in catalog.ladder]


@pytest.fixture
def rules(tmp_path):
    cfg = compose_config("router_serve", [*tmp_paths(tmp_path), "serve.artifact=null"])
    service = RouterService.from_config(cfg)
    yield LocalRouterClient(service)
    service.close()


def run_ladder(catalog, url, rules, gate):
    router = litellm.Router(model_list=model_list(catalog, url), num_retries=0)
    strategy = Stage5RoutingStrategy(router, rules)
    router.set_custom_routing_strategy(strategy)
    task = example_tasks(catalog)["lesson_content"]
    fmt = {"type": "json_schema", "json_schema": {"name": task.field,
                                                  "schema": task.spec.json_schema()}}
    return asyncio.run(ladder_completion(
        router, strategy, task.messages(list(task.items)),
        {"field": task.field, "analysis": task.analysis}, gate, response_format=fmt))


def test_a_litellm_router_with_three_tiers_routes_through_the_plugin(sim, catalog, rules):
    url, s = sim
    before = s.stats["completions"]
    response, tiers = run_ladder(catalog, url, rules, lambda text: (0.9, True))
    start = rules.service.route({"field": "lesson_content", "prompt_tokens": 10})["start_tier"]
    assert tiers == [start] and json.loads(response.choices[0].message.content)
    assert s.stats["completions"] == before + 1
    assert response.model.endswith(catalog.tiers[start].model_id)


def test_escalation_still_works_through_litellm(sim, catalog, rules):
    url, _ = sim
    scores = iter([0.4, 0.9])  # a severe miss, then a pass
    response, tiers = run_ladder(catalog, url, rules, lambda text: (next(scores), True))
    assert len(tiers) == 2 and tiers[-1] == catalog.premium
    assert response.model.endswith(catalog.tiers[catalog.premium].model_id)


def test_litellm_calls_router_gateway_as_an_openai_endpoint(sim, catalog, tmp_path, embedder):
    url, _ = sim
    os.environ["GW_PROVIDER_KEY"] = KEY
    task = example_tasks(catalog)["course_title"]
    with gateway(tmp_path, url, embedder) as (gw_url, _):
        response = litellm.completion(
            model="openai/stage5-router", api_base=gw_url, api_key="anything",
            messages=task.messages(list(task.items)),
            response_format={"type": "json_schema", "json_schema": {
                "name": task.field, "schema": task.spec.json_schema()}},
            extra_body={"stage5": routing(task)})
    assert response.model.removeprefix("openai/") in catalog.tiers or any(
        response.model.endswith(t) for t in catalog.tiers)
    assert json.loads(response.choices[0].message.content)
