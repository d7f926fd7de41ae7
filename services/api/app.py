"""The HTTP API of API.md (FastAPI): agencies post messages and read their views,
auditors read everything, the dashboard page reads ``/v1/dashboard``.

This module only assembles: the services a ``Hub`` holds, the routers
(``messages``, ``reads``, ``feed``, ``webhooks``, ``reports``, ``dashboard``,
``ops``, ``pages``, ``fhir``), authentication (``auth``), the error shape
(``errors``) and what wraps every request (``middleware``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from services.access import FeedReads, ReadService
from services.api import dashboard, feed, fhir, messages, ops, pages, reads, reports, webhooks
from services.api.auth import Authenticator
from services.api.context import ApiContext
from services.api.errors import install_error_handlers
from services.api.limits import HttpLimits
from services.api.metrics import ApiMetrics
from services.api.middleware import RequestContext
from services.api.openapi import install_openapi
from services.api.read_your_writes import ReadYourWrites, ViewsWatch
from services.api.readiness import readiness_for
from services.api.threads import BlockingCalls
from services.bootstrap import Hub
from services.feed import EventFeed
from services.webhooks.endpoints import endpoints_for

__all__ = ["ViewsWatch", "create_app"]

ROUTERS = (messages, reads, feed, webhooks, reports, dashboard, ops, pages, fhir)


def create_app(
    hub: Hub,
    *,
    read_your_writes_timeout: float = 2.0,
    start_views: bool = True,
    limits: HttpLimits | None = None,
    metrics: ApiMetrics | None = None,
) -> FastAPI:
    """The API over ``hub``. ``start_views``: run the live view runner in this process
    (else each read-your-writes wait catches the views up itself). ``limits``: what a
    client may send (the server's protocol takes them from here too, see ``server``).
    ``metrics``: shared with the relay and inbox ``hub serve`` runs beside it (a new
    set by default)."""
    blocking = BlockingCalls()
    views = ReadYourWrites(
        hub.views,
        hub.app.recorder.max_notification_id,
        blocking,
        timeout=read_your_writes_timeout,
        live=start_views,
    )
    api = ApiContext(
        auth=Authenticator(hub.tokens, blocking, settings=hub.settings),
        reads=ReadService(
            hub.app,
            hub.queries,
            hub.messages,
            hub.view_store,
            hub.cipher,
            policy_book=hub.settings.policy_book,
        ),
        messages=hub.messages,
        views=views,
        blocking=blocking,
        metrics=metrics or ApiMetrics(),
        limits=limits or HttpLimits(),
        registry=hub.registry,
    )
    readiness = readiness_for(hub, views, blocking)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        blocking.open()
        views.start()
        try:
            yield
        finally:
            views.stop()
            readiness.close()
            blocking.close()

    app = FastAPI(
        title="Handover hub",
        version="1",
        description="Agencies record handover messages and read their views; auditors "
        "read every case's history. Errors: {error: {code, message, details}}.",
        lifespan=lifespan,
        # /docs and /redoc would load JavaScript from a CDN into the hub's origin,
        # where tokens are typed; the schema stays at /openapi.json.
        docs_url=None,
        redoc_url=None,
        # A trailing slash is a 404, not a 307 whose Location is built from the
        # client's Host header.
        redirect_slashes=False,
        # The hub's metrics are Prometheus (``metrics``) and its logs structlog; FastAPI's
        # own OpenTelemetry hooks looked for a configured provider on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        # The routers' routes themselves, not ``include_router``: FastAPI 0.165 keeps
        # an included router as one more routing layer, about 300 more Python calls
        # per request on the event loop. (So no router-level options, and
        # ``app.dependency_overrides`` does not reach these routes.)
        routes=[route for module in ROUTERS for route in module.router.routes],
    )
    app.state.api = api
    app.state.readiness = readiness
    app.state.feed = EventFeed(FeedReads(api.reads), hub.view_store, hub.views.position)
    app.state.hub_views = hub.views
    app.state.webhooks = endpoints_for(hub)
    app.state.agencies = hub.registry  # the FHIR facade's Organization reads
    app.add_middleware(RequestContext, metrics=api.metrics, direct=messages.DIRECT)
    install_error_handlers(app)
    install_openapi(app)
    return app
