"""Around every request: its id, its metrics and log line, the security headers, and
a JSON 500 without any trace for whatever no error handler caught."""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

import structlog
from starlette.requests import ClientDisconnect

from services.api.errors import error_response
from services.api.metrics import ApiMetrics

log = structlog.get_logger("hub.api")
# A made request id: 16 random hex digits per process, then a count (32 in all, as a
# UUID's hex was). ``uuid4`` per request read the OS's random source each time, and
# that call lets go of the interpreter lock: on a busy server the event loop then
# waited behind the worker threads to get it back (about 100 µs a request).
_ID_PREFIX = os.urandom(8).hex()
_ID_COUNT = itertools.count(1)


def _new_id_prefix() -> None:
    """A forked child makes ids of its own, not its parent's next ones."""
    global _ID_PREFIX, _ID_COUNT
    _ID_PREFIX, _ID_COUNT = os.urandom(8).hex(), itertools.count(1)


os.register_at_fork(after_in_child=_new_id_prefix)


def made_request_id() -> str:
    return f"{_ID_PREFIX}{next(_ID_COUNT):016x}"


MAX_REQUEST_ID = 64
# The status counted for a request whose client went away before it was answered
# (nginx's "client closed request"): not the server's failure, so not a 5xx.
CLIENT_CLOSED = 499

# On every answer: no content sniffing (a JSON body is never run as a script).
ALWAYS = ((b"x-content-type-options", b"nosniff"),)
# On every HTML answer: the page's code only from the hub itself, no inline code, no
# frames around it, no Referer leaving it (a token may sit in a demo link's query).
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HTML_ONLY = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode("ascii")),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)


def _security_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    for name, value in headers:
        if name.lower() == b"content-type" and value.startswith(b"text/html"):
            return [*ALWAYS, *HTML_ONLY]
    return list(ALWAYS)


class RequestContext:
    """Request id (``x-request-id``, echoed or made), Prometheus counts by route and
    status, a structured log line per request, the security headers; an unexpected
    error becomes a JSON 500 naming only the request id. A client that went away
    while its body was read is logged and counted as such (499), not as a failure.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task and a
    stream per request."""

    def __init__(
        self, app: Any, metrics: ApiMetrics, direct: dict[tuple[str, str], Any] | None = None
    ) -> None:
        self.app = app
        self.metrics = metrics
        # (method, path) -> an ASGI app that answers it past the router (``messages``).
        self.direct = direct or {}
        # The metrics' children per (route, status): ``labels`` takes a lock and builds
        # its key on every call. Bounded: the routes and statuses are few.
        self._children: dict[tuple[str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = ""
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                request_id = value.decode("latin-1")
                break
        if not request_id or len(request_id) > MAX_REQUEST_ID or not request_id.isascii():
            request_id = made_request_id()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        responded = False

        async def send_with_id(message: Any) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                headers = list(message.get("headers", []))
                message["headers"] = [
                    *headers,
                    *_security_headers(headers),
                    (b"x-request-id", request_id.encode("ascii")),
                ]
            await send(message)

        app = self.app
        if self.direct and not scope.get("root_path"):
            app = self.direct.get((scope["method"], scope["path"]), app)
        try:
            await app(scope, receive, send_with_id)
        except ClientDisconnect:
            # Nobody is left to answer; the body was never complete, nothing was done.
            if not responded:
                status = CLIENT_CLOSED
            log.info("client_disconnected", method=scope["method"])
        except Exception:
            log.exception("request_failed", method=scope["method"])
            if not responded:
                failed = error_response(
                    500, "internal_error", "the hub failed; the request id names it"
                )
                await failed(scope, receive, send_with_id)
        finally:
            path = getattr(scope.get("route"), "path", "unmatched")
            elapsed = time.perf_counter() - started
            children = self._children.get((path, status))
            if children is None:
                children = self._children[(path, status)] = (
                    self.metrics.requests.labels(path, str(status)),
                    self.metrics.latency.labels(path),
                )
            children[0].inc()
            children[1].observe(elapsed)
            log.info(
                "request",
                method=scope["method"],
                route=path,
                status=status,
                ms=round(elapsed * 1000, 1),
            )
            structlog.contextvars.unbind_contextvars("request_id")
