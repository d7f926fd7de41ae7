"""The HTTP API of API.md (FastAPI): agencies post messages and read their views,
auditors read everything, the dashboard page reads ``/v1/dashboard``.

Errors are always ``{"error": {"code", "message", "details"}}``: 401 no or bad
token, 403 not this caller's, 404 unknown, 409 a rule refused, 413 too large,
422 malformed. Never a stack trace to a client.
"""

import asyncio
import contextvars
import hmac
import math
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import DomainError
from services.access import Principal, ReadService
from services.api.metrics import ApiMetrics
from services.application import hash_token
from services.bootstrap import Hub
from services.errors import (
    CaseNotFound,
    NotAllowed,
    ServiceError,
)
from services.messages import (
    MAX_MESSAGE_BYTES,
    MESSAGE_ADAPTER,
    MessageInvalid,
    message_json_schema,
    parse_message,
)

log = structlog.get_logger("hub.api")
STATIC = Path(__file__).parent / "static"


# ---- what the OpenAPI document promises (schemathesis checks answers against it) ----


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. consent_missing")
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


class MessageResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    message_id: str
    case_id: str
    type: str
    position: int
    handover_id: str | None = None
    duplicate: bool


def _errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    words = {
        401: "no or unknown bearer token",
        403: "not allowed for this caller",
        404: "unknown case",
        409: "a rule refused the message (code names the rule)",
        413: "message larger than 64 KiB",
        422: "malformed JSON, schema errors or invalid parameters (details name the field)",
    }
    return {status: {"model": ErrorBody, "description": words[status]} for status in statuses}


READ_ERRORS = _errors(401, 403, 404, 422)
# Agency ids as the message schema defines them; anything else cannot name an agency.
AGENCY_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{1,63}$"
AgencyPath = Annotated[str, PathParam(pattern=AGENCY_ID_PATTERN, description="an agency id")]
TOKEN_CACHE_SECONDS = 5.0
TOKEN_CACHE_SIZE = 10_000
bearer = HTTPBearer(auto_error=False, description="a token from hub agency add / hub token auditor")


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details


def _error(status: int, code: str, message: str, details: Any = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message, "details": details}}, status_code=status
    )


def _status_of(error: DomainError | ServiceError) -> int:
    if isinstance(error, NotAllowed):
        return 403
    if isinstance(error, CaseNotFound):
        return 404
    return 409  # a rule refused, an unknown agency, a conflict


