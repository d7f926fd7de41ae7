"""The pages for people (issue 15): the auditor's case timeline (``/audit``,
``/audit/cases/{id}``) and an agency's inbox and case page (``/inbox``,
``/inbox/cases/{id}``).

Plain HTML with small JavaScript modules that call the same JSON API as every
other client, with the bearer token kept in the tab's session storage. No inline
script or style: everything a page loads comes from ``/assets/``, so a
``Content-Security-Policy: default-src 'self'`` holds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, Response

from services.api.errors import ApiError

router = APIRouter()
STATIC = Path(__file__).parent / "static"
# Served by name only (no paths): what the pages load, with its media type.
ASSETS = {
    "pages.css": "text/css; charset=utf-8",
    "labels.json": "application/json",
    "common.js": "text/javascript; charset=utf-8",
    "audit.js": "text/javascript; charset=utf-8",
    "inbox.js": "text/javascript; charset=utf-8",
    "case.js": "text/javascript; charset=utf-8",
    "details.js": "text/javascript; charset=utf-8",
    "actions.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# The pages change with a release; a browser asks again rather than keep an old one.
NO_STORE = {"Cache-Control": "no-cache"}
AnyCase = Annotated[str, PathParam(max_length=64, description="a case id")]


def _page(name: str) -> HTMLResponse:
    return HTMLResponse((STATIC / name).read_text(encoding="utf-8"), headers=NO_STORE)


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
async def audit_search_page() -> HTMLResponse:
    return _page("audit.html")


@router.get("/audit/cases/{case_id}", response_class=HTMLResponse, include_in_schema=False)
async def audit_case_page(case_id: AnyCase) -> HTMLResponse:
    # The page reads the id from its address; the API decides whether it exists.
    return _page("audit.html")


@router.get("/inbox", response_class=HTMLResponse, include_in_schema=False)
async def inbox_page() -> HTMLResponse:
    return _page("inbox.html")


@router.get("/inbox/cases/{case_id}", response_class=HTMLResponse, include_in_schema=False)
async def agency_case_page(case_id: AnyCase) -> HTMLResponse:
    return _page("case.html")


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, "not_found", "no such asset")
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=NO_STORE)
