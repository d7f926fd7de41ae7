"""From a validated message to a call on the ``Case`` aggregate.

One small typed handler per payload class, registered with ``@handles``
(the message-bus shape of cosmicpython): a handler only unpacks its payload;
the rules themselves live in ``domain.case``. ``case.opened`` has no handler,
since it makes the case rather than changing one: see ``open_case``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from domain import errors
from domain.case import Act, Case
from domain.policy import DeadlinePolicy, PolicyBook
from domain.values import AgencyKind
from services.messages import (
    AftercareEndedPayload,
    AftercareStartedPayload,
    AgreementSignedPayload,
    AppointmentHeldPayload,
    AppointmentMissedPayload,
    AppointmentScheduledPayload,
    AssignmentExtendedPayload,
    CaseClosedPayload,
    CaseOpenedPayload,
    CoachAssignedPayload,
    ConsentGrantedPayload,
    ConsentRevokedPayload,
    EmploymentStartedPayload,
    HandoverAcceptedPayload,
    HandoverCompletedPayload,
    HandoverDeclinedPayload,
    HandoverForwardedPayload,
    HandoverOfferedPayload,
    HandoverWithdrawnPayload,
    MeasureEndedPayload,
    MeasureStartedPayload,
    Message,
    NoteAddedPayload,
    ParticipantErasedPayload,
    PlanAgreedPayload,
    PlanUpdatedPayload,
)
from services.messages.payloads import (
    ExpertOpinionReceivedPayload,
    ExpertOpinionRequestedPayload,
    LeadTransferredPayload,
    RehabDecidedPayload,
)


@dataclass(frozen=True)
class Context:
    """What a handler may need besides its payload: who acts, and the policies."""

    act: Act
    book: PolicyBook
    as_auditor: bool = False

    def policy(self, case: Case) -> DeadlinePolicy:
        return self.book.for_programme(case.programme)


P = TypeVar("P", bound=BaseModel)
Handler = Callable[[Case, P, Context], None]

HANDLERS: dict[type[BaseModel], Handler[Any]] = {}


def handles(payload: type[P]) -> Callable[[Handler[P]], Handler[P]]:
    """Register the decorated function as the handler of ``payload``'s message type."""

    def register(handler: Handler[P]) -> Handler[P]:
        if payload in HANDLERS:
            raise ValueError(f"{payload.__name__} already has a handler")
        HANDLERS[payload] = handler
        return handler

    return register


# ---- consents ------------------------------------------------------------------


@handles(ConsentGrantedPayload)
def grant_consent(case: Case, p: ConsentGrantedPayload, ctx: Context) -> None:
    case.grant_consent(
        ctx.act,
        consent_id=p.consent_id,
        categories=list(p.categories),
        source_agency=p.source_agency,
        recipients=list(p.recipients),
        valid_from=p.valid_from,
        valid_until=p.valid_until,
        purpose=p.purpose,
        document_ref=p.document_ref,
    )


@handles(ConsentRevokedPayload)
def revoke_consent(case: Case, p: ConsentRevokedPayload, ctx: Context) -> None:
    case.revoke_consent(ctx.act, consent_id=p.consent_id)


# ---- handovers -----------------------------------------------------------------


@handles(HandoverOfferedPayload)
def offer_handover(case: Case, p: HandoverOfferedPayload, ctx: Context) -> None:
    case.offer_handover(
        ctx.act,
        ctx.policy(case),
        handover_id=p.handover_id,
        kind=p.kind,
        to_agency=p.to_agency,
        data_categories=list(p.data_categories),
        reason=p.reason,
        due_at=p.due_at,
        priority=p.priority,
    )


@handles(HandoverAcceptedPayload)
def accept_handover(case: Case, p: HandoverAcceptedPayload, ctx: Context) -> None:
    case.accept_handover(ctx.act, ctx.policy(case), handover_id=p.handover_id)


@handles(HandoverDeclinedPayload)
def decline_handover(case: Case, p: HandoverDeclinedPayload, ctx: Context) -> None:
    case.decline_handover(ctx.act, handover_id=p.handover_id, reason=p.reason)


@handles(HandoverForwardedPayload)
def forward_handover(case: Case, p: HandoverForwardedPayload, ctx: Context) -> None:
    case.forward_handover(
        ctx.act,
        ctx.policy(case),
        handover_id=p.handover_id,
        new_handover_id=p.new_handover_id,
        to_agency=p.to_agency,
        reason=p.reason,
    )


@handles(HandoverWithdrawnPayload)
def withdraw_handover(case: Case, p: HandoverWithdrawnPayload, ctx: Context) -> None:
    case.withdraw_handover(ctx.act, handover_id=p.handover_id, reason=p.reason)


@handles(HandoverCompletedPayload)
def complete_handover(case: Case, p: HandoverCompletedPayload, ctx: Context) -> None:
    case.complete_handover(ctx.act, handover_id=p.handover_id)


# ---- § 14 SGB IX and the lead -----------------------------------------------------


@handles(RehabDecidedPayload)
def decide_rehab(case: Case, p: RehabDecidedPayload, ctx: Context) -> None:
    case.decide_rehab(
        ctx.act,
        ctx.policy(case),
        handover_id=p.handover_id,
        outcome=p.outcome,
        reason=p.reason,
        document_ref=p.document_ref,
    )


@handles(ExpertOpinionRequestedPayload)
def request_expert_opinion(case: Case, p: ExpertOpinionRequestedPayload, ctx: Context) -> None:
    case.request_expert_opinion(ctx.act, handover_id=p.handover_id)


@handles(ExpertOpinionReceivedPayload)
def receive_expert_opinion(case: Case, p: ExpertOpinionReceivedPayload, ctx: Context) -> None:
    case.receive_expert_opinion(ctx.act, ctx.policy(case), handover_id=p.handover_id)


