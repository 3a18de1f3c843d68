"""Clients for the generator: the same three calls in-process or over HTTP.

    client = LocalRouterClient(service)            # in the generator's own process
    client = HttpRouterClient("http://127.0.0.1:8080")
    decision = client.route(task)                  # before generating a field
    step = client.escalate(decision_id=..., tier=..., similarity=0.7, schema_valid=True,
                           retry_count=0)          # after each gate result
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import httpx

from router_model.serve.core import RouterService
from router_model.serve.requests import BatchIn, EscalateIn, TaskIn


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


class HttpRouterClient:
    """Over HTTP to `router-serve`; raises httpx.HTTPStatusError on a 4xx/5xx answer."""

    def __init__(self, base_url: str, timeout: float = 5.0) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=timeout)

    def _post(self, path: str, body: Any, **params: Any) -> Any:
        response = self.http.post(path, json=body, params=params or None)
        response.raise_for_status()
        return response.json()

    def route(self, task: Mapping[str, Any], explain: bool = False) -> dict[str, Any]:
        return self._post("/v1/route", dict(task), **({"explain": "true"} if explain else {}))

    def route_batch(self, tasks: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        return self._post("/v1/route/batch", {"tasks": list(tasks)})["decisions"]

    def escalate(self, **gate_result: Any) -> dict[str, Any]:
        return self._post("/v1/escalate", gate_result)

    def close(self) -> None:
        self.http.close()
