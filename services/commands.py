"""From a validated message to a call on the ``Case`` aggregate.

One small function per message type, looked up by ``type``; each only unpacks
the payload. The rules themselves live in ``domain.case``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from domain import errors
from domain.case import Act, Case
from domain.policy import PolicyBook
from services.messages import Message

Handler = Callable[[Case, Act, Any, PolicyBook, bool], None]


def _policy(case: Case, book: PolicyBook) -> Any:
    return book.for_programme(case.programme)


HANDLERS: dict[str, Handler] = {
    "consent.granted": lambda case, act, p, book, auditor: case.grant_consent(
        act,
        consent_id=p.consent_id,
        categories=list(p.categories),
        source_agency=p.source_agency,
        recipients=list(p.recipients),
        valid_from=p.valid_from,
        valid_until=p.valid_until,
    ),
    "consent.revoked": lambda case, act, p, book, auditor: case.revoke_consent(
        act, consent_id=p.consent_id
    ),
    "handover.offered": lambda case, act, p, book, auditor: case.offer_handover(
        act,
        _policy(case, book),
        handover_id=p.handover_id,
        kind=p.kind,
        to_agency=p.to_agency,
        data_categories=list(p.data_categories),
        reason=p.reason,
        due_at=p.due_at,
        priority=p.priority,
    ),
    "handover.accepted": lambda case, act, p, book, auditor: case.accept_handover(
        act, handover_id=p.handover_id
    ),
    "handover.declined": lambda case, act, p, book, auditor: case.decline_handover(
        act, handover_id=p.handover_id, reason=p.reason
    ),
    "handover.forwarded": lambda case, act, p, book, auditor: case.forward_handover(
        act,
        _policy(case, book),
        handover_id=p.handover_id,
        new_handover_id=p.new_handover_id,
        to_agency=p.to_agency,
        reason=p.reason,
    ),
    "handover.withdrawn": lambda case, act, p, book, auditor: case.withdraw_handover(
        act, handover_id=p.handover_id, reason=p.reason
    ),
    "handover.completed": lambda case, act, p, book, auditor: case.complete_handover(
        act, handover_id=p.handover_id
    ),
    "coach.assigned": lambda case, act, p, book, auditor: case.assign_coach(act, coach=p.coach),
    "appointment.scheduled": lambda case, act, p, book, auditor: case.schedule_appointment(
        act, appointment_id=p.appointment_id, kind=p.kind, at=p.at
    ),
    "appointment.held": lambda case, act, p, book, auditor: case.record_appointment_held(
        act, appointment_id=p.appointment_id
    ),
    "appointment.missed": lambda case, act, p, book, auditor: case.record_appointment_missed(
        act, appointment_id=p.appointment_id
    ),
    "agreement.signed": lambda case, act, p, book, auditor: case.sign_agreement(act),
    "plan.agreed": lambda case, act, p, book, auditor: case.agree_plan(
        act, goals=list(p.goals), modules=list(p.modules)
    ),
    "plan.updated": lambda case, act, p, book, auditor: case.update_plan(
        act, goals=list(p.goals), modules=list(p.modules)
    ),
    "measure.started": lambda case, act, p, book, auditor: case.start_measure(
        act, measure_id=p.measure_id, kind=p.kind, title=p.title
    ),
    "measure.ended": lambda case, act, p, book, auditor: case.end_measure(
        act, measure_id=p.measure_id, result=p.result
    ),
    "assignment.extended": lambda case, act, p, book, auditor: case.extend_assignment(
        act, months=p.months, reason=p.reason
    ),
    "employment.started": lambda case, act, p, book, auditor: case.start_employment(
        act, employer=p.employer, kind=p.kind, start_date=p.start_date.isoformat()
    ),
    "aftercare.started": lambda case, act, p, book, auditor: case.start_aftercare(
        act, until=p.until
    ),
    "aftercare.ended": lambda case, act, p, book, auditor: case.end_aftercare(act),
    "note.added": lambda case, act, p, book, auditor: case.add_note(
        act, text=p.text, category=p.category
    ),
    "case.closed": lambda case, act, p, book, auditor: case.close(act, outcome=p.outcome),
    "participant.erased": lambda case, act, p, book, auditor: case.erase_participant(
        act, reason=p.reason, as_auditor=auditor
    ),
}


def open_case(message: Message) -> Case:
    p = message.payload
    return Case.open(
        message.case_id,
        act_of(message),
        programme=p.programme,
        site=p.site,
        assignment_months=p.assignment_months,
        # Field by field: personal fields may already be ciphertext strings.
        participant={
            name: value.isoformat() if isinstance(value, date) else value
            for name, value in dict(p.participant).items()
            if value is not None
        },
    )


def act_of(message: Message) -> Act:
    return Act(agency=message.agency, actor=message.actor, occurred_at=message.occurred_at)


def apply_to_case(
    case: Case, message: Message, book: PolicyBook, *, as_auditor: bool = False
) -> None:
    if message.type == "case.opened":
        raise errors.CaseExists(f"case {message.case_id} is already opened")
    HANDLERS[message.type](case, act_of(message), message.payload, book, as_auditor)


def referenced_agencies(message: Message) -> set[str]:
    """Every agency id a message names, so the service can check they exist."""
    p = message.payload
    names = {message.agency}
    for attr in ("to_agency", "source_agency"):
        value = getattr(p, attr, None)
        if value:
            names.add(value)
    names.update(getattr(p, "recipients", None) or ())
    return names