def create_app(  # noqa: PLR0915 - one closure per route keeps the app self-contained
    hub: Hub, *, read_your_writes_timeout: float = 2.0, start_views: bool = True
) -> FastAPI:
    reads = ReadService(hub.app, hub.queries, hub.messages, hub.view_store, hub.cipher)
    metrics = ApiMetrics()
    watch = ViewsWatch(hub.views)

    async def views_reach(position: int) -> bool:
        """Read-your-writes: True once every view shows ``position`` (bounded wait)."""
        if not start_views:  # no live runner: the runner catches up in this thread
            return await _in_thread(hub.views.wait_for, position, read_your_writes_timeout)
        return await watch.wait_for(position, read_your_writes_timeout)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if start_views:
            hub.views.start()
        yield
        hub.views.stop()

    app = FastAPI(
        title="Handover hub",
        version="1",
        description="Agencies record handover messages and read their views; auditors "
        "read every case's history. Errors: {error: {code, message, details}}.",
        lifespan=lifespan,
    )

    # ---- cross-cutting ---------------------------------------------------------

    # A plain ASGI middleware (Starlette's BaseHTTPMiddleware costs a task and a
    # stream per request): request id, metrics by route and status, one log line,
    # and a JSON 500 without any trace for whatever nothing else caught.
    app.add_middleware(RequestContext, metrics=metrics)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, error.code, error.message, error.details)

    @app.exception_handler(DomainError)
    async def domain_error(_: Request, error: DomainError) -> JSONResponse:
        return _error(_status_of(error), error.code, error.message, error.details or None)

    @app.exception_handler(ServiceError)
    async def service_error(_: Request, error: ServiceError) -> JSONResponse:
        return _error(_status_of(error), error.code, error.message, error.details or None)

    @app.exception_handler(MessageInvalid)
    async def message_invalid(_: Request, error: MessageInvalid) -> JSONResponse:
        status = 413 if error.code == "too_large" else 422
        return _error(status, error.code, error.message, error.details)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, error: RequestValidationError) -> JSONResponse:
        details = [
            {"path": ".".join(str(p) for p in e["loc"]), "problem": e["msg"], "kind": e["type"]}
            for e in error.errors()
        ]
        return _error(422, "invalid_request", "the request's parameters are invalid", details)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        return _error(error.status_code, code, str(error.detail))

    # ---- authentication ----------------------------------------------------------

    known: dict[str, tuple[float, Principal]] = {}  # token hash -> (valid until, who)

    async def authenticate(request: Request) -> Principal:
        """The caller of ``request``: 401 without a valid bearer token."""
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(401, "unauthenticated", "send Authorization: Bearer <token>")
        presented = hash_token(token.strip())
        now = time.monotonic()
        cached = known.get(presented)
        if cached is not None and cached[0] > now:
            return cached[1]
        record = await _in_thread(hub.app.store.find_token, presented)
        # Only hashes are stored and looked up; the final comparison is constant-time.
        if record is None or not hmac.compare_digest(record.token_hash, presented):
            raise ApiError(401, "unauthenticated", "the token is not valid")
        who = Principal(role=record.role, subject=record.subject, name=record.name)
        if len(known) >= TOKEN_CACHE_SIZE:
            known.clear()
        # Remembered briefly: one store read per token every few seconds, not per request.
        known[presented] = (now + TOKEN_CACHE_SECONDS, who)
        return who

    async def principal(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        # ``bearer`` only documents the scheme in OpenAPI; the header is read here.
        return await authenticate(request)

    Caller = Annotated[Principal, Depends(principal)]
    # The same scheme as ``bearer`` documents, for the one route that authenticates
    # in its body (solving the dependencies cost about 35 µs per message).
    bearer_security = [{bearer.scheme_name: []}]

    # ---- messages ------------------------------------------------------------------

    @app.post(
        "/v1/messages",
        status_code=201,
        response_model=MessageResult,
        responses={
            200: {"model": MessageResult, "description": "duplicate: the first result"},
            202: {"model": MessageResult, "description": "recorded; the views still lag"},
            **_errors(401, 403, 404, 409, 413, 422),
        },
        openapi_extra={
            "security": bearer_security,
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Message"}}
                },
            },
        },
    )
    async def post_message(request: Request) -> JSONResponse:
        # Authentication first, as the ``Caller`` dependency of the other routes does.
        caller = await authenticate(request)
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_MESSAGE_BYTES:
            raise ApiError(413, "too_large", f"a message is at most {MAX_MESSAGE_BYTES} bytes")
        body = await _read_limited(request, MAX_MESSAGE_BYTES)
        message = parse_message(body)
        if caller.is_auditor:
            result = await _in_thread(_record_as_auditor, hub, message)
        elif message.agency != caller.subject:
            raise ApiError(
                403, "agency_mismatch", f"this token sends only as agency {caller.subject}"
            )
        else:
            result = await _in_thread(hub.messages.record, message)
        if result["duplicate"]:
            return JSONResponse(result, status_code=200)
        metrics.messages.labels(message.type).inc()
        caught_up = await views_reach(result["position"])
        return JSONResponse(result, status_code=201 if caught_up else 202)

    # ---- reads -----------------------------------------------------------------------

    @app.get("/v1/agencies/{agency_id}/inbox", responses=READ_ERRORS)
    async def inbox(agency_id: AgencyPath, caller: Caller) -> dict[str, Any]:
        return await _in_thread(reads.inbox, caller, agency_id)

    @app.get("/v1/agencies/{agency_id}/cases", responses=READ_ERRORS)
    async def caseload(
        agency_id: AgencyPath,
        caller: Caller,
        limit: Annotated[int, Query(ge=1, le=1000, description="page size")] = 200,
        after: Annotated[
            uuid.UUID | None, Query(description="the `next` of the previous page")
        ] = None,
    ) -> dict[str, Any]:
        return await _in_thread(
            reads.caseload, caller, agency_id, limit, str(after) if after else None
        )

    @app.get("/v1/cases/{case_id}", responses=READ_ERRORS)
    async def case(case_id: uuid.UUID, caller: Caller) -> dict[str, Any]:
        return await _in_thread(reads.case, caller, str(case_id))

    @app.get("/v1/cases/{case_id}/history", responses=READ_ERRORS)
    async def history(
        case_id: uuid.UUID,
        caller: Caller,
        as_of: Annotated[datetime | None, Query(description="ISO 8601 with timezone")] = None,
    ) -> dict[str, Any]:
        if as_of is not None and as_of.tzinfo is None:
            raise ApiError(422, "invalid_request", "as_of needs a timezone")
        # Items come from the event store, their hash and legal basis from the audit
        # view: let the view reach what is recorded now (e.g. the caller's own earlier
        # read), or those fields would be missing for the newest events.
        await views_reach(await _in_thread(hub.app.recorder.max_notification_id) or 0)
        return await _in_thread(reads.history, caller, str(case_id), as_of)

    @app.get("/v1/audit/verify", responses=_errors(401, 403))
    async def audit_verify(caller: Caller) -> dict[str, Any]:
        if not caller.is_auditor:
            raise ApiError(403, "forbidden", "only auditors verify the audit trail")
        # Verify up to what is recorded now (e.g. the auditor's own reads just before),
        # not against an audit view that is still applying them.
        await views_reach(await _in_thread(hub.app.recorder.max_notification_id) or 0)
        return await _in_thread(reads.verify, caller)

    @app.get("/v1/dashboard", responses=_errors(401))
    async def dashboard(caller: Caller) -> dict[str, Any]:
        return await _in_thread(reads.dashboard, caller)

    @app.get("/v1/schema/messages")
    async def schema() -> dict[str, Any]:
        return message_json_schema()

    # ---- operations and the page -----------------------------------------------------------

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
    )
    async def prometheus() -> Response:
        head = hub.app.recorder.max_notification_id() or 0
        for view, position in hub.views.positions().items():
            metrics.lag.labels(view).set(head - position)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
    async def dashboard_page() -> HTMLResponse:
        return HTMLResponse((STATIC / "dashboard.html").read_text(encoding="utf-8"))

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            # The message body is read raw (size limit, our own error answers), so its
            # schema is added by hand: the same JSON Schema as /v1/schema/messages.
            messages = MESSAGE_ADAPTER.json_schema(ref_template="#/components/schemas/{model}")
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(messages.pop("$defs", {}))
            components["Message"] = messages
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


