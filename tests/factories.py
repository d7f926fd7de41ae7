"""Small builders for messages in tests (plain dicts, exactly as agencies send them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def message(
    type_: str,
    agency: str,
    case_id: UUID,
    payload: dict[str, Any] | None = None,
    *,
    day: float = 0,
    actor: str = "user-1",
    message_id: UUID | None = None,
) -> dict[str, Any]:
    return {
        "message_id": str(message_id or uuid4()),
        "type": type_,
        "agency": agency,
        "case_id": str(case_id),
        "occurred_at": (T0 + timedelta(days=day)).isoformat(),
        "actor": actor,
        "payload": payload or {},
    }


def opened(agency: str, case_id: UUID, **payload: Any) -> dict[str, Any]:
    body = {"programme": "test-programme", "participant": {"pseudonym": "P-1"}, **payload}
    return message("case.opened", agency, case_id, body)


def consent(
    agency: str,
    case_id: UUID,
    *,
    consent_id: str,
    categories: list[str],
    source: str,
    recipients: list[str],
    day: float = 0,
    valid_days: float | None = 10 * 365,  # tests run long after T0: the hub's clock decides
) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "consent_id": consent_id,
        "categories": categories,
        "source_agency": source,
        "recipients": recipients,
        "valid_from": (T0 + timedelta(days=day)).isoformat(),
    }
    if valid_days is not None:
        payload["valid_until"] = (T0 + timedelta(days=day + valid_days)).isoformat()
    return message("consent.granted", agency, case_id, payload, day=day)


def offer(
    agency: str,
    case_id: UUID,
    handover_id: UUID,
    *,
    kind: str,
    to: str,
    categories: list[str] | None = None,
    day: float = 0,
) -> dict[str, Any]:
    return message(
        "handover.offered",
        agency,
        case_id,
        {
            "handover_id": str(handover_id),
            "kind": kind,
            "to_agency": to,
            "data_categories": categories or [],
        },
        day=day,
    )


def decide(
    type_: str, agency: str, case_id: UUID, handover_id: UUID, day: float = 1, **extra: Any
) -> dict[str, Any]:
    return message(type_, agency, case_id, {"handover_id": str(handover_id), **extra}, day=day)


def new_id() -> UUID:
    return uuid4()
