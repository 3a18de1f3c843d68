"""The provider SIMULATOR: an OpenAI chat-completions endpoint on 127.0.0.1, no LLM inside.

It exists only because no LLM is reachable here. It speaks the wire format (choices, usage,
error bodies, 429 with Retry-After, streaming), answers with text written for the brief in
the request at the quality the log world model draws for that tier and hidden difficulty
(answers.py, writer.py), judges outputs when asked (the `llm_judge` scorer and the phase-4
section review), waits like a provider would, and injects faults on demand: rate limits,
5xx, hangs, malformed JSON, truncated output and slow streams.
"""

from __future__ import annotations

import asyncio
import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from pipeline.gate.judge import JUDGE_MARKER
from pipeline.generator.schemas import OUTPUTS
from pipeline.generator.tasks import TASK_MARKER, estimate_tokens
from pipeline.provider_sim.answers import (
    Memory,
    WriteRequest,
    judge_answer,
    review_failures,
    write_answer,
)
from pipeline.provider_sim.request_world import Draw, RequestWorld
from router_model.config import Catalog, check, typed
from router_model.files import keyed_rng

FAULTS = ("rate_limit", "server_error", "timeout", "malformed_json", "truncated", "slow_stream")


LATENCY_MODES = ("zero", "lognormal", "tiers")


@dataclass(frozen=True)
class Latency:
    """`provider_sim.latency`: how long an answer takes."""

    mode: str  # zero | lognormal (p50_s, sigma) | tiers (conf/tiers' latency model)
    p50_s: float
    sigma: float
    scale: float

    def __post_init__(self) -> None:
        check(self.mode in LATENCY_MODES, "provider_sim.latency.mode", self.mode,
              f"must be one of {LATENCY_MODES}")
        for key in ("p50_s", "sigma", "scale"):
            check(getattr(self, key) >= 0, f"provider_sim.latency.{key}", getattr(self, key),
                  "must be >= 0")


@dataclass(frozen=True)
class SimSettings:
    """`provider_sim` in config (conf/provider_sim.yaml holds the values and what each
    means); built by `sim_settings`."""

    host: str
    port: int
    seed: int
    latency: Latency
    faults: dict[str, float]  # share of requests answered with each fault
    retry_after_s: float
    hang_s: float
    slow_chunk_delay_s: float
    require_api_key: bool
    judge_sd: float  # the simulated judge's noise on the seed's quality scale
    log_level: str

    def __post_init__(self) -> None:
        unknown = sorted(set(self.faults) - set(FAULTS))
        check(not unknown and all(v >= 0 for v in self.faults.values())
              and sum(self.faults.values()) <= 1.0, "provider_sim.faults", self.faults,
              f"known faults are {FAULTS}, each rate >= 0, summing <= 1")
        for key in ("retry_after_s", "hang_s", "slow_chunk_delay_s", "judge_sd"):
            check(getattr(self, key) >= 0, f"provider_sim.{key}", getattr(self, key),
                  "must be >= 0")


def sim_settings(node: Any) -> SimSettings:
    """The `provider_sim` config node (or a mapping) as typed settings."""
    return typed(SimSettings, node, "provider_sim")


def error(status: int, message: str, kind: str, code: str | None = None,
          headers: dict[str, str] | None = None) -> JSONResponse:
    """The OpenAI error body."""
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def parse_task(messages: list[dict[str, Any]], marker: str = TASK_MARKER
               ) -> dict[str, Any] | None:
    """The generator's TASK block (the JSON line after the marker) in the last user message;
    `marker=JUDGE_MARKER`: a judge request's block."""
    users = [m for m in messages if m.get("role") == "user"]
    text = str(users[-1].get("content", "")) if users else ""
    lines = text.splitlines()
    for i, line in enumerate(lines[:-1]):
        if line.strip() == marker:
            try:
                return json.loads(lines[i + 1])
            except json.JSONDecodeError:
                return None
    return None


