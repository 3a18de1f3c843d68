"""Clients for the generator: the same three calls in-process or over HTTP.

    client = LocalRouterClient(service)            # in the generator's own process
    client = HttpRouterClient("http://127.0.0.1:8080", settings,
                              fallback=LocalRouterClient(rules_service))  # survives the router
    decision = client.route(task)                  # before generating a field
    step = client.escalate(decision_id=..., tier=..., similarity=0.7, schema_valid=True,
                           retry_count=0)          # after each gate result
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from router_model.config import check
from router_model.serve.core import RouterService
from router_model.serve.requests import BatchIn, EscalateIn, TaskIn

log = logging.getLogger("stage5_router.client")


class RouterClient(Protocol):
    def route(self, task: Mapping[str, Any], explain: bool = False) -> dict[str, Any]: ...

    def route_batch(self, tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]: ...

    def escalate(self, **gate_result: Any) -> dict[str, Any]: ...


class LocalRouterClient:
    """In-process: calls the service core directly (no HTTP), after the same validation as
    the HTTP app; a bad task raises pydantic's ValidationError, which names the field."""

    def __init__(self, service: RouterService) -> None:
        self.service = service

    def route(self, task: Mapping[str, Any], explain: bool = False) -> dict[str, Any]:
        valid = TaskIn.model_validate(task).model_dump(exclude_none=True)
        return self.service.route(valid, explain=explain)

    def route_batch(self, tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        batch = BatchIn.model_validate({"tasks": list(tasks)})
        return self.service.route_batch([t.model_dump(exclude_none=True) for t in batch.tasks])

    def escalate(self, **gate_result: Any) -> dict[str, Any]:
        return self.service.escalate(**EscalateIn.model_validate(gate_result).model_dump())


@dataclass(frozen=True)
class RouterClientSettings:
    """`router_client` in course_generate's config: how the generator talks to router-serve."""

    timeout_s: float  # one request, connect to last byte
    connect_timeout_s: float
    retries: int  # more tries on a refused connection, a timeout or a 5xx
    backoff_s: float  # wait before a retry (doubled each time)
    down_s: float  # after the service failed, go straight to the rules for this long
    fallback: bool  # answer from the local rules when the service is unreachable

    def __post_init__(self) -> None:
        for key in ("timeout_s", "connect_timeout_s"):
            check(getattr(self, key) > 0, f"router_client.{key}", getattr(self, key),
                  "must be > 0 seconds")
        check(self.retries >= 0, "router_client.retries", self.retries, "must be >= 0")
        for key in ("backoff_s", "down_s"):
            check(getattr(self, key) >= 0, f"router_client.{key}", getattr(self, key),
                  "must be >= 0 seconds")


class RouterUnavailable(RuntimeError):
    """router-serve could not be reached and no local fallback is configured."""


class HttpRouterClient:
    """Over HTTP to `router-serve`, with timeouts and retries on connection errors, timeouts
    and 5xx. When the service stays unreachable, `fallback` (a `LocalRouterClient` on the
    seed's rules) answers instead: decisions come back with `source="rules_fallback"`, so
    the attempt log says so, and escalation follows the same ladder locally. A 4xx (a bad
    request) is raised as httpx.HTTPStatusError: the rules would not make it valid."""

    def __init__(self, base_url: str, settings: RouterClientSettings | None = None,
                 fallback: RouterClient | None = None, timeout: float = 5.0) -> None:
        self.settings = settings or RouterClientSettings(timeout, min(timeout, 2.0), 2, 0.2,
                                                         10.0, fallback is not None)
        s = self.settings
        self.http = httpx.Client(base_url=base_url, timeout=httpx.Timeout(
            s.timeout_s, connect=s.connect_timeout_s))
        self.fallback = fallback if s.fallback else None
        self.down_until = 0.0
        self.fallbacks = 0  # calls answered locally (for the run summary)

    def _post(self, path: str, body: Any, **params: Any) -> Any:
        s = self.settings
        for n in range(s.retries + 1):
            try:
                response = self.http.post(path, json=body, params=params or None)
                if response.status_code < 500:
                    response.raise_for_status()
                    return response.json()
                error: Exception = httpx.HTTPStatusError(
                    f"router-serve answered {response.status_code}", request=response.request,
                    response=response)
            except (httpx.TransportError, json.JSONDecodeError) as exc:
                error = exc
            if n < s.retries:
                time.sleep(s.backoff_s * 2 ** n)
        raise RouterUnavailable(f"router-serve at {self.http.base_url} is unreachable after "
                                f"{s.retries + 1} tries: {type(error).__name__}: {error}")

    def _call(self, method: str, path: str, body: Any, **params: Any) -> Any:
        if self.fallback is not None and time.monotonic() < self.down_until:
            return self._local(method, body)
        try:
            return self._post(path, body, **params)
        except RouterUnavailable as exc:
            if self.fallback is None:
                raise
            log.warning("%s; answering from the local rules for %.0f s", exc,
                        self.settings.down_s)
            self.down_until = time.monotonic() + self.settings.down_s
            return self._local(method, body)

    def _local(self, method: str, body: Any) -> Any:
        self.fallbacks += 1
        if method == "route":
            return {**self.fallback.route(body), "source": "rules_fallback"}
        return self.fallback.escalate(**body)

    def route(self, task: Mapping[str, Any], explain: bool = False) -> dict[str, Any]:
        return self._call("route", "/v1/route", dict(task),
                          **({"explain": "true"} if explain else {}))

    def route_batch(self, tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return [self.route(t) for t in tasks] if (
            self.fallback is not None and time.monotonic() < self.down_until) else \
            self._post("/v1/route/batch", {"tasks": list(tasks)})["decisions"]

    def escalate(self, **gate_result: Any) -> dict[str, Any]:
        return self._call("escalate", "/v1/escalate", gate_result)

    def close(self) -> None:
        self.http.close()