class RequestContext:
    """Request id (``x-request-id``, echoed or made), Prometheus counts by route and
    status, a structured log line per request; an unexpected error becomes a JSON
    500 naming only the request id."""

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
        if not request_id or len(request_id) > 64 or not request_id.isascii():
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
                failed = _error(500, "internal_error", "the hub failed; the request id names it")
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


class ViewsWatch:
    """Read-your-writes for many requests at once.

    Each request that just recorded waits here, on the event loop, for the views to
    reach its position. One poller on the loop wakes every request the views now
    cover. It looks first at the position this process's live runner announced after
    its last commit (memory, no query). The view tables are read, from a worker
    thread, only while that is behind a waiter, and at most every ``read_every``
    seconds: they answer for what another process's runner applied. Reading them on
    every poll, as before, cost about as many store transactions as recording the
    messages themselves did.
    """

    def __init__(self, views: Any, interval: float = 0.001, read_every: float = 0.02) -> None:
        self._views = views
        self._interval = interval
        self._read_every = read_every
        self._waiters: list[tuple[int, asyncio.Future[bool]]] = []
        self._poller: asyncio.Task[None] | None = None
        self._read_at = -math.inf  # when the view tables were last read

    def _announced(self) -> int | None:
        """What this process's runner last committed, or None when it does not say.

        ``ViewRunner`` keeps it for its own ``wait_for``; from a runner that does not,
        the tables are read at every other poll instead (the same answers, more
        queries)."""
        value = getattr(self._views, "applied_position", None)
        return value if isinstance(value, int) else None

    async def wait_for(self, position: int, timeout: float) -> bool:
        if position <= 0:
            return True
        announced = self._announced()
        if announced is not None and announced >= position:
            return True
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiters.append((position, future))
        self._views.notify()  # wake the live runner now rather than at its poll
        if self._poller is None or self._poller.done() or self._poller.get_loop() is not loop:
            self._poller = loop.create_task(self._poll())
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False

    async def _poll(self) -> None:
        while self._waiters:
            reached = self._announced()
            lowest = min(position for position, _ in self._waiters)
            read_every = self._read_every if reached is not None else 2 * self._interval
            now = time.monotonic()
            if (reached is None or reached < lowest) and now - self._read_at >= read_every:
                self._read_at = now
                try:
                    stored = await _in_thread(self._views.position)
                except Exception:
                    log.exception("views_position_failed")
                    await asyncio.sleep(0.05)
                    continue
                reached = stored if reached is None else max(reached, stored)
            if reached is not None:
                # Requests may have come (and timed out) while the tables were read.
                still = []
                for position, future in self._waiters:
                    if future.done():
                        continue
                    if position <= reached:
                        future.set_result(True)
                    else:
                        still.append((position, future))
                self._waiters = still
            if self._waiters:
                await asyncio.sleep(self._interval)


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it grows past ``limit`` (chunked uploads
    carry no Content-Length, so the header check alone does not bound memory)."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "too_large", f"a message is at most {limit} bytes")
    return bytes(body)


def _record_as_auditor(hub: Hub, message: Any) -> dict[str, Any]:
    """Auditors send only ``participant.erased`` (agency "auditor"); the service checks."""
    return hub.messages.record(message, as_auditor=True)


# Store calls block: they run on these threads, off the event loop. A plain executor
# rather than ``starlette.concurrency.run_in_threadpool``: anyio's hop took about 10 µs
# more event-loop time per call. Threads start on demand and end with the process.
_THREADS = ThreadPoolExecutor(max_workers=40, thread_name_prefix="hub-api")


async def _in_thread(function: Any, *args: Any) -> Any:
    """Run a blocking call on a worker thread, with this request's context (the
    request id in log lines)."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    return await loop.run_in_executor(_THREADS, context.run, function, *args)
