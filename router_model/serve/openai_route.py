"""OpenAI-shaped routing: a chat-completions request and a per-request `lam` (decide only).

`POST /v1/route` accepts, besides the task body of `endpoints.route`, an OpenAI
chat-completions request (`{"model": "stage5-router[:<lam>]", "messages": [...],
"metadata": {...}}` or the routing block `stage5` that `extra_body` puts at the top level):
it answers the decision only, and the caller calls the model. `?lam=` (or the model suffix,
or `stage5.lam`) sets the cost/quality dial for that request alone; a router per lam is
built once on the served model and kept (`lam_router`).

Routing metadata (`openai_task`): in `metadata` (OpenAI's string-to-string map) as
`stage5_field`, `stage5_analysis` (JSON text), `stage5_brief`, `stage5_reference`,
`stage5_lam`, `stage5_course_id`, `stage5_task_id`; or in `stage5` as the same keys without
the prefix (`analysis` an object). Without a field, the task is routed from the messages
alone (their size; `routed_from: "messages"`), and the decision says so. Problems are a 400
naming the field (`metadata.stage5_analysis: ...`).
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from router_model.decide.routers import Router, RouterContext, build_router
from router_model.serve.core import RouterService
from router_model.serve.endpoints import FastJSON
from router_model.serve.requests import TaskIn
from router_model.tracing import decided, route_span

MODEL_NAME = "stage5-router"
DEFAULT_FIELD = "unspecified"  # a task routed from its messages alone
KEYS = ("field", "analysis", "brief", "reference", "lam", "course_id", "task_id",
        "expected_output_tokens")
MAX_LAMS = 64  # distinct per-request lams kept built at once


class RoutingError(ValueError):
    """A routing input the caller must fix: 400 naming `param`."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


def openai_error(status: int, message: str, param: str | None = None,
                 code: str | None = None, kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param,
                                   "code": code}}, status_code=status)


def parse_model(model: Any) -> float | None:
    """`stage5-router` -> None, `stage5-router:<lam>` -> lam."""
    if not isinstance(model, str) or not (model == MODEL_NAME
                                          or model.startswith(MODEL_NAME + ":")):
        raise RoutingError("model", f"{str(model)[:60]!r} is not served here; use "
                                    f"{MODEL_NAME!r} or '{MODEL_NAME}:<lam>'")
    _, _, lam = model.partition(":")
    return check_lam(lam, "model") if lam else None


def check_lam(value: Any, param: str) -> float:
    try:
        lam = float(value)
    except (TypeError, ValueError):
        raise RoutingError(param, f"lam {str(value)[:40]!r} is not a number") from None
    if not math.isfinite(lam) or not 0 <= lam <= 1e6:
        raise RoutingError(param, f"lam {lam!r} must be a finite number in [0, 1e6] "
                                  "(USD per bad outcome)")
    return lam


