"""One valid handover message of every type (API.md), keyed by type.

Reusable by any test: copy an example (``copy.deepcopy``) before changing it.
Ids are fixed so examples are stable; personal values are invented.
"""

from __future__ import annotations

from typing import Any

CASE_ID = "6f1c2a0e-7f43-4a8e-9a51-2b1d0c6e9f10"
HANDOVER_ID = "0b8e2c44-1d0a-4e0f-8d0f-5d8a9b3c2e71"
NEW_HANDOVER_ID = "9a4d6e1f-3b2c-4c5d-8e7f-1a2b3c4d5e6f"
APPOINTMENT_ID = "3c9f5b2a-8d1e-4f6a-9b0c-7e2d1a4f8b35"
MEASURE_ID = "e5a7c3d1-2b4f-4a6e-8c0d-9f1b3e5a7c29"
OCCURRED_AT = "2026-11-02T09:30:00+01:00"


def _message(
    number: int, type_: str, agency: str, payload: dict[str, Any] | None
) -> dict[str, Any]:
    message: dict[str, Any] = {
        "message_id": f"00000000-0000-4000-8000-{number:012d}",
        "type": type_,
        "agency": agency,
        "case_id": CASE_ID,
        "occurred_at": OCCURRED_AT,
        "actor": "cm-42",
    }
    if payload is not None:
        message["payload"] = payload
    return message


VALID_EXAMPLES: dict[str, dict[str, Any]] = {
    "case.opened": _message(
        1,
        "case.opened",
        "jc-trier",
        {
            "programme": "inklusionsinitiative-trier",
            "site": "trier-nord",
            "assignment_months": 12,
            "participant": {
                "pseudonym": "P-7Q2X",
                "name": "Max Beispiel",
                "birth_date": "1990-04-17",
                "contact": "max@example.org",
            },
        },
    ),
    "consent.granted": _message(
        2,
        "consent.granted",
        "jc-trier",
        {
            "consent_id": "consent-2026-001",
            "categories": ["health", "contact"],
            "source_agency": "clinic-trier",
            "recipients": ["jc-trier"],
            "valid_from": "2026-11-01T00:00:00+01:00",
            "valid_until": "2027-11-01T00:00:00+01:00",
        },
    ),
    "consent.revoked": _message(
        3, "consent.revoked", "jc-trier", {"consent_id": "consent-2026-001"}
    ),
    "handover.offered": _message(
        4,
        "handover.offered",
        "clinic-trier",
        {
            "handover_id": HANDOVER_ID,
            "kind": "discharge",
            "to_agency": "jc-trier",
            "data_categories": ["health", "contact"],
            "reason": "discharge planned in ten days",
            "due_at": "2026-11-09T09:30:00+01:00",
        },
    ),
    "handover.accepted": _message(5, "handover.accepted", "jc-trier", {"handover_id": HANDOVER_ID}),
    "handover.declined": _message(
        6, "handover.declined", "jc-trier", {"handover_id": HANDOVER_ID, "reason": "not competent"}
    ),
    "handover.forwarded": _message(
        7,
        "handover.forwarded",
        "aa-trier",
        {
            "handover_id": HANDOVER_ID,
            "new_handover_id": NEW_HANDOVER_ID,
            "to_agency": "drv-rlp",
            "reason": "pension insurance is competent (§ 14 SGB IX)",
        },
    ),
    "handover.withdrawn": _message(
        8,
        "handover.withdrawn",
        "clinic-trier",
        {"handover_id": HANDOVER_ID, "reason": "sent in error"},
    ),
    "handover.completed": _message(
        9, "handover.completed", "jc-trier", {"handover_id": HANDOVER_ID}
    ),
    "coach.assigned": _message(10, "coach.assigned", "coach-trier", {"coach": "coach-7"}),
    "appointment.scheduled": _message(
        11,
        "appointment.scheduled",
        "coach-trier",
        {
            "appointment_id": APPOINTMENT_ID,
            "kind": "information",
            "at": "2026-11-05T10:00:00+01:00",
        },
    ),
    "appointment.held": _message(
        12, "appointment.held", "coach-trier", {"appointment_id": APPOINTMENT_ID}
    ),
    "appointment.missed": _message(
        13, "appointment.missed", "coach-trier", {"appointment_id": APPOINTMENT_ID}
    ),
    "agreement.signed": _message(14, "agreement.signed", "coach-trier", {}),
    "plan.agreed": _message(
        15,
        "plan.agreed",
        "coach-trier",
        {"goals": ["internship in retail"], "modules": ["application training", "internship"]},
    ),
    "plan.updated": _message(
        16,
        "plan.updated",
        "coach-trier",
        {"goals": ["training as a sales assistant"], "modules": []},
    ),
    "measure.started": _message(
        17,
        "measure.started",
        "coach-trier",
        {"measure_id": MEASURE_ID, "kind": "internship", "title": "Four weeks at a local bakery"},
    ),
    "measure.ended": _message(
        18, "measure.ended", "coach-trier", {"measure_id": MEASURE_ID, "result": "completed"}
    ),
    "assignment.extended": _message(
        19, "assignment.extended", "jc-trier", {"months": 3, "reason": "internship continues"}
    ),
    "employment.started": _message(
        20,
        "employment.started",
        "coach-trier",
        {"employer": "Bäckerei Beispiel GmbH", "kind": "employment", "start_date": "2027-03-01"},
    ),
    "aftercare.started": _message(
        21, "aftercare.started", "coach-trier", {"until": "2027-09-01T00:00:00+02:00"}
    ),
    "aftercare.ended": _message(22, "aftercare.ended", "coach-trier", {}),
    "note.added": _message(
        23, "note.added", "coach-trier", {"text": "First interview went well.", "category": "notes"}
    ),
    "case.closed": _message(24, "case.closed", "jc-trier", {"outcome": "employed"}),
    "participant.erased": _message(
        25, "participant.erased", "jc-trier", {"reason": "retention period ended"}
    ),
    "rehab.decided": _message(
        26,
        "rehab.decided",
        "drv-rlp",
        {
            "handover_id": HANDOVER_ID,
            "outcome": "partly_granted",
            "reason": "Leistungen zur Teilhabe bewilligt, ohne Umschulung",
            "document_ref": "DRV-Bescheid-2026-0417",
        },
    ),
    "expert_opinion.requested": _message(
        27, "expert_opinion.requested", "drv-rlp", {"handover_id": HANDOVER_ID}
    ),
    "expert_opinion.received": _message(
        28, "expert_opinion.received", "drv-rlp", {"handover_id": HANDOVER_ID}
    ),
    "lead.transferred": _message(
        29, "lead.transferred", "jc-trier", {"to_agency": "aa-trier", "reason": "SGB III"}
    ),
}
