"""A scripted OpenAI-compatible provider on loopback, for provider-error tests.

Each request takes the next step of its script (the last step repeats): a status with a body
and headers, a 200 completion (with or without usage, any usage numbers), a body that is not
JSON, or a stream that stalls. Every request body is recorded. Real HTTP, real openai SDK.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from pipeline.provider_sim.cli import serve_app_in_thread


def completion(content: str = '{"title": "A fine title"}', usage: Any = "auto",
               model: str = "stub-model-2025", finish: str = "stop") -> dict[str, Any]:
    body = {"id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
            "model": model, "choices": [{"index": 0, "finish_reason": finish,
                                         "message": {"role": "assistant", "content": content}}]}
    if usage == "auto":
        body["usage"] = {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}
    elif usage is not None:
        body["usage"] = usage
    return body


async def _sse(body: dict[str, Any], stall_s: float) -> AsyncIterator[bytes]:
    base = {k: body[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    content = body["choices"][0]["message"]["content"]
    half = len(content) // 2
    for i, part in enumerate((content[:half], content[half:])):
        if i == 1 and stall_s:
            await asyncio.sleep(stall_s)
        delta = {"index": 0, "delta": {"content": part}, "finish_reason": None}
        yield f"data: {json.dumps(base | {'choices': [delta]})}\n\n".encode()
    end = {"index": 0, "delta": {}, "finish_reason": body["choices"][0]["finish_reason"]}
    yield f"data: {json.dumps(base | {'choices': [end]})}\n\n".encode()
    if "usage" in body:
        yield f"data: {json.dumps(base | {'choices': [], 'usage': body['usage']})}\n\n".encode()
    yield b"data: [DONE]\n\n"


class Stub:
    """The script and what was asked. Steps: ("status", code, body, headers),
    ("ok", completion dict), ("not_json",), ("stall", completion dict, seconds)."""

    def __init__(self, script: list[tuple[Any, ...]]) -> None:
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []

    def step(self) -> tuple[Any, ...]:
        n = len(self.bodies) - 1
        return self.script[min(n, len(self.script) - 1)]

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions", response_model=None)
        async def chat(request: Request) -> Response:
            body = await request.json()
            self.bodies.append(body)
            self.headers.append(dict(request.headers))
            step = self.step()
            if step[0] == "status":
                return JSONResponse(step[2], status_code=step[1], headers=step[3])
            if step[0] == "not_json":
                return Response("<html>upstream hiccup</html>", media_type="text/html")
            answer = step[1]
            if body.get("stream"):
                stall = step[2] if step[0] == "stall" else 0.0
                return StreamingResponse(_sse(answer, stall), media_type="text/event-stream")
            return JSONResponse(answer)

        return app


@contextlib.contextmanager
def stub_provider(script: list[tuple[Any, ...]]) -> Iterator[tuple[str, Stub]]:
    """(base_url ending /v1, stub) on a free loopback port, for the block's duration."""
    stub = Stub(script)
    url, server = serve_app_in_thread(stub.app())
    try:
        yield url, stub
    finally:
        server.should_exit = True


def error_body(message: str, kind: str = "server_error", code: str | None = None
               ) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
