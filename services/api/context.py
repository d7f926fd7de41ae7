"""What the routes call, made once per app by ``create_app`` and kept in its state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fastapi import Request

from services.access import ReadService
from services.api.limits import HttpLimits
from services.api.metrics import ApiMetrics
from services.api.read_your_writes import ReadYourWrites
from services.api.threads import BlockingCalls
from services.application import AgencyRegistry, MessageService

if TYPE_CHECKING:  # ``auth`` imports this module: its class is named for annotations only
    from services.api.auth import Authenticator


@dataclass(frozen=True)
class ApiContext:
    auth: Authenticator
    reads: ReadService
    messages: MessageService
    views: ReadYourWrites
    blocking: BlockingCalls
    metrics: ApiMetrics
    limits: HttpLimits = field(default_factory=HttpLimits)
    registry: AgencyRegistry | None = None  # display names for the dashboard


def api_of(request: Request) -> ApiContext:
    """The context of the app serving ``request``. Routes take ``request`` and call
    this rather than declare a dependency: solving one cost about 75 Python calls per
    request, the ``Request`` parameter none."""
    return request.app.state.api
