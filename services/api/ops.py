"""For operators: liveness, readiness and Prometheus metrics (no token: nothing
personal, no secret in any answer)."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.api.context import api_of
from services.api.readiness import Readiness, ReadyBody

router = APIRouter()
log = structlog.get_logger("hub.api")


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    """Liveness: the process answers. Nothing else is checked (``/readyz`` does)."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=ReadyBody,
    responses={503: {"model": ReadyBody, "description": "a check failed; its reason says why"}},
)
async def readyz(request: Request) -> JSONResponse:
    """Readiness: database, views' lag, master key, and the brokers when this process
    uses Kafka; 200 when all pass, else 503, each with its reason."""
    readiness: Readiness = request.app.state.readiness
    report = await readiness.report()
    status = 200 if report.status == "ready" else 503
    return JSONResponse(report.model_dump(), status_code=status)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def prometheus(request: Request) -> Response:
    api = api_of(request)
    try:
        lags = await api.views.lag()
    except Exception as error:  # the store is away: the other figures still answer
        log.warning("metrics_read_failed", metric="view_lag", error=type(error).__name__)
        lags = {}
    for view, lag in lags.items():
        api.metrics.lag.labels(view).set(lag)
    return Response(generate_latest(api.metrics.registry), media_type=CONTENT_TYPE_LATEST)
