"""Request counts by handler and status for /metrics, the refusals included.

The body guard answers 413, 415 and 422 before any endpoint runs, so an endpoint's own
counters never see them; this middleware sits outside every other one and counts each
response as `router_http_requests_total{handler, method, status}`. `handler` is the route's
path when the app has that route, else `other` (so a scan of random paths cannot grow the
series without bound).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter


def route_paths(routes: Any, prefix: str = "") -> set[str]:
    """Every route path, through included routers (FastAPI may keep them nested)."""
    out: set[str] = set()
    for r in routes or []:
        if isinstance(getattr(r, "path", None), str):
            out.add(prefix + r.path)
        inner = next((getattr(getattr(r, a, None), "routes", None) for a in
                      ("original_router", "router") if getattr(r, a, None) is not None),
                     getattr(r, "routes", None))
        if inner and inner is not routes:
            out |= route_paths(inner, prefix + str(getattr(r, "prefix", "") or ""))
    return out


class HttpCounts:
    """Pure ASGI middleware: counts every HTTP response by handler, method and status."""

    def __init__(self, app: Any, metrics: Any) -> None:
        self.app = app
        self.counter = Counter("router_http_requests", "HTTP responses by handler and status",
                               ["handler", "method", "status"], registry=metrics.registry)
        self._paths: set[str] | None = None

    def handler(self, scope: dict[str, Any]) -> str:
        if self._paths is None:
            self._paths = route_paths(getattr(scope.get("app"), "routes", []))
        path = scope.get("path", "")
        return path if path in self._paths else "other"

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = {"code": 500}

        async def counted(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, counted)
        finally:
            self.counter.labels(self.handler(scope), scope.get("method", ""),
                                str(status["code"])).inc()
