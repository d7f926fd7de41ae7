"""The HTTP server under the app: uvicorn's httptools protocol with the hub's limits.

httptools (the fast C parser the hub runs on) buffers a header however long it is,
and uvicorn waits for a head however slowly it comes: four clients each sending an
unfinished 64 MiB header took 280 MB (issue 13). ``HubHttpProtocol`` counts what
arrives before a head ends and answers, in the hub's error shape, before the app
is involved:

- 431 ``header_too_large`` once the request line and headers pass ``max_head_bytes``;
- 413 ``too_large`` for a ``Content-Length`` beyond ``max_body_bytes`` (no route
  takes more);
- 408 ``request_timeout`` when a head has not ended ``read_timeout`` seconds after
  its first byte (a connection that sends nothing at all is closed then);
- 400 ``malformed_request`` for what the parser refuses (uvicorn answers plain text).

Every such refusal is logged and counted in ``hub_http_requests_total`` under
``route="unmatched"``. The body's own timeout and chunked size are the app's
(``services.api.messages``): only the route that reads a body knows it is waiting.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any, ClassVar

import structlog
from fastapi import FastAPI
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from services.api.limits import HttpLimits

log = structlog.get_logger("hub.api")


class HubHttpProtocol(HttpToolsProtocol):
    """One connection. Subclassed per app by ``protocol_for`` with its limits."""

    limits: ClassVar[HttpLimits] = HttpLimits()

    @staticmethod
    def on_refused(status: int) -> None:
        """Called with the status of every refusal (the app's metrics count it)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._refused = False
        self._in_head = True  # what arrives now belongs to a request head
        self._head_bytes = 0
        self._head_started = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        super().data_received(data)
        # The parser holds an unfinished head in memory: count what it was given
        # while no head ended (a chunk in which one ended is the app's to bound).
        if self._in_head and not self._refused and not self.transport.is_closing():
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse_oversized_head()

    # ---- parser callbacks -----------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._refused:
            return
        super().on_message_begin()
        self._in_head, self._head_bytes, self._head_started = True, 0, True
        if self._head_timer is None:
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._cancel_head_timer()
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.limits.max_head_bytes:
            self._refuse_oversized_head()
            return
        length = next((value for name, value in self.headers if name == b"content-length"), None)
        if length is not None and length.isdigit() and int(length) > self.limits.max_body_bytes:
            limit = self.limits.max_body_bytes
            self._refuse(413, "too_large", f"a request body is at most {limit} bytes")
            return
        super().on_headers_complete()
        # uvicorn has made the request's cycle (its task has not run yet): its head and
        # body go out in one write.
        if self.cycle is not None and not isinstance(self.cycle.transport, _OneWrite):
            self.cycle.transport = _OneWrite(self.transport, self.cycle)  # type: ignore[assignment]

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def send_400_response(self, msg: str) -> None:
        # uvicorn's answer to what the parser refuses; the hub's shape instead.
        self._refuse(400, "malformed_request", "the request is not valid HTTP/1.1")

    # ---- refusing ---------------------------------------------------------------------

    def _refuse_oversized_head(self) -> None:
        self._refuse(
            431,
            "header_too_large",
            f"the request line and headers are at most {self.limits.max_head_bytes} bytes",
        )

    def _refuse(self, status: int, code: str, message: str) -> None:
        """Answer ``status`` in the error shape and close the connection."""
        if self._refused:
            return
        self._refused = True
        self._cancel_head_timer()
        busy = self.cycle is not None and not self.cycle.response_complete
        if not busy:  # else an answer to an earlier pipelined request is being written
            body = json.dumps(
                {"error": {"code": code, "message": message, "details": None}}
            ).encode()
            content = [STATUS_LINE[status]]
            for name, value in self.server_state.default_headers:
                content.extend([name, b": ", value, b"\r\n"])
            content.extend(
                [
                    b"content-type: application/json\r\n",
                    b"x-content-type-options: nosniff\r\n",
                    b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                    b"connection: close\r\n\r\n",
                    body,
                ]
            )
            self.transport.write(b"".join(content))
        self.transport.close()
        log.info("request_refused", status=status, code=code)
        self.on_refused(status)

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.read_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if not self._head_started:  # nothing sent at all: nothing to answer
            self._refused = True
            self.transport.close()
            return
        self._refuse(
            408,
            "request_timeout",
            f"the request's head did not arrive within {self.limits.read_timeout:g} s",
        )


class _OneWrite:
    """The transport as one request's cycle sees it: the head of an answer with a
    ``Content-Length`` is held back until its body is written, then both go out in one
    write. uvicorn writes them apart: two system calls and two TCP segments for every
    answer, the first of which wakes the client for a head without its body (about
    a tenth of the event loop's time per message, bench http)."""

    __slots__ = ("_cycle", "_head", "_transport")

    def __init__(self, transport: asyncio.Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None

    def write(self, data: bytes) -> None:
        head = self._head
        if head is not None:
            self._head = None
            self._transport.write(head + data)
            return
        cycle = self._cycle
        if (
            cycle.response_started
            and cycle.chunked_encoding is False  # a Content-Length, so a body follows
            and cycle.expected_content_length > 0
            and cycle.scope["method"] != "HEAD"  # uvicorn writes no body for a HEAD
        ):
            self._head = data
            return
        self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def _flush(self) -> None:
        head, self._head = self._head, None
        if head is not None and not self._transport.is_closing():
            self._transport.write(head)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def protocol_for(limits: HttpLimits, on_refused: Callable[[int], None]) -> type[HubHttpProtocol]:
    """``HubHttpProtocol`` with these limits (uvicorn builds one per connection)."""
    attributes = {"limits": limits, "on_refused": staticmethod(on_refused)}
    return type("HubHttpProtocol", (HubHttpProtocol,), attributes)


def uvicorn_options(app: FastAPI) -> dict[str, Any]:
    """What ``hub serve`` (and the tests' servers) give ``uvicorn.run`` besides the app,
    host and port: the protocol with the app's limits and metrics; the hub's own
    logging, no access log (the app logs each request), no ``server`` header."""
    api = app.state.api

    def count(status: int) -> None:
        api.metrics.requests.labels("unmatched", str(status)).inc()

    return {
        "http": protocol_for(api.limits, count),
        "log_config": None,
        "access_log": False,
        "server_header": False,
        "timeout_graceful_shutdown": 5,
    }
