"""The event feed over HTTP: ``GET /v1/agencies/{id}/feed`` (that agency's part) and
``GET /v1/audit/feed`` (auditors: every case event). ``after`` is the ``next`` of the
previous page; ``wait`` long-polls (at most 30 s) while there is nothing new;
``ETag``/``If-None-Match`` answer an unchanged page with 304 (not recorded as a read:
nothing was shown)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from services.access import Principal
from services.api.auth import Caller
from services.api.context import api_of
from services.api.errors import READ_ERRORS, ApiError, documented
from services.api.reads import AgencyPath
from services.feed import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_WAIT_SECONDS,
    EventFeed,
    InvalidCursor,
    decode_cursor,
)

router = APIRouter()

After = Annotated[
    str | None, Query(max_length=64, description="the `next` of the previous page (opaque)")
]
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description="most events in a page")]
Wait = Annotated[
    float,
    Query(ge=0, le=MAX_WAIT_SECONDS, description="seconds to wait for an event when none is new"),
]
# How often a long poll looks at the views: this process's runner announces its
# position in memory (cheap); the tables answer for another process's runner.
_LOOK_EVERY = 0.05
_READ_TABLES_EVERY = 0.25


def feed_of(request: Request) -> EventFeed:
    feed: EventFeed = request.app.state.feed
    return feed


@router.get("/v1/agencies/{agency_id}/feed", responses=READ_ERRORS)
async def agency_feed(
    agency_id: AgencyPath,
    caller: Caller,
    request: Request,
    after: After = None,
    limit: Limit = DEFAULT_LIMIT,
    wait: Wait = 0,
) -> Response:
    """The agency's part of the hub in global order, as its history shows it."""
    if caller.is_auditor:
        raise ApiError(403, "forbidden", "auditors read every event at /v1/audit/feed")
    if caller.subject != agency_id:
        raise ApiError(403, "forbidden", f"this token may read only agency {caller.subject}'s feed")
    return await _answer(request, caller, after, limit, wait)


@router.get("/v1/audit/feed", responses=documented(401, 403))
async def audit_feed(
    caller: Caller,
    request: Request,
    after: After = None,
    limit: Limit = DEFAULT_LIMIT,
    wait: Wait = 0,
) -> Response:
    """Auditors: every case event in global order (each page's cases recorded as read)."""
    if not caller.is_auditor:
        raise ApiError(403, "forbidden", "only auditors read the audit feed")
    return await _answer(request, caller, after, limit, wait)


async def _answer(
    request: Request, caller: Principal, after: str | None, limit: int, wait: float
) -> Response:
    api = api_of(request)
    feed = feed_of(request)
    try:
        start = decode_cursor(after)
    except InvalidCursor as error:
        raise ApiError(422, error.code, str(error)) from None
    page = await api.blocking.run(feed.page, caller, start, limit)
    deadline = time.monotonic() + wait
    while not page.items and not page.more and time.monotonic() < deadline:
        if not await _views_move_past(request, feed, page.position, deadline):
            break
        page = await api.blocking.run(feed.page, caller, start, limit)
    etag = page.etag
    if etag in _tags(request.headers.get("if-none-match")):
        return Response(status_code=304, headers={"ETag": etag})
    await api.blocking.run(feed.record, caller, page)
    return JSONResponse(page.body(), headers={"ETag": etag, "Cache-Control": "no-cache"})


async def _views_move_past(
    request: Request, feed: EventFeed, position: int, deadline: float
) -> bool:
    """Wait (never past ``deadline``) until the views have applied beyond ``position``."""
    api = api_of(request)
    runner = request.app.state.hub_views
    read_at = 0.0
    while (now := time.monotonic()) < deadline:
        announced = getattr(runner, "applied_position", None)
        if isinstance(announced, int) and announced > position:
            return True
        if now - read_at >= _READ_TABLES_EVERY:
            read_at = now
            if await api.blocking.run(feed.head) > position:
                return True
        await asyncio.sleep(min(_LOOK_EVERY, max(0.0, deadline - now)))
    return False


def _tags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}
