"""Replay a case's history as of a moment, from the stored events themselves.

``as_of`` is read on the hub's clock (``recorded_at``: what the hub knew then),
or on the agencies' clock (``occurred_at``) with ``axis="occurred"``.
"""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any, Literal
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from domain.reads import case_reads_id, daily_reads_id
from projections.case_doc import Doc, reduce_case
from projections.case_view import full_state
from projections.events import EventRecord, decode_read
from services.application import HubApplication
from services.errors import CaseNotFound

Axis = Literal["recorded", "occurred"]
_ENVELOPE_KEYS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def plain(value: Any) -> Any:  # noqa: PLR0911 - one return per kind of value
    """Domain values to JSON-ready ones."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(plain(k)): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [plain(v) for v in value]
        return sorted(items) if isinstance(value, set | frozenset) else items
    return value


def event_to_dict(event: Any, position: int) -> dict[str, Any]:
    payload = {
        k: plain(v)
        for k, v in event.__dict__.items()
        if k not in _ENVELOPE_KEYS and k not in ("agency", "actor", "occurred_at")
    }
    return {
        "position": position,
        "version": event.originator_version,
        "type": type(event).__name__,
        "agency": event.__dict__.get("agency"),
        "actor": event.__dict__.get("actor"),
        "occurred_at": plain(event.__dict__.get("occurred_at")),
        "recorded_at": plain(event.timestamp),
        "payload": payload,
    }


def replay_case(
    app: HubApplication, case_id: UUID, as_of: datetime | None = None, axis: Axis = "recorded"
) -> dict[str, Any]:
    """The events up to ``as_of`` and the case they make, folded by the same reducer
    as the views (``reduce_case``): replay and views cannot disagree."""
    rows = app.store.select_case_events(case_id)
    if not rows or not rows[0].topic.startswith("domain.case:"):
        raise CaseNotFound(f"case {case_id} does not exist")
    events: list[dict[str, Any]] = []
    for row in rows:
        # Through the mapper, so stored v1 events come upcast, as the aggregate sees them.
        event = app.mapper.to_domain_event(
            StoredEvent(case_id, row.originator_version, row.topic, row.state)
        )
        if as_of is not None and axis == "recorded" and event.timestamp > as_of:
            break  # versions are in recorded order
        if as_of is not None and axis == "occurred" and event.occurred_at > as_of:
            continue  # a late entry may follow that happened earlier
        events.append(event_to_dict(event, row.position))
    doc: Doc | None = None
    for item in events:
        doc = reduce_case(doc, as_record(str(case_id), item), in_place=True)
    return {
        "case_id": str(case_id),
        "as_of": plain(as_of),
        "axis": axis,
        "events": events,
        "reads": case_reads(app, case_id, as_of),
        "state": full_state(doc) if doc is not None else None,
    }


def case_reads(app: HubApplication, case_id: UUID, as_of: datetime | None = None) -> list[Doc]:
    """The reads of a case recorded in its read stream (``domain.reads``), as history
    items of type ``CaseRead`` up to ``as_of`` (the hub's clock). Reads recorded inside
    the case by older versions are among the case's own events."""
    return _reads(app, case_reads_id(case_id), as_of)


def day_reads(app: HubApplication, day: date) -> list[Doc]:
    """The reads of one UTC day that concern no single case (inbox, caseload, dashboard)."""
    return _reads(app, daily_reads_id(day), None)


def _reads(app: HubApplication, stream: UUID, as_of: datetime | None) -> list[Doc]:
    items: list[Doc] = []
    for row in app.store.select_case_events(stream):
        read = decode_read(row.position, stream, row.originator_version, row.topic, row.state)
        if as_of is not None and datetime.fromisoformat(read.recorded_at) > as_of:
            break
        items.append(
            {
                "position": read.position,
                "version": read.version,
                "type": read.type,
                "agency": read.agency,
                "actor": read.actor,
                "occurred_at": read.occurred_at,
                "recorded_at": read.recorded_at,
                "payload": read.data,
            }
        )
    return items


def as_record(case_id: str, item: dict[str, Any]) -> EventRecord:
    """A replayed event as the reducers read it (what the views decode from storage)."""
    return EventRecord(
        item["position"],
        case_id,
        item["version"],
        item["type"],
        item["agency"],
        item["actor"],
        item["occurred_at"],
        item["recorded_at"],
        item["payload"],
    )
