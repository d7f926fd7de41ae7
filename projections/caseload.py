"""Agency caseload: every case an agency is involved in, with stage and deadlines."""

from __future__ import annotations

from typing import Any

from domain.case.handover import involved_in
from projections.case_doc import Doc


def involved_agencies(doc: Doc) -> list[str]:
    """As the aggregate decides it (rule 7): a receiver whose only part was a declined
    or withdrawn handover is no longer involved."""
    parties = ((h["from_agency"], h["to_agency"], h["state"]) for h in doc["handovers"].values())
    return sorted(involved_in(doc["opened_by"], doc["lead_agency"], parties))


def next_due_at(doc: Doc, agency: str) -> str | None:
    """The earliest open deadline this agency has to meet in this case."""
    dues = []
    for h in doc["handovers"].values():
        if h["to_agency"] != agency:
            continue
        if h["state"] == "offered":
            dues.append(h["due_at"])
        elif h["state"] == "accepted" and h["decide_due_at"]:
            dues.append(h["decide_due_at"])
    return min(dues, key=_instant) if dues else None


def _instant(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value)


def caseload_rows(doc: Doc) -> list[dict[str, Any]]:
    closed = doc["stage"] == "closed"
    return [
        {
            "agency": agency,
            "case_id": doc["case_id"],
            "programme": doc["programme"],
            "site": doc["site"],
            "stage": doc["stage"],
            "lead_agency": doc["lead_agency"],
            "coach": doc["coach"],
            "next_due_at": None if closed else next_due_at(doc, agency),
            "last_activity_at": doc["last_activity_at"],
        }
        for agency in involved_agencies(doc)
    ]
