"""The HTTP face of the router (FastAPI): the endpoints of `endpoints.py` around one
`RouterService`, behind the body guard, with the artifact watcher running beside them.

Endpoints: POST /v1/route (?explain=true), POST /v1/route/batch, POST /v1/escalate,
GET /healthz, GET /readyz, GET /metrics (Prometheus), POST /admin/reload (bearer token).
Every POST body first passes `http_guard.BodyGuard` (size limit, JSON content type, strict
UTF-8 JSON with finite numbers); malformed bodies get a 422 that names the field and the
problem and never echoes the input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError

from router_model.serve import connections, openai_route
from router_model.serve.core import RouterService, ServeSettings
from router_model.serve.endpoints import ROUTERS
from router_model.serve.http_guard import BodyGuard, validation_error_handler
from router_model.serve.http_metrics import HttpCounts
from router_model.serve.metrics import Metrics

log = logging.getLogger("stage5_router.service")


async def watch_artifacts(service: RouterService, metrics: Metrics) -> None:
    """Load a newly published artifact when the folder changes (every reload_poll_s)."""
    while True:
        await asyncio.sleep(service.settings.reload_poll_s)
        try:
            result = await asyncio.to_thread(service.reload_if_changed)
        except Exception:  # the watcher must outlive any one bad look at the folder
            log.exception("checking the artifact folder failed")
            continue
        if result is not None:
            metrics.reloaded(result, service.readiness())


def create_app(service: RouterService) -> FastAPI:
    """Build the app around a ready `RouterService` (config is resolved by the caller)."""
    metrics = Metrics(service.settings.gauge_window, str(service.settings.replica))
    metrics.set_model(service.readiness())
    metrics.watch_service(service)
    metrics.watch_decision_log(service)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher = (asyncio.create_task(watch_artifacts(service, metrics))
                   if service.settings.reload_poll_s > 0 else None)
        yield
        if watcher:
            watcher.cancel()
        service.close()

    # No trailing-slash redirects: Starlette builds them from the client's Host header, so a
    # redirect would point wherever the client said. /v1/route/ is a 404.
    settings = service.settings
    app = FastAPI(title="stage5-router", version="1", lifespan=lifespan,
                  redirect_slashes=False,
                  description="Routing decisions for Stage-5 course generation.")
    app.state.service, app.state.metrics = service, metrics
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(BodyGuard, max_body_bytes=settings.max_body_bytes,
                       max_task_body_bytes=settings.max_task_body_bytes,
                       max_json_items=settings.max_json_items)
    app.add_middleware(HttpCounts, metrics=metrics)  # outermost: sees the guard's refusals
    connections.configure(connection_limits(settings))
    app.include_router(openai_route.router)  # first: /v1/route also takes OpenAI requests
    for router in ROUTERS:
        app.include_router(router)
    return app


def connection_limits(settings: ServeSettings) -> connections.ConnectionLimits:
    return connections.ConnectionLimits(
        header_timeout_s=settings.header_timeout_s, body_timeout_s=settings.body_timeout_s,
        max_header_bytes=settings.max_header_bytes, max_connections=settings.max_connections)


def server_options(settings: ServeSettings) -> dict[str, Any]:
    """uvicorn's options for `serve`'s connection limits (`connections.py`)."""
    return connections.uvicorn_options(connection_limits(settings),
                                       settings.keepalive_timeout_s)


CONFIG_ENV = "ROUTER_SERVE_CONFIG"


def app_from_env() -> FastAPI:
    """uvicorn factory for several workers: the resolved config comes in an env variable.

    Each worker appends to its own decision log (`decisions.<replica>.<pid>.jsonl` by
    default), so rotation never races; /metrics is per worker (a scrape reaches one worker
    at random), so scale with replicas, not workers, where the metrics matter.
    """
    cfg = json.loads(os.environ[CONFIG_ENV])
    if cfg["serve"].get("decision_log"):
        path = Path(cfg["serve"]["decision_log"])
        cfg["serve"]["decision_log"] = str(path.with_name(
            f"{path.stem}.{os.getpid()}{path.suffix}"))
    return create_app(RouterService.from_config(cfg))
