"""The LLM client: OpenAI chat completions to any compatible endpoint (OpenRouter, vLLM, a
provider's own API, or the provider simulator).

One `complete` is one attempt as the ladder sees it. Below it, provider errors are handled
here and never reach the gate: retries with backoff that honour Retry-After, the tier's next
deployment, a cooldown per deployment (`providers.py`). Answers are streamed (an idle timeout
between chunks and a deadline for the whole call, so long lesson batches never wait on one
read), requests carry each tier's `request` settings (reasoning effort, extra body,
`max_completion_tokens`, response format), and the response's model, finish reason and
usage are kept; missing or absurd usage is estimated (`usage.py`). Keys are read from the
environment variables named in config only, and scrubbed from every message.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import openai

from pipeline.generator.cache import DiskCache
from pipeline.generator.providers import (
    Cooldowns,
    Endpoint,
    Failure,
    ProviderSettings,
    backoff_s,
    classify,
    deployments,
    provider_settings,
)
from pipeline.generator.usage import checked_usage
from router_model.config import Catalog
from router_model.files import digest
from router_model.tracing import attempt_span

__all__ = ["CallResult", "LLMClient", "ProviderConfigError", "ProviderSettings",
           "provider_settings"]


class ProviderConfigError(ValueError):
    """The provider cannot be used as configured (a missing key variable): retrying will not
    help, fixing the config will (a user error, not a bug)."""


@dataclass
class CallResult:
    """One attempt's answer (or failure), with what it cost."""

    content: str | None
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    latency_ms: float
    provider: str
    error_kind: str | None = None  # see router_model.contract.ErrorKind
    error: str | None = None
    cached: bool = False
    response_model: str | None = None
    usage_estimated: bool = False
    retries: int = 0  # failed provider calls absorbed before this outcome
    faults: list[str] = field(default_factory=list)  # what each of them was


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


@dataclass
class _Answer:
    content: str | None
    finish_reason: str | None
    model: str | None
    usage: Any