def routing_block(body: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The routing keys from `stage5` or `metadata` (`stage5_*`), and where they came from."""
    block, meta = body.get("stage5"), body.get("metadata")
    if block is not None:
        if not isinstance(block, Mapping):
            raise RoutingError("stage5", "must be an object of routing keys")
        unknown = sorted(set(block) - set(KEYS))
        if unknown:
            raise RoutingError(f"stage5.{unknown[0]}", f"unknown key; known: {list(KEYS)}")
        return dict(block), "stage5"
    if meta is None:
        return {}, "metadata"
    if not isinstance(meta, Mapping):
        raise RoutingError("metadata", "must be an object")
    found = {k.removeprefix("stage5_"): v for k, v in meta.items()
             if isinstance(k, str) and k.startswith("stage5_")}
    if isinstance(found.get("analysis"), str):
        try:
            found["analysis"] = json.loads(found["analysis"])
        except (ValueError, RecursionError):  # not JSON, nested too deep, 4,300+ digits
            raise RoutingError("metadata.stage5_analysis", "is not JSON text within the "
                                                           "parser's limits") from None
        if not isinstance(found["analysis"], Mapping):
            raise RoutingError("metadata.stage5_analysis", "is not a JSON object")
    unknown = sorted(set(found) - set(KEYS))
    if unknown:
        raise RoutingError(f"metadata.stage5_{unknown[0]}", f"unknown key; known: "
                                                            f"{['stage5_' + k for k in KEYS]}")
    return found, "metadata.stage5_"


def message_text(messages: Any) -> str:
    if not isinstance(messages, list) or not messages:
        raise RoutingError("messages", "must be a non-empty list of chat messages")
    parts = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str):
            raise RoutingError(f"messages.{i}", "must be an object with a role")
        content = m.get("content")
        parts.append(content if isinstance(content, str) else json.dumps(content))
    return "\n".join(parts)


def openai_task(body: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the task to route, what else the request said: lam, reference, routed_from)."""
    lam = parse_model(body.get("model", MODEL_NAME))
    keys, prefix = routing_block(body)
    where = "stage5." if prefix == "stage5" else prefix
    text = message_text(body.get("messages"))
    if keys.get("lam") is not None:
        lam = check_lam(keys["lam"], f"{where}lam")
    task = {"field": keys.get("field") or DEFAULT_FIELD, "prompt_tokens": math.ceil(len(text) / 4),
            **{k: keys[k] for k in ("analysis", "brief", "course_id", "task_id",
                                    "expected_output_tokens") if keys.get(k) is not None}}
    try:
        valid = TaskIn.model_validate(task).model_dump(exclude_none=True)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise RoutingError(f"{where}{loc}", str(err["msg"])[:200]) from None
    reference = keys.get("reference") or keys.get("brief")
    if reference is not None and not isinstance(reference, str):
        raise RoutingError(f"{where}reference", "must be a string (the text the gate "
                                                "compares the answer with)")
    info = {"lam": lam, "reference": reference,
            "routed_from": "metadata" if keys.get("field") else "messages"}
    return valid, info


_lock = threading.Lock()
_routers: OrderedDict[tuple[int, float], Router] = OrderedDict()


def lam_router(service: RouterService, lam: float) -> Router:
    """The served router's policy under `lam`, built once per (served model, lam)."""
    policy = service.policy
    key = (id(policy), float(lam))
    with _lock:
        if key in _routers:
            _routers.move_to_end(key)
            return _routers[key]
    router = build_router("learned", service.registry,
                          RouterContext(service.catalog, policy.with_settings(lam=lam),
                                        seed=0)) if policy.learned else service.router
    with _lock:
        _routers[key] = router
        while len(_routers) > MAX_LAMS:
            _routers.popitem(last=False)
    return router


def decide(service: RouterService, task: Mapping[str, Any], lam: float | None,
           explain: bool = False) -> dict[str, Any]:
    """One decision, under `lam` when given (logged and remembered like `/v1/route`'s)."""
    with route_span(**{"gen_ai.request.model": MODEL_NAME}) as span:
        if lam is None:
            decision = service.route(task, explain=explain)
        else:
            decision = route_with(service, lam_router(service, lam), [task])[0]
            decision["lam"] = lam
        decided(span, decision, lam)
    return decision


def route_with(service: RouterService, router: Router, tasks: Sequence[Mapping[str, Any]]
               ) -> list[dict[str, Any]]:
    decisions = [d.to_dict() for d in service._decide(router, tasks)]
    for task, record in zip(tasks, decisions, strict=True):
        service._remember(record["decision_id"], record["start_tier"], task.get("field"))
    service.decision_log.write_many("route", [(t, d, None) for t, d in
                                              zip(tasks, decisions, strict=True)])
    return decisions


router = APIRouter()


@router.post("/v1/route", openapi_extra={"description": __doc__})
async def route_any(request: Request, explain: Annotated[bool, Query()] = False,
                    lam: Annotated[float | None, Query(ge=0, le=1e6)] = None) -> Any:
    """A Stage-5 task (as before) or an OpenAI chat-completions request; `?lam=` per request."""
    service, metrics = request.app.state.service, request.app.state.metrics
    try:
        body = await request.json()
    except ValueError:  # an empty body (the guard gave every other malformed one its 422)
        raise RequestValidationError([{"type": "missing", "loc": ("body",),
                                       "msg": "Field required", "input": None}]) from None
    extra: dict[str, Any] = {}
    try:
        if isinstance(body, dict) and "messages" in body:
            task, info = openai_task(body)
            lam = lam if lam is not None else info["lam"]
            extra = {"routed_from": info["routed_from"]}
        else:
            try:
                task = TaskIn.model_validate(body).model_dump(exclude_none=True)
            except ValidationError as exc:
                raise RequestValidationError([{**e, "loc": ("body", *e["loc"])}
                                              for e in exc.errors()]) from None
    except RoutingError as exc:
        return openai_error(400, str(exc), exc.param, "invalid_routing_metadata")
    started = time.perf_counter()
    decision = decide(service, task, lam, explain)
    metrics.observe("route", time.perf_counter() - started, [decision], [task["field"]])
    return FastJSON({**decision, **extra})
