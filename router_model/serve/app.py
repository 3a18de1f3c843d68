"""The HTTP face of the router (FastAPI): a thin layer over `RouterService`.

Endpoints: POST /v1/route (?explain=true), POST /v1/route/batch, POST /v1/escalate,
GET /healthz, GET /readyz, GET /metrics (Prometheus), POST /admin/reload (bearer token).
Every POST body first passes `http_guard.BodyGuard` (size limit, JSON content type, strict
UTF-8 JSON with finite numbers); malformed bodies get a 422 that names the field and the
problem and never echoes the input.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, Header, HTTPException, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from router_model.serve.core import EscalationError, RouterService
from router_model.serve.http_guard import BodyGuard, validation_error_handler
from router_model.serve.live_gauges import LiveGauges
from router_model.serve.requests import BatchIn, EscalateIn, TaskIn

log = logging.getLogger("stage5_router.service")


class ReplicaLabelled:
    """A registry's metrics with `replica="<name>"` added to every series, at scrape time.

    One Prometheus scraping several replicas then tells their series apart by a name that
    survives a restart on another address (Prometheus's own `instance` label is the address),
    and that name is the one on each replica's decision-log lines. prometheus-client has no
    constant labels, so this wraps the registry instead of labelling each metric (and
    covers the custom collectors too).
    """

    def __init__(self, registry: CollectorRegistry, replica: str) -> None:
        self.registry = registry
        self.replica = replica

    def collect(self) -> Iterator[Any]:
        for family in self.registry.collect():
            labelled = copy.copy(family)  # never mutate what a collector may hand out again
            labelled.samples = [s._replace(labels={**s.labels, "replica": self.replica})
                                for s in family.samples]
            yield labelled


class Metrics:
    """Prometheus metrics in the app's own registry (several apps can live in one process);
    `exposed` is what /metrics serves: the same series, each labelled with the replica."""

    def __init__(self, gauge_window: int = 1000, replica: str = "") -> None:
        self.registry = CollectorRegistry()
        self.exposed = ReplicaLabelled(self.registry, replica)
        self.live = LiveGauges(gauge_window)
        self.registry.register(self.live)
        self.decisions = Counter("router_decisions", "Routing decisions",
                                 ["tier", "source"], registry=self.registry)
        self.fallbacks = Counter("router_fallbacks", "Decisions answered from the rules",
                                 ["reason"], registry=self.registry)
        self.latency = Histogram("router_decision_latency_seconds",
                                 "Time to decide one request", ["endpoint"],
                                 buckets=(5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2,
                                          2.5e-2, 0.1, 0.5), registry=self.registry)
        self.model = Gauge("router_model_info", "The model being served (value 1)",
                           ["router_version", "mode"], registry=self.registry)
        self.reloads = Counter("router_reloads", "Model reloads", ["result"],
                               registry=self.registry)
        self.degraded = Gauge("router_degraded", "1 while the configured model is not being "
                              "served (answers come from the rules)", registry=self.registry)

    def observe(self, endpoint: str, seconds: float, decisions: list[dict[str, Any]],
                fields: list[Any]) -> None:
        self.latency.labels(endpoint).observe(seconds)
        self.live.observe(fields, decisions)
        for d in decisions:
            self.decisions.labels(d["start_tier"], d["source"]).inc()
            if d.get("fallback_reason"):
                self.fallbacks.labels(d["fallback_reason"].split(":")[0]).inc()

    def set_model(self, readiness: dict[str, Any]) -> None:
        self.model.clear()
        self.model.labels(readiness["router_version"], readiness["mode"]).set(1)
        self.degraded.set(1 if readiness["status"] == "degraded" else 0)

    def watch_decision_log(self, service: RouterService) -> None:
        """What rotation deleted from the decision log, and lines that could not be written;
        read from the log at scrape time."""
        self.registry.register(_DecisionLogCollector(service))


class _DecisionLogCollector:
    def __init__(self, service: RouterService) -> None:
        self.service = service

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        dropped = self.service.decision_log.dropped
        family = CounterMetricFamily("router_decision_log_dropped", "Decision-log content "
                                     "deleted by rotation (the oldest backup), and lines that "
                                     "could not be written", labels=["unit"])
        for unit in ("bytes", "lines", "unwritten_lines"):
            family.add_metric([unit], dropped[unit])
        yield family


def create_app(service: RouterService) -> FastAPI:
    """Build the app around a ready `RouterService` (config is resolved by the caller)."""
    metrics = Metrics(service.settings.gauge_window, str(service.settings.replica))
    metrics.set_model(service.readiness())
    metrics.watch_decision_log(service)

    async def watch_artifacts() -> None:
        while True:
            await asyncio.sleep(service.settings.reload_poll_s)
            try:
                result = await asyncio.to_thread(service.reload_if_changed)
            except Exception:  # the watcher must outlive any one bad look at the folder
                log.exception("checking the artifact folder failed")
                continue
            if result is not None:
                metrics.reloads.labels("ok" if result["reloaded"] else "rejected").inc()
                metrics.set_model(service.readiness())

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher = (asyncio.create_task(watch_artifacts())
                   if service.settings.reload_poll_s > 0 else None)
        yield
        if watcher:
            watcher.cancel()
        service.close()

    app = FastAPI(title="stage5-router", version="1", lifespan=lifespan,
                  description="Routing decisions for Stage-5 course generation.")
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_middleware(BodyGuard, max_body_bytes=service.settings.max_body_bytes)

    def require_admin(authorization: Annotated[str | None, Header()] = None) -> None:
        token = service.admin_token()
        if token is None:
            raise HTTPException(503, f"admin endpoints are disabled: set "
                                     f"{service.settings.admin_token_env} to enable them")
        scheme, _, presented = (authorization or "").strip().partition(" ")
        # Header values arrive as latin-1 text: compare bytes, so any header is comparable.
        if scheme.lower() != "bearer" or not secrets.compare_digest(
                presented.strip().encode("latin-1", "replace"), token.encode("utf-8")):
            raise HTTPException(401, "missing or wrong bearer token",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.post("/v1/route", response_class=FastJSON)
    async def route(task: TaskIn, explain: Annotated[bool, Query()] = False) -> FastJSON:
        decision, seconds = timed(lambda: service.route(
            task.model_dump(exclude_none=True), explain=explain))
        metrics.observe("route", seconds, [decision], [task.field])
        return FastJSON(decision)

    @app.post("/v1/route/batch", response_class=FastJSON)
    async def route_batch(batch: BatchIn) -> FastJSON:
        if len(batch.tasks) > service.settings.max_batch:
            raise HTTPException(422, f"tasks: {len(batch.tasks)} tasks is more than "
                                     f"serve.max_batch={service.settings.max_batch}")
        tasks = [t.model_dump(exclude_none=True) for t in batch.tasks]
        decisions, seconds = timed(lambda: service.route_batch(tasks))
        metrics.observe("route_batch", seconds, decisions, [t.get("field") for t in tasks])
        return FastJSON({"decisions": decisions})

    @app.post("/v1/escalate")
    async def escalate(body: EscalateIn) -> dict[str, Any]:
        try:
            return service.escalate(**body.model_dump())
        except EscalationError as exc:
            return JSONResponse(status_code=422, content={"detail": [
                {"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}]})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        readiness = service.readiness()
        return JSONResponse(status_code=200 if readiness["ready"] else 503, content=readiness)

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.exposed),  # type: ignore[arg-type]
                        media_type=CONTENT_TYPE_LATEST)

    @app.post("/admin/reload", dependencies=[Depends(require_admin)])
    async def reload() -> JSONResponse:
        result = await asyncio.to_thread(service.reload)
        metrics.reloads.labels("ok" if result["reloaded"] else "rejected").inc()
        metrics.set_model(service.readiness())
        return JSONResponse(status_code=200 if result["reloaded"] else 409, content=result)

    return app


def timed(fn: Any) -> tuple[Any, float]:
    started = time.perf_counter()
    return fn(), time.perf_counter() - started


class FastJSON(JSONResponse):
    """Decisions are plain JSON already: skip FastAPI's recursive `jsonable_encoder`, and
    encode with orjson (about 10x the standard library)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


CONFIG_ENV = "ROUTER_SERVE_CONFIG"


def app_from_env() -> FastAPI:
    """uvicorn factory for several workers: the resolved config comes in an env variable.

    Each worker appends to its own decision log (`decisions.<replica>.<pid>.jsonl` by
    default), so rotation never races; /metrics is per worker, as Prometheus scrapes each
    process.
    """
    cfg = json.loads(os.environ[CONFIG_ENV])
    if cfg["serve"].get("decision_log"):
        path = Path(cfg["serve"]["decision_log"])
        cfg["serve"]["decision_log"] = str(path.with_name(
            f"{path.stem}.{os.getpid()}{path.suffix}"))
    return create_app(RouterService.from_config(cfg))
