"""The dashboard's figures (``/v1/dashboard``) and the page that shows them.

The page is static: ``dashboard.html`` with its script and style sheet beside it
(no inline script or style, so a Content-Security-Policy of ``default-src 'self'``
holds). It reads ``/v1/dashboard`` with the token typed into its form.
"""

from __future__ import annotations

import threading
import time
import weakref
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

from projections.dashboard import named_agencies
from services.access import Principal, agency_entry
from services.api.auth import Caller
from services.api.context import ApiContext, api_of
from services.api.errors import documented
from services.api.models import Dashboard, typed

router = APIRouter()
STATIC = Path(__file__).parent / "static"
PAGE = STATIC / "dashboard.html"
# The page's files, each at its own path (no directory is served).
ASSETS = {
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "dashboard-icon.svg": "image/svg+xml",
}
# An agency's kind and display name as read at most this long ago: a rename shows
# within it. Read each time, the names cost a registry load per agency named (28 for
# one Jobcenter of the benchmark's history: more than the figures themselves).
NAMES_SECONDS = 5.0
_names: weakref.WeakKeyDictionary[Any, dict[str, tuple[float, dict[str, Any]]]] = (
    weakref.WeakKeyDictionary()
)  # per registry: agency id -> (when read, the row)
_names_lock = threading.Lock()
Filter = Annotated[
    str | None,
    Query(min_length=1, max_length=200, description="only this programme's (site's) cases"),
]


@router.get("/v1/dashboard", responses=documented(401, 422), **typed(Dashboard))
async def dashboard(
    caller: Caller, request: Request, programme: Filter = None, site: Filter = None
) -> dict[str, Any]:
    """The figures (an agency: of the programmes it takes part in). ``programme`` and
    ``site`` narrow them to those cases; ``site=-`` means cases opened without a site.
    Beside the figures: ``filter``, ``sites`` (what may be chosen), ``agencies`` (id,
    kind and display name of each agency named), ``offer_to_accept_deadlines``."""
    api = api_of(request)
    return await api.blocking.run(_answer, api, caller, programme, site)


def _answer(
    api: ApiContext, caller: Principal, programme: str | None, site: str | None
) -> dict[str, Any]:
    figures = api.reads.dashboard(caller, programme, site)
    figures["filter"] = {"programme": programme, "site": site}
    figures["agencies"] = [_agency(api, agency) for agency in named_agencies(figures)]
    return figures


def _agency(api: ApiContext, agency_id: str) -> dict[str, Any]:
    now = time.monotonic()
    if api.registry is None:
        return agency_entry(None, agency_id)
    with _names_lock:
        names = _names.setdefault(api.registry, {})
        kept = names.get(agency_id)
    if kept is not None and now - kept[0] <= NAMES_SECONDS:
        return dict(kept[1])
    row = agency_entry(api.registry, agency_id)
    with _names_lock:
        names[agency_id] = (now, row)
    return dict(row)


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


def _asset_route(name: str, media_type: str) -> None:
    path = STATIC / name

    async def asset() -> FileResponse:
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "no-cache"})

    router.add_api_route(
        f"/static/{name}", asset, methods=["GET"], include_in_schema=False, name=name
    )


for _name, _type in ASSETS.items():
    _asset_route(_name, _type)
