"""The LLM client: OpenAI chat-completions to any compatible endpoint (OpenRouter, vLLM, a
provider's own API, or the provider simulator).

The openai SDK does the retries (exponential backoff with jitter on 429, 5xx, timeouts and
connection errors; it honours Retry-After), so this module only adds what the SDK lacks: a
concurrency limit per provider, a fallback provider for a tier after repeated rate limits,
cost from `usage`, a response cache, and error messages that never carry an API key.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import openai

from pipeline.generator.cache import DiskCache
from router_model.config import Catalog, Tier, check, typed
from router_model.files import digest

RESPONSE_FORMATS = ("json_schema", "json_object", "none")


class ProviderConfigError(ValueError):
    """The provider cannot be used as configured (missing key variable, bad key, unknown
    model): retrying will not help, fixing the config will (a user error, not a bug)."""


@dataclass(frozen=True)
class FallbackProvider:
    """`provider.fallback`: a second provider for a tier after repeated rate limits."""

    name: str
    base_url: str | None  # None: no fallback
    api_key_env: str | None  # None: the tier's own key variable


@dataclass(frozen=True)
class ProviderSettings:
    """`provider` in config (conf/provider/*.yaml hold the values and what each means);
    built by `provider_settings`."""

    name: str
    base_url: str | None  # None: each tier's own base_url (conf/tiers)
    api_key_env: str | None  # None: each tier's own key variable
    models: dict[str, str]  # a tier's model id on this provider (default: conf/tiers)
    fallback: FallbackProvider
    timeout_s: float
    connect_timeout_s: float
    max_retries: int
    max_concurrency: int
    temperature: float
    response_format: str
    cache: bool  # the response cache, keyed by model, prompt and parameters
    cache_path: str

    def __post_init__(self) -> None:
        check(self.response_format in RESPONSE_FORMATS, "provider.response_format",
              self.response_format, f"must be one of {RESPONSE_FORMATS}")
        for key in ("timeout_s", "connect_timeout_s"):
            check(getattr(self, key) > 0, f"provider.{key}", getattr(self, key), "must be > 0")
        check(self.max_retries >= 0, "provider.max_retries", self.max_retries, "must be >= 0")
        check(self.max_concurrency >= 1, "provider.max_concurrency", self.max_concurrency,
              "must be >= 1")


def provider_settings(node: Any) -> ProviderSettings:
    """The `provider` config node (or a mapping) as typed settings."""
    return typed(ProviderSettings, node, "provider")


@dataclass(frozen=True)
class Endpoint:
    """One provider for one tier."""

    name: str
    base_url: str
    api_key_env: str
    model: str


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
    error_kind: str | None = None  # rate_limit | timeout | provider_error | context_overflow
    error: str | None = None
    cached: bool = False


def _redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


class LLMClient:
    """Async chat completions per tier, through `conf/tiers` and `conf/provider`."""

    def __init__(self, catalog: Catalog, provider: ProviderSettings,
                 cache: DiskCache | None = None) -> None:
        self.catalog = catalog
        self.settings = provider
        self.cache = cache
        self._clients: dict[tuple[str, str], openai.AsyncOpenAI] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self.calls = 0

    # ---- configuration ---------------------------------------------------------------

    def endpoints(self, tier: str) -> list[Endpoint]:
        """The tier's provider, then its fallback if one is configured."""
        t = self.catalog.tiers[tier]
        model = self.settings.models.get(tier, t.model_id)
        primary = self._endpoint(self.settings, t, model, default_name=t.provider)
        fallback = self.settings.fallback
        if not fallback.base_url:
            return [primary]
        return [primary, self._endpoint(fallback, t, model, default_name="fallback")]

    @staticmethod
    def _endpoint(source: ProviderSettings | FallbackProvider, tier: Tier, model: str,
                  default_name: str) -> Endpoint:
        return Endpoint(name=source.name or default_name,
                        base_url=source.base_url or tier.base_url,
                        api_key_env=source.api_key_env or tier.api_key_env, model=model)

    def _client(self, ep: Endpoint) -> openai.AsyncOpenAI:
        key = (ep.base_url, ep.api_key_env)
        if key not in self._clients:
            secret = os.environ.get(ep.api_key_env)
            if not secret:
                raise ProviderConfigError(
                    f"environment variable {ep.api_key_env} is not set (the API key for "
                    f"{ep.name} at {ep.base_url}); export it before running")
            timeout = openai.Timeout(self.settings.timeout_s,
                                     connect=self.settings.connect_timeout_s)
            self._clients[key] = openai.AsyncOpenAI(
                api_key=secret, base_url=ep.base_url, timeout=timeout,
                max_retries=self.settings.max_retries)
        return self._clients[key]

    def _limit(self, ep: Endpoint) -> asyncio.Semaphore:
        if ep.name not in self._limits:
            self._limits[ep.name] = asyncio.Semaphore(self.settings.max_concurrency)
        return self._limits[ep.name]

    def _secrets(self) -> list[str]:
        envs = {t.api_key_env for t in self.catalog.tiers.values()}
        envs |= {self.settings.api_key_env, self.settings.fallback.api_key_env}
        return [os.environ.get(e, "") for e in envs if e]

    # ---- calls -----------------------------------------------------------------------

    def _request(self, ep: Endpoint, messages: list[dict[str, str]], schema_name: str,
                 schema: dict[str, Any] | None, max_tokens: int, seed: int) -> dict[str, Any]:
        body: dict[str, Any] = {"model": ep.model, "messages": messages,
                                "max_tokens": max_tokens, "seed": seed,
                                "temperature": self.settings.temperature}
        mode = self.settings.response_format
        if schema is not None and mode == "json_schema":
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema_name, "schema": schema, "strict": False}}
        elif schema is not None and mode == "json_object":
            body["response_format"] = {"type": "json_object"}
        return body

    async def complete(self, tier: str, messages: list[dict[str, str]], *, schema_name: str,
                       schema: dict[str, Any] | None, max_tokens: int, seed: int
                       ) -> CallResult:
        """One attempt at `tier`: the primary provider, then the fallback on rate limits."""
        endpoints = self.endpoints(tier)
        for ep in endpoints:
            body = self._request(ep, messages, schema_name, schema, max_tokens, seed)
            result = await self._cached_call(tier, ep, body)
            if result.error_kind != "rate_limit" or ep is endpoints[-1]:
                break
        return result

    async def _cached_call(self, tier: str, ep: Endpoint, body: dict[str, Any]) -> CallResult:
        key = digest("chat", body)
        if self.cache is not None and (hit := self.cache.get(key)) is not None:
            return CallResult(**{**json.loads(hit), "cached": True, "latency_ms": 0.0})
        result = await self._call(tier, ep, body)
        if self.cache is not None and result.error_kind is None:
            self.cache.put(key, json.dumps(asdict(result)).encode())
        return result

    async def _call(self, tier: str, ep: Endpoint, body: dict[str, Any]) -> CallResult:
        client = self._client(ep)
        start = time.perf_counter()

        def failed(kind: str, exc: Exception) -> CallResult:
            message = _redact(f"{type(exc).__name__}: {exc}", self._secrets())
            return CallResult(None, None, 0, 0, 0.0, (time.perf_counter() - start) * 1e3,
                              ep.name, kind, message[:500])

        async with self._limit(ep):
            self.calls += 1
            try:
                response = await client.chat.completions.create(**body)
            except openai.RateLimitError as exc:
                return failed("rate_limit", exc)
            except openai.APITimeoutError as exc:
                return failed("timeout", exc)
            except (openai.AuthenticationError, openai.PermissionDeniedError,
                    openai.NotFoundError) as exc:
                raise ProviderConfigError(_redact(f"{ep.name} refused the call for tier "
                                                  f"{tier}: {exc}", self._secrets())) from None
            except openai.BadRequestError as exc:
                kind = "context_overflow" if exc.code == "context_length_exceeded" else \
                    "provider_error"
                return failed(kind, exc)
            except openai.APIError as exc:  # 5xx after retries, connection, bad body
                return failed("provider_error", exc)
        choice = response.choices[0] if response.choices else None
        usage = response.usage
        prompt = usage.prompt_tokens if usage else 0
        completion = usage.completion_tokens if usage else 0
        return CallResult(
            content=choice.message.content if choice else None,
            finish_reason=choice.finish_reason if choice else None,
            prompt_tokens=prompt, completion_tokens=completion,
            cost_usd=float(self.catalog.tiers[tier].call_cost(prompt, completion)),
            latency_ms=(time.perf_counter() - start) * 1e3, provider=ep.name)

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
