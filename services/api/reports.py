"""``GET /v1/cases/{case_id}/subject-report``: the participant's access report
(Art. 15 GDPR), JSON by default, ``format=html`` for the printable German page."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from services.api.auth import Caller
from services.api.context import api_of
from services.api.errors import READ_ERRORS
from services.api.reads import unless_uninvolved
from services.subject_report import render_html

router = APIRouter()
# Personal data: no cache on the way may keep a copy.
NO_STORE = {"Cache-Control": "no-store"}


@router.get(
    "/v1/cases/{case_id}/subject-report",
    responses={
        **READ_ERRORS,
        200: {
            "description": "the report: JSON (format=json) or a printable German page (html)",
            "content": {"application/json": {}, "text/html": {}},
        },
    },
    response_class=JSONResponse,
)
async def subject_report(
    case_id: uuid.UUID,
    caller: Caller,
    request: Request,
    format: Annotated[  # noqa: A002 - the query parameter's name in the contract
        Literal["json", "html"], Query(description="json (default) or html")
    ] = "json",
) -> Response:
    """The case's current lead agency or an auditor; the request is recorded as a read."""
    api = api_of(request)
    report: dict[str, Any] = await unless_uninvolved(
        case_id, api.blocking.run(api.reads.subject_report, caller, str(case_id))
    )
    if format == "html":
        # Off the event loop: a long case's page is tens of milliseconds of string work.
        page = await api.blocking.run(render_html, report)
        return HTMLResponse(page, headers=NO_STORE)
    return JSONResponse(report, headers=NO_STORE)