class LLMClient:
    """Async chat completions per tier, through `conf/tiers` and `conf/provider`."""

    def __init__(self, catalog: Catalog, provider: ProviderSettings,
                 cache: DiskCache | None = None, seed: int = 0) -> None:
        self.catalog = catalog
        self.settings = provider
        self.cache = cache
        self.cooldowns = Cooldowns(provider.cooldown)
        self._clients: dict[tuple[str, str], openai.AsyncOpenAI] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._rng = random.Random(seed)
        self.calls = 0

    # ---- configuration ---------------------------------------------------------------

    def endpoints(self, tier: str) -> list[Endpoint]:
        """The tier's deployments, in the order they are tried."""
        return deployments(self.catalog, self.settings, tier)

    def _client(self, ep: Endpoint) -> openai.AsyncOpenAI:
        key = (ep.base_url, ep.api_key_env)
        if key not in self._clients:
            secret = os.environ.get(ep.api_key_env)
            if not secret:
                raise ProviderConfigError(
                    f"environment variable {ep.api_key_env} is not set (the API key for "
                    f"{ep.name} at {ep.base_url}); export it before running")
            s = self.settings
            # Streamed: a read waits at most the idle timeout; else the whole answer.
            read = s.idle_timeout_s if s.stream else s.timeout_s
            timeout = openai.Timeout(s.deadline_s, connect=s.connect_timeout_s, read=read)
            # Retries are ours (providers.py): each failed call must reach the cooldowns.
            # No redirects: a provider's 3xx must not send the client to another host (a
            # metadata endpoint, say); it is a provider error like any other non-answer.
            self._clients[key] = openai.AsyncOpenAI(
                api_key=secret, base_url=ep.base_url, timeout=timeout, max_retries=0,
                http_client=openai.DefaultAsyncHttpx2Client(follow_redirects=False))
        return self._clients[key]

    def _limit(self, ep: Endpoint) -> asyncio.Semaphore:
        if ep.base_url not in self._limits:
            self._limits[ep.base_url] = asyncio.Semaphore(self.settings.max_concurrency)
        return self._limits[ep.base_url]

    def _secrets(self) -> list[str]:
        envs = {t.api_key_env for t in self.catalog.tiers.values()}
        envs |= {d.api_key_env for t in self.catalog.tiers.values()
                 for d in t.deployments.values()}
        envs |= {self.settings.api_key_env, self.settings.fallback.api_key_env}
        return [os.environ.get(e, "") for e in envs if e]

    # ---- requests ----------------------------------------------------------------------

    def request_body(self, tier: str, ep: Endpoint, messages: list[dict[str, str]],
                     schema_name: str, schema: dict[str, Any] | None, max_tokens: int,
                     seed: int | None) -> dict[str, Any]:
        """The chat-completions body for one deployment, with the tier's `request`."""
        req = self.catalog.tiers[tier].request
        body: dict[str, Any] = {"model": ep.model, "messages": messages,
                                req.max_tokens_param: max_tokens,
                                "temperature": self.settings.temperature}
        if seed is not None:
            body["seed"] = seed
        if req.reasoning_effort:
            body["reasoning_effort"] = req.reasoning_effort
        if req.extra_body:
            body["extra_body"] = dict(req.extra_body)
        mode = req.response_format or self.settings.response_format
        if schema is not None and mode == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema_name, "schema": schema, "strict": False}}
        elif schema is not None and mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    async def complete(self, tier: str, messages: list[dict[str, str]], *, schema_name: str,
                       schema: dict[str, Any] | None, max_tokens: int, seed: int | None
                       ) -> CallResult:
        """One attempt at `tier`, through its deployments (see the module's docstring)."""
        def body(ep: Endpoint) -> dict[str, Any]:
            return self.request_body(tier, ep, messages, schema_name, schema, max_tokens, seed)

        return await self.complete_bodies(tier, body)

    async def complete_bodies(self, tier: str, body: Any) -> CallResult:
        """`complete` for a caller that builds each deployment's body (`body(endpoint)`),
        e.g. the gateway passing its client's request through."""
        retry, faults = self.settings.retry, []
        last: CallResult | None = None
        for rnd in range(retry.rounds):
            for ep in self.endpoints(tier):
                if not self.cooldowns.available(ep):
                    continue
                result = await self._on_deployment(tier, ep, body(ep), faults)
                if result.error_kind is None or result.error_kind in (
                        "provider_rejected", "context_overflow"):
                    result.retries, result.faults = len(faults), list(faults)
                    return result
                last = result
            if rnd + 1 < retry.rounds:
                await asyncio.sleep(backoff_s(retry, rnd, Failure("", True), self._rng))
        return self._unavailable(tier, last, faults)

    async def _on_deployment(self, tier: str, ep: Endpoint, body: dict[str, Any],
                             faults: list[str]) -> CallResult:
        """Up to `attempts_per_deployment` calls to one deployment; the last result."""
        retry = self.settings.retry
        for n in range(retry.attempts_per_deployment):
            result, failure = await self._cached_call(tier, ep, body)
            if failure is None:
                self.cooldowns.succeeded(ep)
                return result
            if not failure.retryable:
                return result
            faults.append(failure.detail)
            self.cooldowns.failed(ep)
            too_long = (failure.retry_after_s or 0.0) > retry.max_retry_after_s
            if too_long or not self.cooldowns.available(ep) \
                    or n + 1 == retry.attempts_per_deployment:
                return result
            await asyncio.sleep(backoff_s(retry, n, failure, self._rng))
        raise AssertionError("unreachable")  # pragma: no cover

    def _unavailable(self, tier: str, last: CallResult | None, faults: list[str]
                     ) -> CallResult:
        names = ", ".join(f"{ep.name} ({ep.base_url})" for ep in self.endpoints(tier))
        why = (f"after {len(faults)} failed calls ({', '.join(sorted(set(faults)))})"
               if faults else "all cooling down after repeated failures")
        message = f"tier {tier}: every deployment is down [{names}] {why}"
        if last is not None and last.error:
            message += f"; last error: {last.error}"
        return CallResult(None, None, 0, 0, 0.0, last.latency_ms if last else 0.0,
                          last.provider if last else "none", "tier_unavailable",
                          message[:1000], retries=len(faults), faults=list(faults))

    # ---- one HTTP call -----------------------------------------------------------------

    async def _cached_call(self, tier: str, ep: Endpoint, body: dict[str, Any]
                           ) -> tuple[CallResult, Failure | None]:
        key = digest("chat", body)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return CallResult(**{**json.loads(hit), "cached": True, "latency_ms": 0.0}), None
        result, failure = await self._call(tier, ep, body)
        if self.cache is not None and failure is None:
            self.cache.put(key, json.dumps(asdict(result)).encode())
        return result, failure

    async def _call(self, tier: str, ep: Endpoint, body: dict[str, Any]
                    ) -> tuple[CallResult, Failure | None]:
        client = self._client(ep)
        start = time.perf_counter()
        async with self._limit(ep):
            self.calls += 1
            with attempt_span(tier, ep.name, ep.base_url, body) as span:
                try:
                    async with asyncio.timeout(self.settings.deadline_s):
                        answer = await (self._streamed(client, body) if self.settings.stream
                                        else self._whole(client, body))
                except Exception as exc:  # every provider failure becomes a result
                    failure = classify(exc)
                    span.failed(failure.detail)
                    return self._failed(tier, ep, exc, failure, start), failure
                result = self._result(tier, ep, body, answer, start)
                span.answered(result)
                return result, None

    def _failed(self, tier: str, ep: Endpoint, exc: BaseException, failure: Failure,
                start: float) -> CallResult:
        message = _redact(f"{ep.describe(tier)}: {type(exc).__name__}: {exc}", self._secrets())
        return CallResult(None, None, 0, 0, 0.0, (time.perf_counter() - start) * 1e3,
                          ep.name, failure.kind, message[:500])

    @staticmethod
    async def _whole(client: openai.AsyncOpenAI, body: dict[str, Any]) -> _Answer:
        response = await client.chat.completions.create(**body)
        choices = getattr(response, "choices", None)
        if not isinstance(choices, list) or not choices:
            raise ValueError("the response holds no choices (not a chat completion)")
        choice = choices[0]
        return _Answer(choice.message.content, choice.finish_reason,
                       getattr(response, "model", None), getattr(response, "usage", None))

    @staticmethod
    async def _streamed(client: openai.AsyncOpenAI, body: dict[str, Any]) -> _Answer:
        stream = await client.chat.completions.create(
            **body, stream=True, stream_options={"include_usage": True})
        parts: list[str] = []
        finish = model = usage = None
        chunks = 0
        async for chunk in stream:
            chunks += 1
            model = getattr(chunk, "model", None) or model
            usage = getattr(chunk, "usage", None) or usage
            for choice in getattr(chunk, "choices", None) or []:
                if choice.delta is not None and choice.delta.content:
                    parts.append(choice.delta.content)
                finish = choice.finish_reason or finish
        if not chunks or (not parts and finish is None):
            raise ValueError("the stream held no completion chunks (not a chat completion)")
        return _Answer("".join(parts), finish, model, usage)

    def _result(self, tier: str, ep: Endpoint, body: dict[str, Any], answer: _Answer,
                start: float) -> CallResult:
        t = self.catalog.tiers[tier]
        prompt_text = "\n".join(str(m.get("content", "")) for m in body["messages"])
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 0)
        usage = checked_usage(answer.usage, prompt_text, answer.content or "",
                              max_tokens=max_tokens, context_window=t.context_window)
        return CallResult(
            content=answer.content, finish_reason=answer.finish_reason,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            cost_usd=float(t.call_cost(usage.prompt_tokens, usage.completion_tokens)),
            latency_ms=(time.perf_counter() - start) * 1e3, provider=ep.name,
            response_model=answer.model, usage_estimated=usage.estimated)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
