"""Every error answer is ``{"error": {"code", "message", "details"}}``: 401 no or bad
token, 403 not this caller's, 404 unknown (to an agency, also a case it is not
involved in), 405 with ``Allow``, 408 too slow, 409 a rule refused, 413 too large,
415 not JSON, 422 malformed, 429 too many bad tokens (431, 400 and a head's 408 come
from ``server``). Never a stack trace to a client (``middleware`` answers what
escapes)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from domain.errors import DomainError
from services.errors import CaseNotFound, NotAllowed, ServiceError
from services.messages import MessageInvalid
from services.metrics import HTTP

# ---- what the OpenAPI document promises (schemathesis checks answers against it) ----


class ErrorDetail(BaseModel):
    code: str = Field(description="stable machine-readable code, e.g. consent_missing")
    message: str
    details: Any = None


class ErrorBody(BaseModel):
    """Every error answer: ``{"error": {"code", "message", "details"}}``."""

    error: ErrorDetail


_MEANINGS = {
    401: "no or unknown bearer token",
    403: "not allowed for this caller",
    404: "unknown case (to an agency: also a case it is not involved in)",
    408: "the body did not arrive within the read timeout",
    409: "a rule refused the message (code names the rule)",
    413: "message larger than 64 KiB",
    415: "the body is not Content-Type: application/json",
    422: "malformed JSON, schema errors or invalid parameters (details name the field)",
    429: "too many bad tokens from this client: wait for Retry-After seconds",
}


def documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses`` of a route that can answer ``statuses`` with an error. A
    route that authenticates (401) can also refuse a bad ``X-Hub-User`` (422) and a
    client that sent too many bad tokens (429)."""
    if 401 in statuses:
        statuses = (*statuses, *(s for s in (422, 429) if s not in statuses))
    return {status: {"model": ErrorBody, "description": _MEANINGS[status]} for status in statuses}


READ_ERRORS = documented(401, 403, 404, 422)

# ---- raising and rendering ----------------------------------------------------------


class ApiError(Exception):
    """A refusal decided by the HTTP layer itself (authentication, size, parameters)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.details = status, code, message, details
        self.headers = headers


class ErrorResponse(JSONResponse):
    """An error answer that remembers its code (``hub_refusals_total`` counts by it)."""

    code = ""


def error_response(
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    response = ErrorResponse(
        {"error": {"code": code, "message": message, "details": details}},
        status_code=status,
        headers=headers,
    )
    response.code = code
    return response


def status_of(error: DomainError | ServiceError) -> int:
    if isinstance(error, NotAllowed):
        return 403
    if isinstance(error, CaseNotFound):
        return 404
    return 409  # a rule refused, an unknown agency, a conflict


async def _api_error(_: Request, error: ApiError) -> JSONResponse:
    return error_response(error.status, error.code, error.message, error.details, error.headers)


async def _refusal(_: Request, error: DomainError | ServiceError) -> JSONResponse:
    return error_response(status_of(error), error.code, error.message, error.details or None)


async def _message_invalid(_: Request, error: MessageInvalid) -> JSONResponse:
    status = 413 if error.code == "too_large" else 422
    return error_response(status, error.code, error.message, error.details)


async def _request_invalid(_: Request, error: RequestValidationError) -> JSONResponse:
    details = [
        {"path": ".".join(str(p) for p in e["loc"]), "problem": e["msg"], "kind": e["type"]}
        for e in error.errors()
    ]
    return error_response(422, "invalid_request", "the request's parameters are invalid", details)


async def _http_error(_: Request, error: StarletteHTTPException) -> JSONResponse:
    code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
    # Starlette names the allowed methods of a 405 in ``Allow``: keep its headers.
    return error_response(error.status_code, code, str(error.detail), headers=error.headers)


Handler = Callable[[Request, Any], Awaitable[JSONResponse]]


def _counted(handler: Handler) -> Handler:
    """``handler``, counting its answer in ``hub_refusals_total{entrypoint="http"}``."""

    async def handle(request: Request, error: Any) -> JSONResponse:
        response = await handler(request, error)
        api = getattr(request.app.state, "api", None)
        if api is not None and isinstance(response, ErrorResponse):
            api.metrics.refusals.labels(HTTP, response.code).inc()
        return response

    return handle


def install_error_handlers(app: FastAPI) -> None:
    """Render every known refusal in the one error shape."""
    app.add_exception_handler(ApiError, _counted(_api_error))
    app.add_exception_handler(DomainError, _counted(_refusal))
    app.add_exception_handler(ServiceError, _counted(_refusal))
    app.add_exception_handler(MessageInvalid, _counted(_message_invalid))
    app.add_exception_handler(RequestValidationError, _counted(_request_invalid))
    app.add_exception_handler(StarletteHTTPException, _counted(_http_error))
