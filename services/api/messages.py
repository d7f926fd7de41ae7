"""``POST /v1/messages`` (one handover message, read-your-writes) and the message
schema agencies validate against."""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from services.access import Principal
from services.api.auth import BEARER_SECURITY
from services.api.context import ApiContext, api_of
from services.api.errors import ApiError, documented
from services.messages import MAX_MESSAGE_BYTES, Message, message_json_schema, parse_message
from services.metrics import HTTP

router = APIRouter()


class MessageResult(BaseModel):
    model_config = ConfigDict(extra="allow")

    message_id: str
    case_id: str
    type: str
    position: int
    handover_id: str | None = None
    duplicate: bool


@router.post(
    "/v1/messages",
    status_code=201,
    response_model=MessageResult,
    responses={
        200: {"model": MessageResult, "description": "duplicate: the first result"},
        202: {"model": MessageResult, "description": "recorded; the views still lag"},
        **documented(401, 403, 404, 408, 409, 413, 415, 422),
    },
    openapi_extra={
        "security": BEARER_SECURITY,
        # The body is read raw (size limit, our own error answers); ``openapi`` adds
        # the schema it refers to.
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Message"}}},
        },
    },
)
async def post_message(request: Request) -> JSONResponse:
    api = api_of(request)
    # Authentication first, as the ``Caller`` dependency of the other routes does.
    caller = await api.auth.caller_of(request)
    _require_json(request)
    body = await _read_limited(request, MAX_MESSAGE_BYTES, api.limits.read_timeout)
    message = parse_message(body)
    result = await _record(api, caller, message)
    api.metrics.recorded(HTTP, message.type, duplicate=result["duplicate"])
    if result["duplicate"]:
        return JSONResponse(result, status_code=200)
    caught_up = await api.views.reach(result["position"])
    return JSONResponse(result, status_code=201 if caught_up else 202)


async def post_message_direct(scope: Scope, receive: Receive, send: Send) -> None:
    """``POST /v1/messages`` as a plain ASGI app, which ``middleware`` calls for it
    instead of the router: what the router, FastAPI's request wrapper (two exit
    stacks, a dependency solve, two exception wrappers) and the exception middleware
    did for this route, without their layers (about a quarter of the event loop's
    Python time per message, ``docs/http-performance.md``). The same answers: the
    app's own exception handlers render every refusal, as the exception middleware
    looks them up; anything else goes on to ``middleware``'s 500."""
    scope["route"], scope["endpoint"], scope["path_params"] = _ROUTE, post_message, {}
    request = Request(scope, receive, send)
    try:
        response: Response = await post_message(request)
    except Exception as error:
        handler = _handler_for(request.app.exception_handlers, error)
        if handler is None:
            raise
        response = await handler(request, error)
    await response(scope, receive, send)


def _handler_for(handlers: dict[Any, Any], error: Exception) -> Any:
    """The handler ``starlette``'s exception middleware would pick for ``error``: by
    status for an HTTP exception, else by class; ``Exception`` itself is the server
    error middleware's (here: ``middleware``'s 500)."""
    if isinstance(error, StarletteHTTPException) and error.status_code in handlers:
        return handlers[error.status_code]
    for cls in type(error).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None


@router.get("/v1/schema/messages")
async def schema() -> dict[str, Any]:
    return message_json_schema()


_ROUTE = next(r for r in router.routes if isinstance(r, APIRoute) and r.endpoint is post_message)
# Where ``middleware`` sends a request past the router.
DIRECT = {("POST", "/v1/messages"): post_message_direct}


def _require_json(request: Request) -> None:
    """415 unless the body is declared JSON (parameters such as ``charset`` aside):
    a form or a text the client did not mean as a message is not parsed as one."""
    declared = request.headers.get("content-type", "")
    if declared.partition(";")[0].strip().lower() != "application/json":
        raise ApiError(
            415, "unsupported_media_type", "send a message as Content-Type: application/json"
        )


async def _read_limited(request: Request, limit: int, timeout: float) -> bytes:
    """The body, refused with 413 as soon as it is known to be larger than ``limit``:
    by its Content-Length, or while it streams (chunked uploads carry none, so the
    header check alone does not bound memory); 408 when it has not all arrived
    within ``timeout`` seconds."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise _too_large(limit)
    except TimeoutError:
        raise ApiError(
            408, "request_timeout", f"the request's body did not arrive within {timeout:g} s"
        ) from None
    return bytes(body)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"a message is at most {limit} bytes")


async def _record(api: ApiContext, caller: Principal, message: Message) -> dict[str, Any]:
    """Agencies send as themselves; auditors send only ``participant.erased`` (the
    service checks that). A caller with a user (its token's, or X-Hub-User for an
    agency-wide token) sends only as that user: the recorded actor is the user."""
    if caller.user is not None and message.actor != caller.user:
        raise ApiError(
            403, "actor_mismatch", "the message's actor must be the user this token acts for"
        )
    if caller.is_auditor:
        return await api.blocking.run(partial(api.messages.record, message, as_auditor=True))
    if message.agency != caller.subject:
        raise ApiError(403, "agency_mismatch", f"this token sends only as agency {caller.subject}")
    return await api.blocking.run(api.messages.record, message)
