"""Provider errors are not quality failures: the LLM client against a scripted provider.

Real HTTP on loopback (`stub_provider.py`) and the real openai SDK: 429 with Retry-After,
5xx, refused connections, 200s that are not completions, permanent 4xx, missing and absurd
usage, streams that stall, and what a request carries.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from omegaconf import OmegaConf

from pipeline.generator.llm_client import LLMClient
from pipeline.generator.providers import (
    Cooldowns,
    CooldownSettings,
    Endpoint,
    ProviderRejected,
    TierUnavailable,
    provider_settings,
    provider_step,
    retry_after_s,
)
from router_model.config import CONF_DIR, Catalog
from tests.pipeline.generator.stub_provider import completion, error_body, stub_provider

KEY = "sk-stub-PLANTED-91c2"
MESSAGES = [{"role": "user", "content": "Write a course title about Python. " * 20}]


def settings(url: str, *overrides: str, fallback: str | None = None) -> Any:
    node = OmegaConf.load(f"{CONF_DIR}/provider/simulator.yaml")
    node.cache_path = "unused"
    node.base_url = url
    node.fallback.base_url = fallback
    node.api_key_env = node.fallback.api_key_env = "STUB_KEY"
    node.retry.backoff_s = 0.0
    node.merge_with_dotlist([o.removeprefix("provider.") for o in overrides])
    return provider_settings(node)


def call(client: LLMClient, tier: str = "gpt-oss-20b", max_tokens: int = 200) -> Any:
    async def go() -> Any:
        try:
            return await client.complete(tier, MESSAGES, schema_name="course_title",
                                         schema={"type": "object"}, max_tokens=max_tokens,
                                         seed=7)
        finally:
            await client.close()
    return asyncio.run(go())


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("STUB_KEY", KEY)


def test_a_429_is_retried_after_its_retry_after_and_never_reaches_the_gate(catalog):
    script = [("status", 429, error_body("slow down", "rate_limit_error"),
               {"retry-after": "0.05"}), ("ok", completion())]
    with stub_provider(script) as (url, stub):
        result = call(LLMClient(catalog, settings(url)))
    assert result.error_kind is None and result.content == '{"title": "A fine title"}'
    assert result.retries == 1 and result.faults == ["rate_limit"] and len(stub.bodies) == 2


def test_5xx_falls_back_to_the_tiers_second_deployment(catalog):
    down = [("status", 503, error_body("overloaded"), {})]
    with stub_provider(down) as (url, first), stub_provider([("ok", completion())]) as (
            fb, second):
        s = settings(url, "provider.retry.attempts_per_deployment=2", fallback=fb)
        result = call(LLMClient(catalog, s))
    assert result.error_kind is None and result.provider == "simulator-b"
    assert len(first.bodies) == 2 and len(second.bodies) == 1 and result.retries == 2


def test_a_refused_connection_is_a_provider_error_then_the_fallback(catalog):
    with stub_provider([("ok", completion())]) as (fb, _):
        result = call(LLMClient(catalog, settings("http://127.0.0.1:9/v1", fallback=fb)))
    assert result.error_kind is None and result.faults == ["connection"] * 3


def test_every_deployment_down_is_tier_unavailable_and_moves_the_ladder(catalog):
    down = [("status", 500, error_body("boom"), {})]
    with stub_provider(down) as (url, _), stub_provider(down) as (fb, _):
        s = settings(url, "provider.retry.rounds=1", fallback=fb)
        result = call(LLMClient(catalog, s))
    assert result.error_kind == "tier_unavailable" and result.retries == 6
    assert "every deployment is down" in result.error and KEY not in result.error
    step = provider_step(catalog, "gpt-oss-20b", result.error_kind, result.error)
    assert step["action"] == "escalate" and step["next_tier"] == "gpt-oss-120b"
    assert step["reason"] == "tier_unavailable"
    with pytest.raises(TierUnavailable, match="highest tier"):
        provider_step(catalog, "qwen3-max", result.error_kind, result.error)


def test_a_permanent_4xx_stops_at_once_naming_tier_and_deployment(catalog):
    script = [("status", 401, error_body(f"bad key {KEY}", "invalid_request_error"), {})]
    with stub_provider(script) as (url, stub):
        result = call(LLMClient(catalog, settings(url)), tier="gpt-oss-120b")
    assert result.error_kind == "provider_rejected" and len(stub.bodies) == 1
    assert "tier gpt-oss-120b, deployment simulator" in result.error
    assert KEY not in result.error
    with pytest.raises(ProviderRejected, match="not escalated"):
        provider_step(catalog, "gpt-oss-120b", result.error_kind, result.error)


def test_a_redirect_never_sends_the_client_to_another_host(catalog):
    """A provider's 307 to another host (a metadata endpoint, say) is not followed: it stops
    the task as a rejected call, and the other host never hears from the client."""
    with stub_provider([("ok", completion())]) as (elsewhere, other), \
            stub_provider([("status", 307, {}, {"location": f"{elsewhere}/chat/completions"})]
                          ) as (url, stub):
        result = call(LLMClient(catalog, settings(url)))
    assert other.bodies == [] and len(stub.bodies) == 1
    assert result.error_kind == "provider_rejected" and "Error code: 307" in result.error


def test_a_200_that_is_not_json_is_retried_never_a_crash(catalog):
    with stub_provider([("not_json",), ("ok", completion())]) as (url, stub):
        for stream in ("true", "false"):
            stub.bodies.clear()
            result = call(LLMClient(catalog, settings(url, f"provider.stream={stream}")))
            assert result.error_kind is None and result.faults == ["bad_response"], stream


@pytest.mark.parametrize("usage", [None, {"prompt_tokens": 10**12, "completion_tokens": 20},
                                   {"prompt_tokens": -5, "completion_tokens": 20},
                                   {"prompt_tokens": 100, "completion_tokens": 0}])
def test_missing_or_absurd_usage_is_estimated_and_marked(catalog, usage):
    with stub_provider([("ok", completion(usage=usage))]) as (url, _):
        result = call(LLMClient(catalog, settings(url, "provider.stream=false")))
    assert result.usage_estimated and result.cost_usd > 0
    assert 0 < result.prompt_tokens < 10_000 and 0 < result.completion_tokens < 100


def test_plausible_usage_is_taken_as_billed(catalog):
    with stub_provider([("ok", completion())]) as (url, _):
        result = call(LLMClient(catalog, settings(url)))
    assert not result.usage_estimated and (result.prompt_tokens, result.completion_tokens) \
        == (100, 20)
    assert result.response_model == "stub-model-2025" and result.finish_reason == "stop"


def test_a_stream_that_stalls_past_the_idle_timeout_is_retried(catalog):
    script = [("stall", completion(), 3.0), ("ok", completion())]
    with stub_provider(script) as (url, stub):
        result = call(LLMClient(catalog, settings(url, "provider.idle_timeout_s=0.3")))
    assert result.error_kind is None and result.faults == ["timeout"]
    assert all(b["stream"] for b in stub.bodies)


def test_the_request_carries_the_tiers_request_settings(catalog):
    tier = catalog.tiers["gpt-oss-20b"]
    request = replace(tier.request, reasoning_effort="high",
                      extra_body={"provider": {"order": ["a", "b"]}})
    tiers = {**catalog.tiers, "gpt-oss-20b": replace(tier, request=request)}
    custom = Catalog(tiers=tiers, gate=catalog.gate, fields=catalog.fields)
    with stub_provider([("ok", completion())]) as (url, stub):
        call(LLMClient(custom, settings(url)), max_tokens=321)
    body, headers = stub.bodies[0], stub.headers[0]
    assert body["max_completion_tokens"] == 321 and "max_tokens" not in body
    assert body["reasoning_effort"] == "high" and body["provider"] == {"order": ["a", "b"]}
    assert body["response_format"]["type"] == "json_schema" and body["stream"] is True
    assert headers["authorization"] == f"Bearer {KEY}"


def test_cooldown_opens_after_repeated_failures_and_lets_one_call_through_later():
    now = [0.0]
    cooldowns = Cooldowns(CooldownSettings(failures=3, seconds=10), clock=lambda: now[0])
    ep = Endpoint("a", "http://a/v1", "K", "m")
    for _ in range(2):
        cooldowns.failed(ep)
    assert cooldowns.available(ep)
    cooldowns.failed(ep)
    assert not cooldowns.available(ep)
    now[0] = 10.5
    assert cooldowns.available(ep)  # half-open
    cooldowns.failed(ep)
    assert not cooldowns.available(ep)  # one more failure takes it out again
    cooldowns.succeeded(ep)
    assert cooldowns.available(ep)


@pytest.mark.parametrize("headers, expected", [
    ({"retry-after": "2"}, 2.0), ({"retry-after-ms": "250"}, 0.25), ({}, None),
    ({"retry-after": "soon"}, None), ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0)])
def test_retry_after_reads_seconds_milliseconds_and_dates(headers, expected):
    assert retry_after_s(headers) == expected
