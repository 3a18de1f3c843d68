"""Provider handling for the LLM client: settings, a tier's deployments, what a failed call
means, how long to wait before the next one, and a cooldown per deployment.

A provider error is not a quality failure. 429, 5xx, timeouts, refused connections and 200s
whose body is not a completion are retried with backoff (honouring Retry-After), then sent to
the tier's next deployment; a deployment that keeps failing is left out for a while (a
circuit breaker shared by every task). Only when every deployment of a tier is down does a
call end as `tier_unavailable`, the one provider outcome that may move the ladder. A
permanent 4xx (bad request, bad key, unknown model) ends as `provider_rejected`: retrying
will not help and a dearer tier would fail the same way, so the task stops.
"""

from __future__ import annotations

import email.utils
import random
import time
from dataclasses import dataclass
from typing import Any

import openai

from router_model.config import RESPONSE_FORMATS, Catalog, check, typed


@dataclass(frozen=True)
class FallbackProvider:
    """`provider.fallback`: a second deployment for every tier (None: none)."""

    name: str
    base_url: str | None
    api_key_env: str | None  # None: the tier's own key variable


@dataclass(frozen=True)
class RetrySettings:
    """`provider.retry`: how one call is retried across a tier's deployments."""

    attempts_per_deployment: int  # calls to one deployment before trying the next
    rounds: int  # passes over the tier's deployments before `tier_unavailable`
    backoff_s: float  # the first wait; doubled on each retry, with jitter
    max_backoff_s: float
    max_retry_after_s: float  # a longer Retry-After sends the call to the next deployment

    def __post_init__(self) -> None:
        for key in ("attempts_per_deployment", "rounds"):
            check(getattr(self, key) >= 1, f"provider.retry.{key}", getattr(self, key),
                  "must be >= 1")
        for key in ("backoff_s", "max_backoff_s", "max_retry_after_s"):
            check(getattr(self, key) >= 0, f"provider.retry.{key}", getattr(self, key),
                  "must be >= 0 seconds")


@dataclass(frozen=True)
class CooldownSettings:
    """`provider.cooldown`: the per-deployment circuit breaker."""

    failures: int  # consecutive failed calls that take a deployment out of rotation
    seconds: float  # for this long

    def __post_init__(self) -> None:
        check(self.failures >= 1, "provider.cooldown.failures", self.failures, "must be >= 1")
        check(self.seconds >= 0, "provider.cooldown.seconds", self.seconds, "must be >= 0")


@dataclass(frozen=True)
class ProviderSettings:
    """`provider` in config (conf/provider/*.yaml hold the values and what each means);
    built by `provider_settings`."""

    name: str
    base_url: str | None  # None: each tier's own base_url and deployments (conf/tiers)
    api_key_env: str | None  # None: each tier's own key variable
    models: dict[str, str]  # a tier's model id on this provider (default: conf/tiers)
    fallback: FallbackProvider
    timeout_s: float  # read timeout of a call that is not streamed
    connect_timeout_s: float
    stream: bool  # stream answers: long outputs never wait on one read
    idle_timeout_s: float  # streaming: the longest gap between two chunks
    deadline_s: float  # one call, first byte sent to last byte read
    retry: RetrySettings
    cooldown: CooldownSettings
    max_concurrency: int
    temperature: float
    response_format: str
    cache: bool  # the response cache, keyed by model, prompt and parameters
    cache_path: str

    def __post_init__(self) -> None:
        check(self.response_format in RESPONSE_FORMATS, "provider.response_format",
              self.response_format, f"must be one of {RESPONSE_FORMATS}")
        for key in ("timeout_s", "connect_timeout_s", "idle_timeout_s", "deadline_s"):
            check(getattr(self, key) > 0, f"provider.{key}", getattr(self, key), "must be > 0")
        check(self.max_concurrency >= 1, "provider.max_concurrency", self.max_concurrency,
              "must be >= 1")


def provider_settings(node: Any) -> ProviderSettings:
    """The `provider` config node (or a mapping) as typed settings."""
    return typed(ProviderSettings, node, "provider")


@dataclass(frozen=True)
class Endpoint:
    """One deployment of one tier: a model at a base URL, with its key variable."""

    name: str
    base_url: str
    api_key_env: str
    model: str

    @property
    def key(self) -> tuple[str, str, str]:
        """What the cooldown is kept by: a 429 for one model says little about another."""
        return (self.name, self.base_url, self.model)

    def describe(self, tier: str) -> str:
        return f"tier {tier}, deployment {self.name} ({self.base_url}, model {self.model})"


def deployments(catalog: Catalog, settings: ProviderSettings, tier: str) -> list[Endpoint]:
    """The tier's deployments in the order they are tried. With `provider.base_url` every
    tier goes to that one provider (the simulator, a vLLM server); without it, to the tier's
    own base URL and then its `deployments` (conf/tiers). `provider.fallback` comes last."""
    t = catalog.tiers[tier]
    model = settings.models.get(tier, t.model_id)
    key = settings.api_key_env or t.api_key_env
    if settings.base_url:
        found = [Endpoint(settings.name, settings.base_url, key, model)]
    else:
        found = [Endpoint(t.provider, t.base_url, key, model)]
        found += [Endpoint(name, d.base_url, d.api_key_env, d.model_id or model)
                  for name, d in t.deployments.items()]
    fb = settings.fallback
    if fb.base_url:
        found.append(Endpoint(fb.name, fb.base_url, fb.api_key_env or t.api_key_env, model))
    return found


