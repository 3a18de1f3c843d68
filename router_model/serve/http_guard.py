"""What stands between the network and the routing endpoints: body limits, strict JSON, and
validation errors that name the field and the problem without echoing the input.

`BodyGuard` is a pure ASGI middleware (no per-request task or thread). For every POST it

- refuses a body over `max_body_bytes` (413), by its Content-Length or while reading it
  (one task, /v1/route and /v1/escalate, over `max_task_body_bytes`);
- refuses a body with more than `max_json_items` JSON values, keys and containers (413;
  one task's body: in proportion to its byte limit), counted with one C-speed scan of the
  bytes before anything parses them: a 3.9 MB body with a 1.9M-element array, or with
  60,000 arrays nested 30 deep, held the event loop for 5.9 s on its way to a 422;
- refuses a body whose Content-Type is not JSON (415, naming what was sent);
- decodes it as strict UTF-8 (422 naming the byte offset of the first invalid byte);
- parses it as strict JSON: NaN / Infinity, numbers that overflow a float (1e400), integers
  too long for Python to parse, nesting deeper than `MAX_NESTING` and lone UTF-16
  surrogates are refused with a 422 naming the path and the problem (integers outside int64
  are refused by the request models, by field).

Then it hands the same bytes on to FastAPI. Nothing here ever puts more than a short preview
of the input into a reply.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import orjson
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from router_model.serve.requests import MAX_NESTING, RequestValueError, check_plain_json, preview

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


class _NotPlain:
    """Marks a number the strict parser refused, so the walk can name where it was."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def error_body(loc: tuple[Any, ...], msg: str, kind: str) -> dict[str, Any]:
    return {"detail": [{"loc": ["body", *loc], "msg": msg, "type": kind}]}


