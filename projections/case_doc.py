"""The case document: one plain JSON-ready dict per case, folded from its events.

``reduce_case(doc, event) -> doc`` is pure. Inbox, caseload and case views are
derived from this document; the dashboard compares it before and after each
event. Each piece of personal data keeps its category and its source agency,
so a view can later show only what a caller is entitled to.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any, cast

from domain.case.lifecycle import lead_after_acceptance, stage_after_activation_check
from domain.values import Stage
from projections.events import EventRecord

Doc = dict[str, Any]
PARTICIPANT_CATEGORIES = {"name": "identity", "birth_date": "identity", "contact": "contact"}
ERASED = "[erased]"
# Where this document keeps personal data (the fields marked ``Personal`` on the
# message payloads; a test checks the two agree): blanked on erasure, plaintext
# or not. Every other ciphertext is blanked too, so a personal field this list
# does not know yet still reads as erased.
ERASED_IN_EACH = {"notes": ("text",), "measures": ("title", "result")}
ERASED_IN = {"employment": ("employer",), "plan": ("goals", "modules")}
# The prefix of ``services.crypto`` ciphertexts (kept here: projections do not
# import services; a test checks they agree).
CIPHERTEXT_PREFIX = "enc:v1:"
PASSIVE = frozenset({"CaseRead"})  # recorded reads: part of the history, not activity


def new_case(event: EventRecord) -> Doc:
    d = event.data
    participant = d["participant"]
    return {
        "case_id": event.case_id,
        "programme": d["programme"],
        "site": d.get("site"),
        "stage": "opened",
        "outcome": None,
        "lead_agency": event.agency,
        "opened_by": event.agency,
        "opened_at": event.occurred_at,
        "closed_at": None,
        "assignment_months": d["assignment_months"],
        "assignment_started_at": None,
        "extension_months": 0,
        "participant": {
            "pseudonym": participant.get("pseudonym"),
            "fields": {k: v for k, v in participant.items() if k != "pseudonym"},
            "source": event.agency,
        },
        "handovers": {},
        "consents": {},
        "coach": None,
        "coach_agency": None,
        "appointments": {},
        "agreement_signed_at": None,
        "plan": None,
        "measures": {},
        "employment": None,
        "aftercare": None,
        "notes": [],
        "erased_at": None,
        "last_activity_at": event.occurred_at,
        "version": event.version,
        "position": event.position,
    }


def _activate_when_ready(doc: Doc) -> None:
    stage = stage_after_activation_check(
        Stage(doc["stage"]), doc["assignment_started_at"], doc["agreement_signed_at"]
    )
    doc["stage"] = stage.value


def _consent_granted(doc: Doc, e: EventRecord) -> None:
    d = e.data
    doc["consents"][d["consent_id"]] = {
        "consent_id": d["consent_id"],
        "categories": d["categories"],
        "source_agency": d["source_agency"],
        "recipients": d["recipients"],
        "valid_from": d["valid_from"],
        "valid_until": d.get("valid_until"),
        "granted_by": e.agency,
        "revoked_at": None,
        "revoked_by": None,
        "purpose": d.get("purpose"),  # absent in schema v1 events
        "document_ref": d.get("document_ref"),
    }


def _consent_revoked(doc: Doc, e: EventRecord) -> None:
    consent = doc["consents"][e.data["consent_id"]]
    consent["revoked_at"] = e.occurred_at
    consent["revoked_by"] = e.agency


def _handover(
    e: EventRecord, handover_id: str, to_agency: str, categories: list[str], kind: str
) -> Doc:
    d = e.data
    return {
        "handover_id": handover_id,
        "kind": kind,
        "from_agency": e.agency,
        "to_agency": to_agency,
        "state": "offered",
        "data_categories": categories,
        "offered_at": e.occurred_at,
        "due_at": d["due_at"],
        "decide_due_at": d.get("decide_due_at"),
        "decided_at": None,
        "completed_at": None,
        "forwarded_from": None,
        "forwarded_to": None,
        "legal_basis": d["legal_basis"],
        "priority": d.get("priority", "normal"),  # absent in schema v1 events
        "decision": None,
        "decision_counted_at": None,
    }


def _handover_offered(doc: Doc, e: EventRecord) -> None:
    d = e.data
    doc["handovers"][d["handover_id"]] = _handover(
        e, d["handover_id"], d["to_agency"], d["data_categories"], d["kind"]
    )


def _handover_accepted(doc: Doc, e: EventRecord) -> None:
    handover = doc["handovers"][e.data["handover_id"]]
    handover["state"] = "accepted"
    handover["decided_at"] = e.occurred_at
    doc["lead_agency"] = lead_after_acceptance(
        doc["lead_agency"],
        handover["kind"],
        handover["from_agency"],
        handover["to_agency"],
        e.data.get("moves_lead"),  # absent in schema v1 events: the rule of their time
    )
    if handover["kind"] == "assignment" and doc["assignment_started_at"] is None:
        doc["assignment_started_at"] = e.occurred_at
    _activate_when_ready(doc)


def _decided(state: str) -> Callable[[Doc, EventRecord], None]:
    def apply(doc: Doc, e: EventRecord) -> None:
        handover = doc["handovers"][e.data["handover_id"]]
        handover["state"] = state
        handover["decided_at"] = e.occurred_at

    return apply


def _handover_forwarded(doc: Doc, e: EventRecord) -> None:
    d = e.data
    previous = doc["handovers"][d["handover_id"]]
    previous["state"] = "forwarded"
    previous["decided_at"] = e.occurred_at
    previous["forwarded_to"] = d["new_handover_id"]
    forwarded = _handover(
        e, d["new_handover_id"], d["to_agency"], previous["data_categories"], previous["kind"]
    )
    forwarded["forwarded_from"] = d["handover_id"]
    forwarded["priority"] = previous.get("priority", "normal")
    doc["handovers"][d["new_handover_id"]] = forwarded


def _handover_completed(doc: Doc, e: EventRecord) -> None:
    handover = doc["handovers"][e.data["handover_id"]]
    handover["state"] = "completed"
    handover["completed_at"] = e.occurred_at


def _rehab_decided(doc: Doc, e: EventRecord) -> None:
    handover = doc["handovers"][e.data["handover_id"]]
    handover["state"] = "completed"
    handover["decision"] = e.data["outcome"]
    handover["completed_at"] = e.occurred_at
    handover["decision_counted_at"] = e.data["counted_at"]
    handover["late_entry"] = e.data["late_entry"]
    if handover["decided_at"] is None:
        handover["decided_at"] = e.occurred_at


def _expert_opinion_requested(doc: Doc, e: EventRecord) -> None:
    doc["handovers"][e.data["handover_id"]]["opinion_requested_at"] = e.occurred_at


def _expert_opinion_received(doc: Doc, e: EventRecord) -> None:
    handover = doc["handovers"][e.data["handover_id"]]
    handover["opinion_received_at"] = e.occurred_at
    handover["decide_due_at"] = e.data["decide_due_at"]


def _lead_transferred(doc: Doc, e: EventRecord) -> None:
    doc["lead_agency"] = e.data["to_agency"]


def _coach_assigned(doc: Doc, e: EventRecord) -> None:
    doc["coach"] = e.data["coach"]
    doc["coach_agency"] = e.agency


def _appointment_scheduled(doc: Doc, e: EventRecord) -> None:
    d = e.data
    doc["appointments"][d["appointment_id"]] = {
        "appointment_id": d["appointment_id"],
        "kind": d["kind"],
        "at": d["at"],
        "state": "scheduled",
        "agency": e.agency,
    }


def _appointment(state: str) -> Callable[[Doc, EventRecord], None]:
    def apply(doc: Doc, e: EventRecord) -> None:
        doc["appointments"][e.data["appointment_id"]]["state"] = state

    return apply


def _agreement_signed(doc: Doc, e: EventRecord) -> None:
    doc["agreement_signed_at"] = e.occurred_at
    _activate_when_ready(doc)


def _plan(doc: Doc, e: EventRecord) -> None:
    doc["plan"] = {"goals": e.data["goals"], "modules": e.data["modules"], "agency": e.agency}


def _measure_started(doc: Doc, e: EventRecord) -> None:
    d = e.data
    doc["measures"][d["measure_id"]] = {
        "measure_id": d["measure_id"],
        "kind": d["kind"],
        "title": d["title"],
        "started_at": e.occurred_at,
        "ended_at": None,
        "result": None,
        "agency": e.agency,
    }


def _measure_ended(doc: Doc, e: EventRecord) -> None:
    measure = doc["measures"][e.data["measure_id"]]
    measure["ended_at"] = e.occurred_at
    measure["result"] = e.data.get("result")


def _assignment_extended(doc: Doc, e: EventRecord) -> None:
    doc["extension_months"] += e.data["months"]


def _employment_started(doc: Doc, e: EventRecord) -> None:
    d = e.data
    doc["employment"] = {
        "employer": d.get("employer"),  # withheld from Kafka envelopes
        "kind": d["kind"],
        "start_date": d["start_date"],
        "agency": e.agency,
        "recorded_at": e.occurred_at,
    }
    doc["stage"] = "employed"


def _aftercare_started(doc: Doc, e: EventRecord) -> None:
    doc["aftercare"] = {"started_at": e.occurred_at, "until": e.data.get("until"), "ended_at": None}
    doc["stage"] = "aftercare"


def _aftercare_ended(doc: Doc, e: EventRecord) -> None:
    doc["aftercare"]["ended_at"] = e.occurred_at


def _note_source(doc: Doc, author: str | None, category: str) -> str | None:
    """Whose data a note is: a coach who knows a category only because a handover
    carried it (e.g. health from the clinic) writes down that source's data, not its
    own. A consent alone carries nothing (DOMAIN rule 3): without such a handover
    the note is the author's own."""
    if category == "notes":  # working notes are the author's own
        return author
    for h in doc["handovers"].values():
        if (
            h["to_agency"] == author
            and category in h["data_categories"]
            and h["state"] in ("accepted", "completed")
        ):
            return chain_origin(doc, h)
    return author


