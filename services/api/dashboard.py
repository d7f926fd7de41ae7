"""The dashboard's figures (``/v1/dashboard``) and the page that shows them.

The page's style and code are files of their own under ``/static/``: the page's
Content-Security-Policy (``middleware``) allows no inline script or style.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from services.api.auth import Caller
from services.api.context import api_of
from services.api.errors import documented
from services.api.models import Dashboard, typed

router = APIRouter()
STATIC = Path(__file__).parent / "static"
PAGE = STATIC / "dashboard.html"


@router.get("/v1/dashboard", responses=documented(401), **typed(Dashboard))
async def dashboard(caller: Caller, request: Request) -> dict[str, Any]:
    api = api_of(request)
    return await api.blocking.run(api.reads.dashboard, caller)


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
async def dashboard_page() -> HTMLResponse:
    return HTMLResponse(PAGE.read_text(encoding="utf-8"))


@router.get("/static/dashboard.js", include_in_schema=False)
async def dashboard_script() -> Response:
    return Response((STATIC / "dashboard.js").read_bytes(), media_type="text/javascript")


@router.get("/static/dashboard.css", include_in_schema=False)
async def dashboard_style() -> Response:
    return Response((STATIC / "dashboard.css").read_bytes(), media_type="text/css")