@dataclass(frozen=True)
class Failure:
    """What a failed call means: its error kind, whether another call may succeed, and how
    long the provider asked us to wait."""

    kind: str  # rate_limit | timeout | provider_error | context_overflow | provider_rejected
    retryable: bool
    retry_after_s: float | None = None
    detail: str = ""  # rate_limit, server_error, connection, timeout, bad_response, ...


RETRYABLE_STATUS = (408, 409, 429)  # and every 5xx


def classify(exc: BaseException) -> Failure:
    """The meaning of an exception raised by one call through the openai SDK."""
    if isinstance(exc, openai.APITimeoutError | TimeoutError):
        return Failure("timeout", True, None, "timeout")
    if isinstance(exc, openai.APIConnectionError):
        return Failure("provider_error", True, None, "connection")
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        after = retry_after_s(exc.response.headers if exc.response is not None else {})
        if status == 429:
            return Failure("rate_limit", True, after, "rate_limit")
        if status >= 500 or status in RETRYABLE_STATUS:
            return Failure("provider_error", True, after, f"http_{status}")
        if getattr(exc, "code", None) == "context_length_exceeded":
            return Failure("context_overflow", False, None, "context_length_exceeded")
        return Failure("provider_rejected", False, None, f"http_{status}")
    # A 200 whose body is not a completion (not JSON, no choices): the provider's fault.
    return Failure("provider_error", True, None, "bad_response")


def retry_after_s(headers: Any) -> float | None:
    """Seconds from `retry-after-ms`, or `retry-after` (seconds or an HTTP date)."""
    try:
        if (ms := headers.get("retry-after-ms")) is not None:
            return max(float(ms) / 1000.0, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            when = email.utils.parsedate_to_datetime(value)
            return max(when.timestamp() - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None


def backoff_s(retry: RetrySettings, n: int, failure: Failure, rng: random.Random) -> float:
    """The wait before retry `n` (0-based): Retry-After when the provider gave one, else
    exponential backoff with jitter (half to all of `backoff_s * 2**n`, capped)."""
    if failure.retry_after_s is not None:
        return min(failure.retry_after_s, retry.max_retry_after_s)
    return min(retry.max_backoff_s, retry.backoff_s * 2 ** n) * rng.uniform(0.5, 1.0)


class Cooldowns:
    """A circuit breaker per deployment: `failures` consecutive failures take it out of
    rotation for `seconds`; after that one call is let through, and one more failure takes
    it out again. Shared by every task of a run, so retries and fallbacks of different tasks
    all see a deployment that is down."""

    def __init__(self, settings: CooldownSettings, clock: Any = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.streak: dict[tuple[str, str, str], int] = {}
        self.until: dict[tuple[str, str, str], float] = {}
        self.opened = 0  # how many times a deployment was taken out (for the summary)

    def available(self, ep: Endpoint) -> bool:
        return self.clock() >= self.until.get(ep.key, 0.0)

    def failed(self, ep: Endpoint) -> None:
        streak = self.streak.get(ep.key, 0) + 1
        if streak >= self.settings.failures:
            self.until[ep.key] = self.clock() + self.settings.seconds
            self.opened += 1
            streak = self.settings.failures - 1  # half-open: one more failure reopens it
        self.streak[ep.key] = streak

    def succeeded(self, ep: Endpoint) -> None:
        self.streak.pop(ep.key, None)
        self.until.pop(ep.key, None)


class ProviderRejected(RuntimeError):
    """A permanent 4xx for a task: it stops, names the tier and deployment, never escalates."""


class TierUnavailable(RuntimeError):
    """Every deployment of the highest tier a task can reach is down: the task stops (a
    rerun resumes it)."""


def provider_step(catalog: Catalog, tier: str, error_kind: str, error: str | None
                  ) -> dict[str, Any]:
    """The ladder's next step after a provider outcome (never the gate's: nothing was
    judged). `tier_unavailable` moves one tier up with its own reason; with nowhere to go,
    or after `provider_rejected`, the task stops with an error that says why."""
    if error_kind == "provider_rejected":
        raise ProviderRejected(f"{error}; not escalated: a permanent provider error fails "
                               "the same way on every tier; fix the request or the config")
    ladder = catalog.ladder
    if tier not in ladder or tier == ladder[-1]:
        raise TierUnavailable(f"{error}; {tier} is the highest tier this task can reach, so "
                              "it stopped; run the same command again once a deployment is up")
    nxt = ladder[ladder.index(tier) + 1]
    target = catalog.tiers[nxt]
    return {"action": "escalate", "next_tier": nxt, "model": target.model_id,
            "provider": target.provider, "retry_count": 0, "reason": "tier_unavailable"}