@handles(LeadTransferredPayload)
def transfer_lead(case: Case, p: LeadTransferredPayload, ctx: Context) -> None:
    case.transfer_lead(ctx.act, ctx.policy(case), to_agency=p.to_agency, reason=p.reason)


# ---- coaching: coach, appointments, agreement, plan, measures --------------------


@handles(CoachAssignedPayload)
def assign_coach(case: Case, p: CoachAssignedPayload, ctx: Context) -> None:
    case.assign_coach(ctx.act, coach=p.coach)


@handles(AppointmentScheduledPayload)
def schedule_appointment(case: Case, p: AppointmentScheduledPayload, ctx: Context) -> None:
    case.schedule_appointment(ctx.act, appointment_id=p.appointment_id, kind=p.kind, at=p.at)


@handles(AppointmentHeldPayload)
def appointment_held(case: Case, p: AppointmentHeldPayload, ctx: Context) -> None:
    case.record_appointment_held(ctx.act, appointment_id=p.appointment_id)


@handles(AppointmentMissedPayload)
def appointment_missed(case: Case, p: AppointmentMissedPayload, ctx: Context) -> None:
    case.record_appointment_missed(ctx.act, appointment_id=p.appointment_id)


@handles(AgreementSignedPayload)
def sign_agreement(case: Case, p: AgreementSignedPayload, ctx: Context) -> None:
    case.sign_agreement(ctx.act)


@handles(PlanAgreedPayload)
def agree_plan(case: Case, p: PlanAgreedPayload, ctx: Context) -> None:
    case.agree_plan(ctx.act, goals=list(p.goals), modules=list(p.modules))


@handles(PlanUpdatedPayload)
def update_plan(case: Case, p: PlanUpdatedPayload, ctx: Context) -> None:
    case.update_plan(ctx.act, goals=list(p.goals), modules=list(p.modules))


@handles(MeasureStartedPayload)
def start_measure(case: Case, p: MeasureStartedPayload, ctx: Context) -> None:
    case.start_measure(ctx.act, measure_id=p.measure_id, kind=p.kind, title=p.title)


@handles(MeasureEndedPayload)
def end_measure(case: Case, p: MeasureEndedPayload, ctx: Context) -> None:
    case.end_measure(ctx.act, measure_id=p.measure_id, result=p.result)


@handles(AssignmentExtendedPayload)
def extend_assignment(case: Case, p: AssignmentExtendedPayload, ctx: Context) -> None:
    case.extend_assignment(ctx.act, months=p.months, reason=p.reason)


# ---- employment, aftercare, notes, closure, erasure -----------------------------


@handles(EmploymentStartedPayload)
def start_employment(case: Case, p: EmploymentStartedPayload, ctx: Context) -> None:
    case.start_employment(ctx.act, employer=p.employer, kind=p.kind, start_date=_day(p.start_date))


@handles(AftercareStartedPayload)
def start_aftercare(case: Case, p: AftercareStartedPayload, ctx: Context) -> None:
    case.start_aftercare(ctx.act, until=p.until)


@handles(AftercareEndedPayload)
def end_aftercare(case: Case, p: AftercareEndedPayload, ctx: Context) -> None:
    case.end_aftercare(ctx.act)


@handles(NoteAddedPayload)
def add_note(case: Case, p: NoteAddedPayload, ctx: Context) -> None:
    case.add_note(ctx.act, text=p.text, category=p.category)


@handles(CaseClosedPayload)
def close_case(case: Case, p: CaseClosedPayload, ctx: Context) -> None:
    case.close(ctx.act, outcome=p.outcome, withdraw_open=p.withdraw_open, target=p.target)


@handles(ParticipantErasedPayload)
def erase_participant(case: Case, p: ParticipantErasedPayload, ctx: Context) -> None:
    case.erase_participant(
        ctx.act, ctx.policy(case), reason=p.reason, ground=p.ground, as_auditor=ctx.as_auditor
    )


# ---- entry points for the application service ------------------------------------


def _day(value: date | str) -> str:
    # Personal dates arrive sealed, as ciphertext strings; the domain keeps ISO text.
    return value.isoformat() if isinstance(value, date) else value


def open_case(message: Message, book: PolicyBook, received: Received) -> Case:
    p = message.payload
    if not isinstance(p, CaseOpenedPayload):
        raise TypeError("only a case.opened message opens a case")
    policy = book.for_programme(p.programme)
    return Case.open(
        message.case_id,
        act_of(message, policy, received),
        policy,
        programme=p.programme,
        site=p.site,
        assignment_months=p.assignment_months,
        participant={
            name: _day(value) for name, value in dict(p.participant).items() if value is not None
        },
    )


@dataclass(frozen=True)
class Received:
    """How the hub received a message: its own clock, and the registered kinds of the
    agencies the message names (roles follow kinds)."""

    at: datetime
    kinds: dict[str, AgencyKind]


def act_of(message: Message, policy: DeadlinePolicy, received: Received) -> Act:
    return Act(
        agency=message.agency,
        actor=message.actor,
        occurred_at=message.occurred_at,
        recorded_at=received.at,
        kinds=received.kinds,
        future_skew=policy.clock.future_skew,
    )


def apply_to_case(
    case: Case,
    message: Message,
    book: PolicyBook,
    received: Received,
    *,
    as_auditor: bool = False,
) -> None:
    if isinstance(message.payload, CaseOpenedPayload):
        raise errors.CaseExists(f"case {message.case_id} is already opened")
    handler = HANDLERS[type(message.payload)]
    act = act_of(message, book.for_programme(case.programme), received)
    handler(case, message.payload, Context(act, book, as_auditor))


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