class ProviderSimulator:
    """Turns one request into a completion (or a fault) and keeps counts."""

    def __init__(self, settings: SimSettings, world: RequestWorld, catalog: Catalog) -> None:
        self.settings = settings
        self.world = world
        self.catalog = catalog
        self.memory = Memory()
        self.stats: Counter[str] = Counter()
        self._rng = random.Random(settings.seed)
        self._lock = threading.Lock()

    def pick_fault(self) -> str | None:
        with self._lock:
            u = self._rng.random()
        for name in FAULTS:
            u -= self.settings.faults.get(name, 0.0)
            if u < 0:
                return name
        return None

    def latency_s(self, tier: str, completion_tokens: int, key: Any) -> float:
        lat = self.settings.latency
        if lat.mode == "zero":
            return 0.0
        if lat.mode == "lognormal":
            z = keyed_rng(self.settings.seed, "latency", key).normal()
            return lat.scale * lat.p50_s * float(np.exp(lat.sigma * z))
        return lat.scale * float(self.catalog.tiers[tier].call_latency_s(completion_tokens))

    def compose(self, body: Mapping[str, Any], task: Mapping[str, Any], tier: str,
                total_tokens: int) -> tuple[dict[str, Any], Draw]:
        """The answer object for the requested items and the world's draw behind it."""
        draw = self.world.draw(task, tier, total_tokens, body.get("seed"))
        analysis = task.get("analysis") or {}
        req = WriteRequest(field=str(task["field"]), topic=str(task.get("topic", "")),
                      language=str(analysis.get("language", "en")),
                      items=list(task.get("items") or []), seed=body.get("seed"))
        answers = write_answer(req, draw, self.memory, self.settings.seed, task["task_id"])
        if task.get("review") and req.field == "quality_check":
            failing = review_failures(task["review"], self.memory, self.settings.judge_sd,
                                      self.settings.seed)
            answers[0].update(verdict="fail" if failing else "pass", failing_items=failing)
        spec = OUTPUTS.get(req.field)
        if draw.schema_broken:  # one item loses a required key: a partly valid batch
            victim = answers[keyed_rng(self.settings.seed, "victim", task["task_id"],
                                       body.get("seed")).integers(len(answers))]
            required = [k for k in (spec.model.model_json_schema().get("required", [])
                                    if spec else []) if k != "id"]
            victim.pop(required[-1] if required else next(iter(victim)), None)
        if spec is not None and spec.batched:
            return {spec.list_key: answers}, draw
        return answers[0], draw

    def judge(self, task: Mapping[str, Any]) -> dict[str, Any]:
        """A judge request's rubric (pipeline/gate/judge.py)."""
        return judge_answer(task, self.memory, self.settings.judge_sd, self.settings.seed)


