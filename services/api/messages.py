"""``POST /v1/messages`` (one handover message, read-your-writes) and the message
schema agencies validate against."""

from __future__ import annotations

from functools import partial
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

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
        **documented(401, 403, 404, 409, 413, 422),
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
    message = parse_message(await _read_limited(request, MAX_MESSAGE_BYTES))
    result = await _record(api, caller, message)
    api.metrics.recorded(HTTP, message.type, duplicate=result["duplicate"])
    if result["duplicate"]:
        return JSONResponse(result, status_code=200)
    caught_up = await api.views.reach(result["position"])
    return JSONResponse(result, status_code=201 if caught_up else 202)


@router.get("/v1/schema/messages")
async def schema() -> dict[str, Any]:
    return message_json_schema()


async def _read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be larger than ``limit``:
    by its Content-Length, or while it streams (chunked uploads carry none, so the
    header check alone does not bound memory)."""
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise _too_large(limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise _too_large(limit)
    return bytes(body)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, "too_large", f"a message is at most {limit} bytes")


async def _record(api: ApiContext, caller: Principal, message: Message) -> dict[str, Any]:
    """Agencies send as themselves; auditors send only ``participant.erased`` (the
    service checks that)."""
    if caller.is_auditor:
        return await api.blocking.run(partial(api.messages.record, message, as_auditor=True))
    if message.agency != caller.subject:
        raise ApiError(403, "agency_mismatch", f"this token sends only as agency {caller.subject}")
    return await api.blocking.run(api.messages.record, message)
