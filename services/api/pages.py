"""The pages for people (issue 15): the auditor's case timeline (``/audit``,
``/audit/cases/{id}``) and an agency's inbox and case page (``/inbox``,
``/inbox/cases/{id}``).

Plain HTML with small JavaScript modules that call the same JSON API as every
other client, with the bearer token kept in the tab's session storage. No inline
script or style: everything a page loads comes from ``/assets/``, so a
``Content-Security-Policy: default-src 'self'`` holds. One shell
(``static/page.html``: the head, header and sign-in form) holds each page's own
content (``static/{page}.content.html``); ``PAGES`` says what else tells them apart.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Page:
    """What tells one page apart inside the shell (``static/page.html``): its title,
    its script and labels' name (``{page}.js``, ``title.{page}``), the help under the
    token field, whether it asks for a user id, and its content
    (``static/{page}.content.html``)."""

    page: str
    title: str
    token: str  # the help's label key: tokenHelp.<token>
    token_help: str
    asks_user: bool


_AGENCY_HELP = "Das Token Ihrer Stelle aus „hub agency token“."
_AUDITOR_HELP = "Ein Prüfer-Token aus „hub token auditor“."
PAGES = {
    page.page: page
    for page in (
        Page("audit", "Übergabe-Hub: Prüfung", "audit", _AUDITOR_HELP, asks_user=False),
        Page("inbox", "Übergabe-Hub: Posteingang", "inbox", _AGENCY_HELP, asks_user=True),
        Page("case", "Übergabe-Hub: Fall", "inbox", _AGENCY_HELP, asks_user=True),
    )
}
_USER_FIELD = re.compile(r"\n *<!-- user:.*?<!-- /user -->", re.S)


def render(page: Page) -> str:
    """The page: the shell with its parts filled in (no value a request brings)."""
    shell = (STATIC / "page.html").read_text(encoding="utf-8")
    shell = re.sub(r"\n<!-- The pages' shell.*?-->", "", shell, flags=re.S)
    shell = (
        re.sub(r"\n *<!-- /?user[^>]*-->", "", shell)
        if page.asks_user
        else _USER_FIELD.sub("", shell)
    )
    content = (STATIC / f"{page.page}.content.html").read_text(encoding="utf-8")
    parts = {
        "page": page.page,
        "title": page.title,
        "token": page.token,
        "token_help": page.token_help,
        "content": content,
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda m: parts[m.group(1)], shell)


def _page(name: str) -> HTMLResponse:
    return HTMLResponse(render(PAGES[name]), headers=NO_STORE)


@router.get("/audit", response_class=HTMLResponse, include_in_schema=False)
async def audit_search_page() -> HTMLResponse:
    return _page("audit")


@router.get("/audit/cases/{case_id}", response_class=HTMLResponse, include_in_schema=False)
async def audit_case_page(case_id: AnyCase) -> HTMLResponse:
    # The page reads the id from its address; the API decides whether it exists.
    return _page("audit")


@router.get("/inbox", response_class=HTMLResponse, include_in_schema=False)
async def inbox_page() -> HTMLResponse:
    return _page("inbox")


@router.get("/inbox/cases/{case_id}", response_class=HTMLResponse, include_in_schema=False)
async def agency_case_page(case_id: AnyCase) -> HTMLResponse:
    return _page("case")


@router.get("/assets/{name}", include_in_schema=False)
async def asset(name: str) -> Response:
    media_type = ASSETS.get(name)
    if media_type is None:
        raise ApiError(404, "not_found", "no such asset")
    return Response((STATIC / name).read_bytes(), media_type=media_type, headers=NO_STORE)
