"""Connection-level limits: what a slow or heavy client can hold of the server, and for how long.

uvicorn's HTTP protocol (httptools) has no header read timeout, no body read timeout, no
header size limit and no connection cap: about 1,010 half-sent requests made the server
unreachable under the common 1024-file limit, and one 64 MB header was read whole. This is a
small guard on top of it, chosen over settings alone because no uvicorn setting bounds the
time to send headers or a body, or the header size with httptools (`h11_max_incomplete_
event_size` only applies to the slower h11 parser), and uvicorn's `limit_concurrency` answers
503 only after a connection has sent its headers, holding its socket meanwhile.

`GuardedHttpToolsProtocol` is uvicorn's own protocol with four additions, all constant-time
per read (a counter and a timer handle; no per-request task or thread):

- a connection over `max_connections` is answered 503 and closed at once, so the process's
  file descriptors stay bounded (the kernel's listen backlog queues the rest);
- from a connection's first byte (or the start of each request on a keep-alive
  connection) its headers must arrive within `header_timeout_s`, else 408 and close;
- headers larger than `max_header_bytes` get a 431 and the connection is closed (what was
  read so far is dropped; at most one socket read past the limit is held);
- once the headers are in, the body must arrive within `body_timeout_s`, else 408 and close.

Idle keep-alive connections close after uvicorn's `timeout_keep_alive` (`serve.keepalive_
timeout_s`). The limits come from `serve` in config (`configure`, called when the app is
built, in every worker process).
"""

from __future__ import annotations

import asyncio
import logging
import resource
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("stage5_router.connections")


@dataclass(frozen=True)
class ConnectionLimits:
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_header_bytes: int = 32_768
    max_connections: int = 512


_limits = ConnectionLimits()


def configure(limits: ConnectionLimits) -> None:
    """The limits every connection accepted from now on in this process obeys."""
    global _limits
    _limits = limits


def current() -> ConnectionLimits:
    return _limits


def _response(status: int, reason: str, text: str) -> bytes:
    body = text.encode("ascii")
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode("ascii") + body


TOO_MANY = _response(503, "Service Unavailable", "too many connections")
HEADERS_TOO_SLOW = _response(408, "Request Timeout", "the request headers took too long")
BODY_TOO_SLOW = _response(408, "Request Timeout", "the request body took too long")
HEADERS_TOO_LARGE = _response(431, "Request Header Fields Too Large",
                              "the request headers are too large")

try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - uvicorn[standard] brings httptools
    HttpToolsProtocol = None  # type: ignore[assignment,misc]


if HttpToolsProtocol is not None:

    class HeadersTooLarge(Exception):
        """Raised from a parser callback; httptools turns it into a parser error."""

    class GuardedHttpToolsProtocol(HttpToolsProtocol):  # type: ignore[misc,valid-type]
        """uvicorn's httptools protocol with the limits above."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.limits = _limits
            self._timer: asyncio.TimerHandle | None = None
            self._reading_headers = True
            self._header_bytes = 0
            self._refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= self.limits.max_connections:
                self._refused = True  # never counted, never parsed
                self.transport = transport
                transport.write(TOO_MANY)
                transport.close()
                return
            super().connection_made(transport)
            self._arm(self.limits.header_timeout_s, HEADERS_TOO_SLOW)

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            if self._refused:
                return
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            if self._reading_headers:
                self._header_bytes += len(data)
            super().data_received(data)
            if self._reading_headers and self._header_bytes > self.limits.max_header_bytes \
                    and not self.transport.is_closing():
                self._close_with(HEADERS_TOO_LARGE)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._reading_headers = True
            self._header_bytes = 0
            self._parsed_header_bytes = 0
            if self._timer is None:
                self._arm(self.limits.header_timeout_s, HEADERS_TOO_SLOW)

        # A request whose headers arrive in one read is parsed inside that read, after the
        # count above was reset: so the parsed URL and headers are counted too.
        def on_url(self, url: bytes) -> None:
            self._count_parsed(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count_parsed(len(name) + len(value) + 4)
            super().on_header(name, value)

        def _count_parsed(self, size: int) -> None:
            self._parsed_header_bytes = getattr(self, "_parsed_header_bytes", 0) + size
            if self._parsed_header_bytes > self.limits.max_header_bytes:
                self._close_with(HEADERS_TOO_LARGE)
                raise HeadersTooLarge  # stops the parser: no request reaches the app

        def send_400_response(self, msg: str) -> None:
            if self.transport is not None and self.transport.is_closing():
                return  # already answered (431) and closing
            super().send_400_response(msg)

        def on_headers_complete(self) -> None:
            self._reading_headers = False
            self._arm(self.limits.body_timeout_s, BODY_TOO_SLOW)
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._disarm()
            super().on_message_complete()

        def _arm(self, seconds: float, response: bytes) -> None:
            self._disarm()
            self._timer = self.loop.call_later(seconds, self._close_with, response)

        def _disarm(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _close_with(self, response: bytes) -> None:
            """Answer (unless a response already started) and close the connection."""
            self._disarm()
            if self.transport is None or self.transport.is_closing():
                return
            if self.cycle is None or not self.cycle.response_started:
                self.transport.write(response)
            self.transport.close()


def uvicorn_options(limits: ConnectionLimits, keepalive_timeout_s: float) -> dict[str, Any]:
    """What `uvicorn.run` / `uvicorn.Config` need for these limits (and `configure` them)."""
    configure(limits)
    ensure_file_limit(limits.max_connections)
    if HttpToolsProtocol is None:  # pragma: no cover
        log.warning("httptools is missing: header size and connection limits come from "
                    "h11 and uvicorn's limit_concurrency, and there are no read timeouts")
        return {"http": "h11", "h11_max_incomplete_event_size": limits.max_header_bytes,
                "limit_concurrency": limits.max_connections,
                "timeout_keep_alive": keepalive_timeout_s}
    return {"http": GuardedHttpToolsProtocol, "timeout_keep_alive": keepalive_timeout_s}


def ensure_file_limit(max_connections: int, spare: int = 128) -> None:
    """Raise the soft open-file limit towards the hard one so `max_connections` sockets plus
    the process's own files fit; say so when they cannot."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = max_connections + spare
        if soft != resource.RLIM_INFINITY and soft < wanted:
            new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
            resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
            if new < wanted:
                log.warning("serve.max_connections=%d needs %d open files; the limit is %d",
                            max_connections, wanted, new)
    except (ValueError, OSError) as exc:  # pragma: no cover - a platform without it
        log.warning("could not check the open-file limit (%s)", exc)
