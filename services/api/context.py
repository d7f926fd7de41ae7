"""What the routes call, made once per app by ``create_app`` and kept in its state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from services.access import ReadService
from services.api.metrics import ApiMetrics
from services.api.read_your_writes import ReadYourWrites
from services.api.threads import BlockingCalls
from services.application import MessageService

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


def api_of(request: Request) -> ApiContext:
    """For routes that read the request themselves (no dependency to solve)."""
    return request.app.state.api


async def _current(request: Request) -> ApiContext:
    # async: a plain ``def`` dependency would cost a hop to a worker thread
    return request.app.state.api


Api = Annotated[ApiContext, Depends(_current)]
