"""Around every request: its id, its metrics and log line, and a JSON 500 without any
trace for whatever no error handler caught."""

from __future__ import annotations

import time
import uuid
from typing import Any

import structlog

from services.api.errors import error_response
from services.api.metrics import ApiMetrics

log = structlog.get_logger("hub.api")
MAX_REQUEST_ID = 64


class RequestContext:
    """Request id (``x-request-id``, echoed or made), Prometheus counts by route and
    status, a structured log line per request; an unexpected error becomes a JSON
    500 naming only the request id.

    A plain ASGI middleware: Starlette's ``BaseHTTPMiddleware`` costs a task and a
    stream per request."""

    def __init__(self, app: Any, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

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
            request_id = uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        responded = False

        async def send_with_id(message: Any) -> None:
            nonlocal status, responded
            if message["type"] == "http.response.start":
                status, responded = message["status"], True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode("ascii")),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
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
            self.metrics.requests.labels(path, str(status)).inc()
            self.metrics.latency.labels(path).observe(elapsed)
            log.info(
                "request",
                method=scope["method"],
                route=path,
                status=status,
                ms=round(elapsed * 1000, 1),
            )
            structlog.contextvars.unbind_contextvars("request_id")
