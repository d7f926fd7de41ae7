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

from domain.case import Case
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


def case_to_dict(case: Case) -> dict[str, Any]:
    return {
        "case_id": str(case.id),
        "version": case.version,
        "programme": case.programme,
        "site": case.site,
        "stage": case.stage.value,
        "outcome": plain(case.outcome),
        "lead_agency": case.lead_agency,
        "agencies": sorted(case.involved_agencies),
        "participant": plain(case.participant),
        "handovers": [
            {
                "handover_id": str(h.handover_id),
                "kind": h.kind.value,
                "from_agency": h.from_agency,
                "to_agency": h.to_agency,
                "state": h.state.value,
                "data_categories": plain(h.data_categories),
                "offered_at": plain(h.offered_at),
                "due_at": plain(h.due_at),
                "decide_due_at": plain(h.decide_due_at),
                "decided_at": plain(h.decided_at),
                "completed_at": plain(h.completed_at),
                "forwarded_from": plain(h.forwarded_from),
                "forwarded_to": plain(h.forwarded_to),
                "legal_basis": list(h.legal_basis),
                "priority": h.priority,
                "decision": h.decision,
            }
            for h in case.handovers.values()
        ],
        "consents": [plain(c) for c in case.consents.values()],
        "coach": case.coach,
        "appointments": [plain(a) for a in case.appointments.values()],
        "agreement_signed_at": plain(case.agreement_signed_at),
        "plan": None
        if case.plan_goals is None
        else {"goals": list(case.plan_goals), "modules": list(case.plan_modules)},
        "measures": [plain(m) for m in case.measures.values()],
        "assignment_ends_at": plain(case.assignment_ends_at),
        "employment": plain(case.employment),
        "aftercare_until": plain(case.aftercare_until),
        "notes": [plain(n) for n in case.notes],
        "opened_at": plain(case.opened_at),
        "closed_at": plain(case.closed_at),
        "erased_at": plain(case.erased_at),
        "last_activity_at": plain(case.last_activity_at),
    }


def replay_case(
    app: HubApplication, case_id: UUID, as_of: datetime | None = None, axis: Axis = "recorded"
) -> dict[str, Any]:
    rows = app.store.select_case_events(case_id)
    if not rows or not rows[0].topic.startswith("domain.case:"):
        raise CaseNotFound(f"case {case_id} does not exist")
    events: list[tuple[int, Any]] = []
    for row in rows:
        event = app.mapper.to_domain_event(
            StoredEvent(case_id, row.originator_version, row.topic, row.state)
        )
        moment = event.timestamp if axis == "recorded" else event.occurred_at
        if as_of is not None and moment > as_of:
            break  # versions are in recorded order; on the agencies' clock, stop too
        events.append((row.position, event))
    case: Case | None = None
    for _, event in events:
        case = event.mutate(case)
    return {
        "case_id": str(case_id),
        "as_of": plain(as_of),
        "axis": axis,
        "events": [event_to_dict(event, position) for position, event in events],
        "state": case_to_dict(case) if case is not None else None,
    }