def completion_body(model: str, content: str, prompt_tokens: int,
                    finish_reason: str = "stop", billed: int | None = None) -> dict[str, Any]:
    """The chat.completion object; `billed`: the completion tokens the world drew (a
    reasoning model bills more than its visible answer), at least the answer's own."""
    completion = max(estimate_tokens(content), billed or 0)
    return {"id": f"chatcmpl-sim-{uuid.uuid4().hex[:16]}", "object": "chat.completion",
            "created": int(time.time()), "model": model, "system_fingerprint": "simulator",
            "choices": [{"index": 0, "finish_reason": finish_reason,
                         "message": {"role": "assistant", "content": content}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion,
                      "total_tokens": prompt_tokens + completion}}


async def _trickle(payload: bytes, delay_s: float, chunks: int = 4) -> AsyncIterator[bytes]:
    size = max(len(payload) // chunks, 1)
    for start in range(0, len(payload), size):
        await asyncio.sleep(delay_s)
        yield payload[start:start + size]


async def _sse(body: dict[str, Any], delay_s: float) -> AsyncIterator[bytes]:
    """The completion as chat.completion.chunk events, then the usage chunk and [DONE]."""
    content = body["choices"][0]["message"]["content"]
    base = {k: body[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    step = max(len(content) // 8, 1)
    for start in range(0, len(content), step):
        await asyncio.sleep(delay_s)
        delta = {"index": 0, "delta": {"content": content[start:start + step]},
                 "finish_reason": None}
        yield f"data: {json.dumps(base | {'choices': [delta]})}\n\n".encode()
    end = {"index": 0, "delta": {}, "finish_reason": body["choices"][0]["finish_reason"]}
    yield f"data: {json.dumps(base | {'choices': [end]})}\n\n".encode()
    yield f"data: {json.dumps(base | {'choices': [], 'usage': body['usage']})}\n\n".encode()
    yield b"data: [DONE]\n\n"


@dataclass(frozen=True)
class ChatRequest:
    """A chat-completions request the simulator can answer."""

    body: dict[str, Any]
    model: str
    tier: str
    task: dict[str, Any]
    prompt_tokens: int
    judge: bool = False  # a judge request (JUDGE block), not a generation


async def _read(sim: ProviderSimulator, request: Request) -> ChatRequest | JSONResponse:
    """The request, or the error a provider answers it with: no key, a body that is not
    JSON, an unknown model, no generator TASK block, a prompt over the context window."""
    auth = request.headers.get("authorization", "")
    if sim.settings.require_api_key and not auth.removeprefix("Bearer ").strip():
        return error(401, "missing API key (Authorization: Bearer ...)",
                     "invalid_request_error", "invalid_api_key")
    try:
        body = await request.json()
    except json.JSONDecodeError:
        return error(400, "request body is not JSON", "invalid_request_error")
    model = str(body.get("model", ""))
    tier = sim.world.tier_of(model)
    if tier is None:
        return error(404, f"model {model!r} does not exist on this simulator",
                     "invalid_request_error", "model_not_found")
    messages = body.get("messages") or []
    task = parse_task(messages)
    judged = parse_task(messages, JUDGE_MARKER) if task is None else None
    if judged is None and (task is None or not sim.world.knows(task.get("field"))):
        return error(400, "the simulator answers only Stage-5 generator prompts (TASK "
                          "block with a known field) and judge prompts (JUDGE block)",
                     "invalid_request_error")
    prompt_tokens = sum(estimate_tokens(str(m.get("content", ""))) for m in messages)
    window = sim.catalog.tiers[tier].context_window
    if prompt_tokens > window:
        return error(400, f"this model's maximum context length is {window} tokens; the "
                          f"request has {prompt_tokens}", "invalid_request_error",
                     "context_length_exceeded")
    if judged is not None:
        return ChatRequest(body, model, tier, judged, prompt_tokens, judge=True)
    return ChatRequest(body, model, tier, task or {}, prompt_tokens)


async def _refusal(fault: str | None, s: SimSettings) -> JSONResponse | None:
    """The faults answered instead of a completion: a rate limit, a 5xx, a hang."""
    if fault == "rate_limit":
        return error(429, "rate limit reached (simulated)", "rate_limit_error",
                     "rate_limit_exceeded", {"retry-after": f"{s.retry_after_s:g}"})
    if fault == "server_error":
        return error(503, "upstream overloaded (simulated)", "server_error")
    if fault == "timeout":
        await asyncio.sleep(s.hang_s)
        return error(504, "gateway timeout (simulated)", "server_error")
    return None


def _damaged(content: str, fault: str | None) -> tuple[str, str]:
    """(content, finish reason) as the faults that damage an answer leave them."""
    if fault == "malformed_json":
        return content[: len(content) // 2] + "}{", "stop"
    if fault == "truncated":
        return content[: max(len(content) * 3 // 5, 1)], "length"
    return content, "stop"


def _delivered(out: dict[str, Any], headers: dict[str, str], stream: bool,
               fault: str | None, s: SimSettings) -> Response:
    """The completion as one JSON body, as server-sent events, or trickling in slowly."""
    delay = s.slow_chunk_delay_s if fault == "slow_stream" else 0.0
    if stream:
        return StreamingResponse(_sse(out, delay), media_type="text/event-stream",
                                 headers=headers)
    if fault == "slow_stream":
        return StreamingResponse(_trickle(json.dumps(out).encode(), delay),
                                 media_type="application/json", headers=headers)
    return JSONResponse(out, headers=headers)


def create_app(sim: ProviderSimulator) -> FastAPI:
    """The FastAPI face of the simulator."""
    app = FastAPI(title="stage5 provider SIMULATOR", version="1",
                  description="A simulated OpenAI-compatible provider (no LLM inside).")
    s = sim.settings

    @app.get("/healthz")
    def healthz() -> dict[str, Any]:
        return {"ok": True, "simulator": True, "seed": s.seed}

    @app.get("/v1/simulator/stats")
    def stats() -> dict[str, int]:
        return dict(sim.stats)

    @app.post("/v1/chat/completions", response_model=None)
    async def chat(request: Request) -> Response:
        sim.stats["requests"] += 1
        req = await _read(sim, request)
        if isinstance(req, JSONResponse):
            return req
        fault = sim.pick_fault()
        if fault:
            sim.stats[f"fault_{fault}"] += 1
        refused = await _refusal(fault, s)
        if refused is not None:
            return refused
        billed = None
        if req.judge:
            answer, quality = sim.judge(req.task), None
        else:
            answer, draw = await asyncio.to_thread(sim.compose, req.body, req.task, req.tier,
                                                   req.prompt_tokens)
            quality, billed = draw.quality, draw.completion_tokens
        content, finish = _damaged(json.dumps(answer, ensure_ascii=False), fault)
        out = completion_body(req.model, content, req.prompt_tokens, finish,
                              None if finish == "length" else billed)
        sim.stats["judgements" if req.judge else "completions"] += 1
        key = (req.task.get("task_id", "judge"), req.body.get("seed"), req.tier)
        await asyncio.sleep(sim.latency_s(req.tier, out["usage"]["completion_tokens"], key))
        headers = {"x-simulator": "stage5-provider-sim"}
        if quality is not None:
            headers["x-simulator-quality"] = f"{quality:.4f}"
        return _delivered(out, headers, bool(req.body.get("stream")), fault, s)

    return app
