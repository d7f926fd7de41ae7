"""Agency inbox: handovers offered to an agency and not yet decided, oldest first."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from projections.case_doc import Doc


def awaits_decision(handover: Doc) -> bool:
    """An accepted § 14 application whose decision is due and not yet recorded."""
    return handover["state"] == "accepted" and handover.get("decide_due_at") is not None


def inbox_rows(doc: Doc) -> list[dict[str, Any]]:
    """The inbox rows this case contributes, any agency: one per open offer (due: its
    acceptance), and one per accepted application awaiting its decision (due: the
    decision), so both show as overdue when their date passes."""
    if doc["stage"] == "closed":
        return []
    return [
        {
            "agency": h["to_agency"],
            "handover_id": h["handover_id"],
            "case_id": doc["case_id"],
            "programme": doc["programme"],
            "site": doc["site"],
            "kind": h["kind"],
            "from_agency": h["from_agency"],
            "offered_at": h["offered_at"],
            "due_at": h["due_at"] if h["state"] == "offered" else h["decide_due_at"],
            "priority": h.get("priority", "normal"),
        }
        for h in doc["handovers"].values()
        if h["state"] == "offered" or awaits_decision(h)
    ]


def with_overdue(row: dict[str, Any], now: datetime) -> dict[str, Any]:
    """Overdue is a fact of the reading moment, not stored: the clock is injected."""
    return {**row, "overdue": datetime.fromisoformat(row["due_at"]) < now}
