"""The gateway's HTTP face: `POST /v1/chat/completions` and `GET /v1/models` in the OpenAI
format, added to router-serve's own app (so /v1/route, /v1/escalate, /metrics, /readyz and
the body guard are the same).

Streaming: the gateway streams the *final* attempt. With a gate (a `response_format` or a
reference) no token can be shown before the whole answer was judged, so every attempt is
read whole, and the accepted one is sent as server-sent events once the gate took it; with
no gate the first answer is final and is sent the same way. Either way a streaming client
gets chunks, the usage chunk when it asked (`stream_options.include_usage`) and `[DONE]`,
but no earlier first token than without streaming.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from pipeline.gateway.service import Gateway, Outcome
from pipeline.generator.llm_client import ProviderConfigError
from pipeline.generator.providers import ProviderRejected, TierUnavailable
from router_model.serve.app import create_app
from router_model.serve.endpoints import FastJSON
from router_model.serve.openai_route import RoutingError, openai_error, openai_task

router = APIRouter()


def completion(outcome: Outcome, routed_from: str, lam: float | None) -> dict[str, Any]:
    call, d = outcome.call, outcome.decision
    return {
        "id": f"chatcmpl-s5-{d['decision_id']}", "object": "chat.completion",
        "created": int(time.time()), "model": outcome.tier,
        "choices": [{"index": 0, "finish_reason": call.finish_reason or "stop",
                     "message": {"role": "assistant", "content": call.content}}],
        "usage": {"prompt_tokens": outcome.prompt_tokens,
                  "completion_tokens": outcome.completion_tokens,
                  "total_tokens": outcome.prompt_tokens + outcome.completion_tokens},
        "stage5": {"decision_id": d["decision_id"], "router_version": d["router_version"],
                   "start_tier": d["start_tier"], "source": d["source"],
                   "fallback_reason": d.get("fallback_reason"), "lam": lam,
                   "routed_from": routed_from, "tiers": outcome.tiers,
                   "attempts": len(outcome.tiers), "cost_usd": round(outcome.cost_usd, 8),
                   "flagged": outcome.flagged, "gated": bool(outcome.verdict and
                                                             outcome.verdict.gated),
                   "similarity": outcome.verdict.similarity if outcome.verdict else None,
                   "schema_valid": outcome.verdict.schema_valid if outcome.verdict else None,
                   "gate_ms": round(outcome.gate_ms, 3),
                   "response_model": call.response_model,
                   "usage_estimated": call.usage_estimated}}


def headers(body: dict[str, Any]) -> dict[str, str]:
    s5 = body["stage5"]
    return {"x-stage5-decision-id": s5["decision_id"], "x-stage5-tiers": ",".join(s5["tiers"]),
            "x-stage5-cost-usd": f"{s5['cost_usd']:.8f}",
            "x-stage5-routed-from": s5["routed_from"]}


async def sse(body: dict[str, Any], include_usage: bool) -> AsyncIterator[bytes]:
    base = {k: body[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    choice = body["choices"][0]
    first = {"index": 0, "delta": {"role": "assistant", "content": choice["message"]["content"]},
             "finish_reason": None}
    yield f"data: {json.dumps(base | {'choices': [first]})}\n\n".encode()
    end = {"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}
    yield f"data: {json.dumps(base | {'choices': [end], 'stage5': body['stage5']})}\n\n".encode()
    if include_usage:
        yield f"data: {json.dumps(base | {'choices': [], 'usage': body['usage']})}\n\n".encode()
    yield b"data: [DONE]\n\n"


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(request: Request) -> Response:
    gateway: Gateway = request.app.state.gateway
    try:
        body = await request.json()
    except ValueError:  # empty (the guard gave every other malformed body its 422)
        body = None
    if not isinstance(body, dict):
        return openai_error(400, "body: must be a chat-completions object", "body")
    if not isinstance(body.get("stream_options") or {}, dict):
        return openai_error(400, "stream_options: must be an object", "stream_options")
    try:
        task, info = openai_task(body)
    except RoutingError as exc:
        status = 404 if exc.param == "model" else 400
        return openai_error(status, str(exc), exc.param,
                            "model_not_found" if status == 404 else "invalid_routing_metadata")
    try:
        outcome = await gateway.complete(body, task, info)
    except ProviderRejected as exc:
        return openai_error(502, str(exc), None, "provider_rejected", "upstream_error")
    except TierUnavailable as exc:
        return openai_error(503, str(exc), None, "tier_unavailable", "upstream_error")
    except ProviderConfigError as exc:
        return openai_error(502, str(exc), None, "provider_config", "upstream_error")
    answer = completion(outcome, info["routed_from"], info["lam"])
    if body.get("stream"):
        usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(sse(answer, usage), media_type="text/event-stream",
                                 headers=headers(answer))
    return FastJSON(answer, headers=headers(answer))


@router.get("/v1/models")
async def models(request: Request) -> dict[str, Any]:
    name = request.app.state.gateway.settings.model_name
    return {"object": "list", "data": [{"id": name, "object": "model", "created": 0,
                                        "owned_by": "stage5"}]}


def create_gateway_app(gateway: Gateway) -> FastAPI:
    """router-serve's app around the gateway's service, plus the OpenAI endpoints."""
    app = create_app(gateway.service)
    app.state.gateway = gateway
    app.include_router(router)
    return app
