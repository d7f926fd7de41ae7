"""The event feed: an agency's part of the hub in global order, page by page after an
opaque cursor (``GET /v1/agencies/{id}/feed``), and an auditor's feed of every case
event (``GET /v1/audit/feed``). Webhooks deliver the same pages.

Cheap at scale: the candidate positions come from two indexed views (the agency's
cases in ``view_caseload``, their events in ``view_audit`` by ``(case_id,
position)``), never a scan of the log; only the cases on the page are replayed, and
``FeedReads`` (services/access.py) filters them exactly as the history does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid5

import orjson

from projections.events import CASE_READ
from services.access import FeedReads, Principal, ReadService
from services.errors import ServiceError
from services.kafka.envelope import EVENT_ID_NAMESPACE

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
MAX_WAIT_SECONDS = 30.0
_CURSOR_PREFIX = b"feed-v1:"
_ROUNDS = 8  # candidate reads per call at most


class InvalidCursor(ServiceError):
    code = "invalid_cursor"


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(_CURSOR_PREFIX + str(position).encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    """The global position a cursor stands for (0: from the start)."""
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    text = raw[len(_CURSOR_PREFIX) :] if raw.startswith(_CURSOR_PREFIX) else b""
    if not text.isdigit() or len(text) > 19:
        raise InvalidCursor("after is not a cursor this feed gave out (use a page's `next`)")
    return int(text)


def event_id(case_id: str, version: int) -> str:
    """The event's stable id, the same as the Kafka relay's ``event_id``."""
    return str(uuid5(EVENT_ID_NAMESPACE, f"{case_id}:{version}"))


@dataclass
class FeedPage:
    items: list[dict[str, Any]]
    next: str
    more: bool  # the page was cut at ``limit``: ask again at once
    position: int  # the global position ``next`` stands for
    to_record: dict[str, list[str]] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"items": self.items, "next": self.next, "more": self.more}

    @property
    def etag(self) -> str:
        # Over the items, not ``next``: that moves with any agency's events (even this
        # caller's own recorded reads), while the client's older ``next`` gives the
        # same items, so "nothing new for you" answers 304.
        shown = orjson.dumps({"items": self.items, "more": self.more})
        return '"' + hashlib.sha256(shown).hexdigest()[:32] + '"'


class EventFeed:
    """Pages of the feed. ``views_position``: what every view has applied; the feed
    never reads past it, so an event whose case has not yet reached the caseload
    view is not skipped by a cursor that moved on."""

    def __init__(
        self, reads: FeedReads, view_store: Any, views_position: Callable[[], int]
    ) -> None:
        self._reads = reads
        self._views = view_store
        self._p = view_store.P
        self._views_position = views_position

    def head(self) -> int:
        return self._views_position()

    def page(self, principal: Principal, after: int, limit: int) -> FeedPage:
        """The next ``limit`` items after ``after`` (not yet recorded as a read: ``record``).

        Candidates (the events of the caller's cases) are read ``limit`` at a time and
        filtered; a bounded number of rounds keeps one call's cost bounded when most
        are not the caller's part (then ``more`` says to ask again at once)."""
        bound = self._views_position()
        items: list[dict[str, Any]] = []
        to_record: dict[str, list[str]] = {}
        position = after
        for _ in range(_ROUNDS):
            candidates = self._candidates(principal, position, bound, limit)
            by_case: dict[str, set[int]] = {}
            for row in candidates:
                by_case.setdefault(row["case_id"], set()).add(row["position"])
            found, shown = self._reads.items(principal, by_case)
            items += found
            to_record.update(shown)
            if len(items) >= limit:
                items = items[:limit]
                position = items[-1]["position"]
                break
            if len(candidates) < limit:
                # Nothing more of the caller's below the views' position: the cursor
                # moves up to it, so the next call's index ranges start there.
                position = max(position, bound)
                break
            position = candidates[-1]["position"]
        more = position < bound
        for item in items:
            item["event_id"] = event_id(item["case_id"], item.pop("version", 0) or 0)
        cases = {item["case_id"] for item in items}
        to_record = {case: shown for case, shown in to_record.items() if case in cases}
        return FeedPage(items, encode_cursor(position), more, position, to_record)

    def record(self, principal: Principal, page: FeedPage, scope: str = "feed") -> None:
        self._reads.record(principal, page.to_record, scope)

    def _candidates(
        self, principal: Principal, after: int, bound: int, limit: int
    ) -> list[dict[str, Any]]:
        p = self._p  # the dialect's placeholder; every value goes through parameters
        if principal.is_auditor:
            return self._views.query(
                "SELECT position, case_id FROM view_audit WHERE position > "  # noqa: S608
                f"{p} AND position <= {p} AND case_id IS NOT NULL AND type <> {p} "
                f"ORDER BY position LIMIT {p}",
                (after, bound, CASE_READ, limit),
            )
        # Per case of the agency, a range of the (case_id, position) index.
        return self._views.query(
            "SELECT a.position, a.case_id FROM view_caseload c JOIN view_audit a "  # noqa: S608
            f"ON a.case_id = c.case_id WHERE c.agency = {p} AND a.position > {p} "
            f"AND a.position <= {p} AND a.type <> {p} ORDER BY a.position LIMIT {p}",
            (principal.subject, after, bound, CASE_READ, limit),
        )


def feed_for(hub: Any) -> EventFeed:
    """The feed of ``hub`` (a ``services.bootstrap.Hub``) outside the API (webhooks)."""
    reads = ReadService(
        hub.app,
        hub.queries,
        hub.messages,
        hub.view_store,
        hub.cipher,
        policy_book=hub.settings.policy_book,
    )
    return EventFeed(FeedReads(reads), hub.view_store, hub.views.position)