def chain_origin(doc: Doc, handover: Doc) -> str:
    """The agency that started ``handover``'s forwarding chain (its own sender if none)."""
    seen = {handover["handover_id"]}
    current = handover
    while (previous := doc["handovers"].get(current["forwarded_from"] or "")) is not None:
        if previous["handover_id"] in seen:
            break
        seen.add(previous["handover_id"])
        current = previous
    return cast(str, current["from_agency"])


def _note_added(doc: Doc, e: EventRecord) -> None:
    category = e.data["category"]
    doc["notes"].append(
        {
            "category": category,
            "text": e.data.get("text"),
            "agency": e.agency,
            "source": _note_source(doc, e.agency, category),
            "at": e.occurred_at,
        }
    )


def _case_closed(doc: Doc, e: EventRecord) -> None:
    doc["stage"] = "closed"
    doc["outcome"] = e.data["outcome"]
    doc["outcome_target"] = e.data.get("target")  # absent in schema v1 events
    doc["closed_at"] = e.occurred_at


def _erased(value: Any) -> Any:
    """``value`` blanked: lists stay lists, an absent optional field stays absent."""
    if isinstance(value, list):
        return [ERASED] * len(value)
    return None if value is None else ERASED


def _without_ciphertext(value: Any) -> Any:
    if isinstance(value, str):
        return ERASED if value.startswith(CIPHERTEXT_PREFIX) else value
    if isinstance(value, dict):
        return {k: _without_ciphertext(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_without_ciphertext(v) for v in value]
    return value


def _participant_erased(doc: Doc, e: EventRecord) -> None:
    doc["erased_at"] = e.occurred_at
    doc["participant"]["fields"] = dict.fromkeys(doc["participant"]["fields"], ERASED)
    doc["participant"]["erased"] = True
    for section, keys in ERASED_IN.items():
        if doc[section] is not None:
            doc[section].update({key: _erased(doc[section].get(key)) for key in keys})
    for section, keys in ERASED_IN_EACH.items():
        items = doc[section].values() if isinstance(doc[section], dict) else doc[section]
        for item in items:
            item.update({key: _erased(item.get(key)) for key in keys})
    # The participant's key is gone: no ciphertext of this case can be read again.
    doc.update(_without_ciphertext(doc))


APPLY: dict[str, Callable[[Doc, EventRecord], None]] = {
    "ConsentGranted": _consent_granted,
    "ConsentRevoked": _consent_revoked,
    "HandoverOffered": _handover_offered,
    "HandoverAccepted": _handover_accepted,
    "HandoverDeclined": _decided("declined"),
    "HandoverWithdrawn": _decided("withdrawn"),
    "HandoverForwarded": _handover_forwarded,
    "HandoverCompleted": _handover_completed,
    "RehabDecided": _rehab_decided,
    "ExpertOpinionRequested": _expert_opinion_requested,
    "ExpertOpinionReceived": _expert_opinion_received,
    "LeadTransferred": _lead_transferred,
    "CoachAssigned": _coach_assigned,
    "AppointmentScheduled": _appointment_scheduled,
    "AppointmentHeld": _appointment("held"),
    "AppointmentMissed": _appointment("missed"),
    "AgreementSigned": _agreement_signed,
    "PlanAgreed": _plan,
    "PlanUpdated": _plan,
    "MeasureStarted": _measure_started,
    "MeasureEnded": _measure_ended,
    "AssignmentExtended": _assignment_extended,
    "EmploymentStarted": _employment_started,
    "AftercareStarted": _aftercare_started,
    "AftercareEnded": _aftercare_ended,
    "NoteAdded": _note_added,
    "CaseClosed": _case_closed,
    "ParticipantErased": _participant_erased,
}


def reduce_case(doc: Doc | None, event: EventRecord, *, in_place: bool = False) -> Doc:
    """The case after ``event``. Pure unless ``in_place`` (the runners' fast path,
    used only on documents they own)."""
    if event.type == "CaseOpened":
        return new_case(event)
    if doc is None:
        raise ValueError(f"event {event.position} ({event.type}) before the case was opened")
    result = doc if in_place else copy.deepcopy(doc)
    apply = APPLY.get(event.type)
    if apply is not None:  # events a view does not know (e.g. read audits) change nothing
        apply(result, event)
    if event.occurred_at is not None and event.type not in PASSIVE:
        result["last_activity_at"] = event.occurred_at
    result["version"] = event.version
    result["position"] = event.position
    return result
