"""For operators: liveness and Prometheus metrics (no token: nothing personal)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.context import api_of

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"status": "ok"}


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def prometheus(request: Request) -> Response:
    api = api_of(request)
    for view, lag in (await api.views.lag()).items():
        api.metrics.lag.labels(view).set(lag)
    return Response(generate_latest(api.metrics.registry), media_type=CONTENT_TYPE_LATEST)
