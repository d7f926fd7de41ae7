"""The case as one agency may see it.

A piece of personal data is shown to an agency only when ``projections.disclosure``
says it may see it at the moment of reading: it is the data's source, the data is
statutory for the lead, or a handover to it carried the data under a consent still
valid. Anything else is absent from the view, not blanked by a client.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from domain.case.lifecycle import add_months
from projections.case_doc import PARTICIPANT_CATEGORIES, Doc
from projections.caseload import involved_agencies
from projections.disclosure import may_see


def sees_handover(doc: Doc, agency: str | None, handover: Doc) -> bool:
    """DOMAIN "Views": an agency sees the handovers it sent or received, and the
    rest of their forwarding chain (a § 14 application it was forwarded); the lead
    and auditors (``agency`` None) see all. That a clinic discharged the participant
    is itself health data for anyone else."""
    if agency is None or agency == doc["lead_agency"]:
        return True
    handovers = doc["handovers"]
    for link in ("forwarded_from", "forwarded_to"):
        current: Doc | None = handover
        while current is not None:
            if agency in (current["from_agency"], current["to_agency"]):
                return True
            current = handovers.get(current[link] or "")
    return False


def visible_agencies(doc: Doc, agency: str | None, handovers: list[Doc]) -> list[str]:
    """Who takes part, as far as the caller may know: the lead, and the parties of
    the handovers it sees."""
    if agency is None or agency == doc["lead_agency"]:
        return involved_agencies(doc)
    seen = {doc["lead_agency"], agency}
    for h in handovers:
        seen.update((h["from_agency"], h["to_agency"]))
    return sorted(seen & set(involved_agencies(doc)) | {agency})


def full_view(doc: Doc) -> dict[str, Any]:
    """Everything, for auditors (whose reads are recorded)."""
    return _view(doc, lambda category, source: True)


def full_state(doc: Doc) -> dict[str, Any]:
    """Everything the document holds, in the views' shape: what ``hub replay`` shows
    (an auditor's or operator's tool; its reads of a case are the auditor's)."""
    view = full_view(doc)
    aftercare = doc["aftercare"] or {}
    return {
        **view,
        "version": doc["version"],
        "handovers": [dict(h) for h in doc["handovers"].values()],
        "consents": [dict(c) for c in doc["consents"].values()],
        "assignment_ends_at": assignment_ends_at(doc),
        "aftercare_until": aftercare.get("until"),
    }


def assignment_ends_at(doc: Doc) -> str | None:
    """The assignment's end: its start plus the months and every extension."""
    started = doc["assignment_started_at"]
    if started is None:
        return None
    months = doc["assignment_months"] + doc["extension_months"]
    return add_months(datetime.fromisoformat(started), months).isoformat()


def case_view(doc: Doc, agency: str, at: datetime) -> dict[str, Any]:
    """``agency``'s view of the case at ``at``; full structure, filtered personal data."""
    return _view(doc, lambda category, source: may_see(doc, agency, category, source, at), agency)


def _view(
    doc: Doc, allowed: Callable[[str, str], bool], agency: str | None = None
) -> dict[str, Any]:
    shown: set[str] = set()

    def see(category: str, source: str) -> bool:
        if allowed(category, source):
            shown.add(category)
            return True
        return False

    participant = doc["participant"]
    source = participant["source"]
    fields = {
        key: value
        for key, value in participant["fields"].items()
        if see(PARTICIPANT_CATEGORIES.get(key, "identity"), source)
    }
    plan = doc["plan"]
    employment = doc["employment"]
    handovers = [h for h in doc["handovers"].values() if sees_handover(doc, agency, h)]
    return {
        "case_id": doc["case_id"],
        "programme": doc["programme"],
        "site": doc["site"],
        "stage": doc["stage"],
        "outcome": doc["outcome"],
        "lead_agency": doc["lead_agency"],
        "agencies": visible_agencies(doc, agency, handovers),
        "coach": doc["coach"],
        "participant": {
            "pseudonym": participant["pseudonym"],
            **fields,
            **({"erased": True} if participant.get("erased") else {}),
        },
        "handovers": [
            {
                k: h[k]
                for k in (
                    "handover_id",
                    "kind",
                    "from_agency",
                    "to_agency",
                    "state",
                    "data_categories",
                    "offered_at",
                    "due_at",
                    "decide_due_at",
                    "forwarded_from",
                    "forwarded_to",
                    "decision",
                )
            }
            for h in handovers
        ],
        "consents": [
            c
            for c in doc["consents"].values()
            if agency is None
            or agency in (c["source_agency"], c["granted_by"])
            or agency in c["recipients"]
        ],
        "appointments": list(doc["appointments"].values()),
        "agreement_signed_at": doc["agreement_signed_at"],
        "plan": plan if plan is not None and see("plan", plan["agency"]) else None,
        "measures": [m for m in doc["measures"].values() if see("plan", m["agency"])],
        "employment": employment
        if employment is not None and see("employment_history", employment["agency"])
        else None,
        "aftercare": doc["aftercare"],
        "notes": [n for n in doc["notes"] if see(n["category"], n.get("source", n["agency"]))],
        "opened_at": doc["opened_at"],
        "closed_at": doc["closed_at"],
        "erased_at": doc["erased_at"],
        "last_activity_at": doc["last_activity_at"],
        "categories_shown": sorted(shown),
    }