def parse_strict_json(raw: bytes) -> Any:
    """Parse `raw` or raise `RequestValueError` naming the path and the problem.

    orjson first: it refuses all that the slow parser does (NaN, Infinity, 1e400, invalid
    UTF-8, lone surrogates) in a fraction of the time, and the slow parser then runs only
    on a body orjson refused, to name the problem (or to accept an integer orjson cannot
    hold)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        value = _parse_slowly(raw)
    # The full walk (which names the path) only when a cheap look says it may find something.
    if (raw.count(b"[") + raw.count(b"{") > MAX_NESTING and _deeper_than(value, MAX_NESTING)) \
            or _SURROGATE_ESCAPE.search(raw):
        check_plain_json(value)
    return value


def _parse_slowly(raw: bytes) -> Any:
    """The standard library's parser with hooks that name what is refused, and where."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestValueError((), f"the body is not valid UTF-8 (byte {exc.start}: "
                                    f"{raw[exc.start:exc.start + 1]!r})") from None
    refused = False

    def constant(name: str) -> _NotPlain:
        nonlocal refused
        refused = True
        return _NotPlain(f"{name} is not a finite number (JSON has no NaN or Infinity)")

    def number(s: str) -> Any:
        value = float(s)
        if math.isfinite(value):
            return value
        nonlocal refused
        refused = True
        return _NotPlain(f"{preview(s, 24)} overflows a 64-bit float")

    # Only floats get a hook (a Python call each; bodies hold few): 1e400 would become inf.
    # Integers parse natively; more than 4300 digits is Python's own ValueError, and ints
    # outside int64 are refused by the request models, by field.
    try:
        value = json.loads(text, parse_constant=constant, parse_float=number)
    except json.JSONDecodeError as exc:
        raise RequestValueError((), f"the body is not valid JSON ({exc.msg} at line "
                                    f"{exc.lineno} column {exc.colno})") from None
    except ValueError:
        raise RequestValueError((), f"an integer in the body has more than "
                                    f"{sys.get_int_max_str_digits() or 4300} digits") from None
    except RecursionError:
        raise RequestValueError((), f"the body is nested too deeply (at most {MAX_NESTING} "
                                    "levels)") from None
    if refused:
        _raise_first_refused(value)
    return value


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers nest more than `limit` levels: level by level, containers only."""
    level = [value] if type(value) in (dict, list) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [v for c in level for v in (c.values() if type(c) is dict else c)
                 if type(v) in (dict, list)]
    return False


def _raise_first_refused(value: Any) -> None:
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        v, loc = stack.pop()
        if isinstance(v, _NotPlain):
            raise RequestValueError(loc, v.message)
        if isinstance(v, dict):
            stack += [(c, (*loc, k)) for k, c in v.items()]
        elif isinstance(v, list):
            stack += [(c, (*loc, i)) for i, c in enumerate(v)]


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/")
                                           and media.endswith("+json"))


TASK_PATHS = frozenset({"/v1/route", "/v1/escalate"})


def json_items(raw: bytes) -> int:
    """An upper bound on the values, keys and containers in a JSON text, in C: every value
    but the first follows a comma or a colon, and every container opens with a bracket
    (`[[[[]]]]` has no comma but four arrays to walk). Brackets, commas and colons inside
    strings count too, so this only ever over-counts."""
    return raw.count(b",") + raw.count(b":") + raw.count(b"[") + raw.count(b"{") + 1


class BodyGuard:
    """ASGI middleware: size limits, JSON content type and strict JSON for every POST body."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_body_bytes: int,
                 max_task_body_bytes: int | None = None,
                 max_json_items: int | None = None) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_task_body_bytes = min(max_task_body_bytes or max_body_bytes, max_body_bytes)
        self.max_json_items = max_json_items
        # One task's body gets the items limit in proportion to its byte limit (a task holds
        # a few dozen values; 200,000 arrays nested 30 deep once held the loop for 0.5 s).
        self.max_task_json_items = None if max_json_items is None else max(
            1000, max_json_items * self.max_task_body_bytes // max_body_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        limit, setting = ((self.max_task_body_bytes, "serve.max_task_body_bytes")
                          if scope.get("path") in TASK_PATHS
                          and self.max_task_body_bytes < self.max_body_bytes
                          else (self.max_body_bytes, "serve.max_body_bytes"))
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await self._reply(send, 413, error_body((), f"the body is {int(length)} bytes, more "
                              f"than {setting}={limit}", "too_large"))
            await self._drain(receive)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._reply(send, 413, error_body((), f"the body is more than "
                                  f"{setting}={limit} bytes", "too_large"))
                if message.get("more_body", False):
                    await self._drain(receive)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        items = self.max_task_json_items if scope.get("path") in TASK_PATHS \
            else self.max_json_items
        refusal = self._refusal(body, headers, items) if body else None  # empty: a 422
        if refusal is not None:
            await self._reply(send, *refusal)
            return
        sent_once = False

        async def replay() -> Message:
            nonlocal sent_once
            if sent_once:
                return await receive()
            sent_once = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    def _refusal(self, body: bytes, headers: dict[str, str], max_items: int | None
                 ) -> tuple[int, dict[str, Any]] | None:
        """Why a complete body is refused (status and error body), or None: not JSON by its
        Content-Type, too many JSON values, or not strict JSON."""
        content_type = headers.get("content-type", "")
        if not _is_json(content_type):
            sent = preview(content_type, 60) if content_type else "no Content-Type"
            return 415, error_body((), f"expected a JSON body with Content-Type: "
                                   f"application/json, got {sent}", "content_type")
        if max_items is not None and json_items(body) > max_items:
            return 413, error_body((), f"the body holds more than {max_items} JSON values "
                                   f"and containers (serve.max_json_items="
                                   f"{self.max_json_items}, in proportion for one task)",
                                   "too_large")
        try:
            parse_strict_json(body)
        except RequestValueError as exc:
            return 422, error_body(exc.loc, exc.message, "value_error")
        return None

    @staticmethod
    async def _drain(receive: Receive) -> None:
        """Read (and discard) the rest of a refused body, so the connection stays usable."""
        while True:
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                return

    @staticmethod
    async def _reply(send: Send, status: int, content: dict[str, Any]) -> None:
        body = json.dumps(content, ensure_ascii=True).encode("ascii")
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def validation_error_handler(_: Request, exc: Exception) -> JSONResponse:
    """FastAPI's 422 without the echo: each error's path, message and kind, never the input
    (which may be 10 MB, or hold values JSON cannot carry)."""
    assert isinstance(exc, RequestValidationError)
    detail = []
    for err in exc.errors():
        loc = [_plain_loc(part) for part in err.get("loc", ())]
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, RequestValueError):
            loc, msg = [*loc, *map(_plain_loc, cause.loc)], cause.message
        else:
            msg = str(err.get("msg", "invalid value")).encode("utf-8", "backslashreplace"
                                                             ).decode("utf-8")[:300]
            value = err.get("input")
            if isinstance(value, bool | int | float | str) or value is None:
                msg = f"{msg} (got {preview(value)})"
        detail.append({"loc": loc, "msg": msg, "type": str(err.get("type", "value_error"))})
    return JSONResponse(status_code=422, content={"detail": detail[:20]})


def _plain_loc(part: Any) -> str | int:
    if isinstance(part, int):
        return part
    return preview(str(part), 60).strip("'") if len(str(part)) > 60 or \
        not str(part).isprintable() else str(part)
