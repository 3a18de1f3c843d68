"""The HTTP endpoints, one small function each, on FastAPI routers.

Each reads the service and its metrics from `request.app.state` (set by `app.create_app`);
a new endpoint is one more function here. `decisions` holds the routing calls, `operations`
health, readiness and metrics, `admin` what needs the bearer token.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Callable
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from router_model.serve.core import EscalationError, RouterService
from router_model.serve.metrics import Metrics
from router_model.serve.requests import BatchIn, EscalateIn, TaskIn


class FastJSON(JSONResponse):
    """Decisions are plain JSON already: skip FastAPI's recursive `jsonable_encoder`, and
    encode with orjson (about 10x the standard library)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def parts(request: Request) -> tuple[RouterService, Metrics]:
    state = request.app.state
    return state.service, state.metrics


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    return fn(), time.perf_counter() - started


decisions = APIRouter()


@decisions.post("/v1/route", response_class=FastJSON)
async def route(request: Request, task: TaskIn,
                explain: Annotated[bool, Query()] = False) -> FastJSON:
    service, metrics = parts(request)
    decision, seconds = timed(lambda: service.route(task.model_dump(exclude_none=True),
                                                    explain=explain))
    metrics.observe("route", seconds, [decision], [task.field])
    return FastJSON(decision)


@decisions.post("/v1/route/batch", response_class=FastJSON)
async def route_batch(request: Request, batch: BatchIn) -> FastJSON:
    service, metrics = parts(request)
    if len(batch.tasks) > service.settings.max_batch:
        raise HTTPException(422, f"tasks: {len(batch.tasks)} tasks is more than "
                                 f"serve.max_batch={service.settings.max_batch}")
    tasks = [t.model_dump(exclude_none=True) for t in batch.tasks]
    answers, seconds = timed(lambda: service.route_batch(tasks))
    metrics.observe("route_batch", seconds, answers, [t.get("field") for t in tasks])
    return FastJSON({"decisions": answers})


@decisions.post("/v1/escalate")
async def escalate(request: Request, body: EscalateIn) -> Any:
    service, _ = parts(request)
    try:
        return service.escalate(**body.model_dump())
    except EscalationError as exc:
        return JSONResponse(status_code=422, content={"detail": [
            {"loc": ["body", exc.field], "msg": str(exc), "type": "value_error"}]})


operations = APIRouter()


@operations.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@operations.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    readiness = parts(request)[0].readiness()
    return JSONResponse(status_code=200 if readiness["ready"] else 503, content=readiness)


@operations.get("/metrics")
async def prometheus(request: Request) -> Response:
    return Response(generate_latest(parts(request)[1].exposed),  # type: ignore[arg-type]
                    media_type=CONTENT_TYPE_LATEST)


def require_admin(request: Request,
                  authorization: Annotated[str | None, Header()] = None) -> None:
    service = parts(request)[0]
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


admin = APIRouter(dependencies=[Depends(require_admin)])


@admin.post("/admin/reload")
async def reload(request: Request) -> JSONResponse:
    service, metrics = parts(request)
    result = await asyncio.to_thread(service.reload)
    metrics.reloaded(result, service.readiness())
    return JSONResponse(status_code=200 if result["reloaded"] else 409, content=result)


ROUTERS = (decisions, operations, admin)
