"""The payload of each message type (API.md, "Handover messages").

Every text field is marked: ``Personal(category)`` for the participant's data
(encrypted per participant before the domain sees it), or ``NotPersonal``
through its type or in place. ``tests/unit/test_personal_marks.py`` fails on a
text field that is neither.
"""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import Field, model_validator

from domain.values import (
    AppointmentKind,
    DataCategory,
    EmploymentKind,
    HandoverKind,
    Outcome,
    RehabOutcome,
)
from services.messages.fields import (
    AgencyId,
    Categories,
    Code,
    ConsentId,
    Day,
    DocumentRef,
    Model,
    Name,
    NoteText,
    Pseudonym,
    Recipients,
    Text500,
    TextList,
    Timestamp,
    UserId,
)
from services.messages.personal import NotPersonal, Personal

IDENTITY = Personal(DataCategory.IDENTITY)
CONTACT = Personal(DataCategory.CONTACT)
NOTES = Personal(DataCategory.NOTES)
PLAN = Personal(DataCategory.PLAN)
EMPLOYMENT = Personal(DataCategory.EMPLOYMENT_HISTORY)


class Participant(Model):
    pseudonym: Pseudonym
    name: Annotated[Name | None, IDENTITY] = None
    birth_date: Annotated[Day | None, IDENTITY] = None
    contact: Annotated[Text500 | None, CONTACT] = None


class CaseOpenedPayload(Model):
    programme: Code
    site: Code | None = None
    assignment_months: int = Field(default=12, ge=1, le=36)
    participant: Participant


class ConsentGrantedPayload(Model):
    consent_id: ConsentId
    categories: Annotated[Categories, Field(min_length=1)]
    source_agency: AgencyId
    recipients: Recipients
    valid_from: Timestamp
    valid_until: Timestamp | None = None
    # What the participant consented to, in the agency's words: part of the record of
    # who was allowed what, so it outlives erasure and must name no personal data.
    purpose: Annotated[Text500 | None, NotPersonal("the purpose named on the form")] = None
    document_ref: DocumentRef | None = None

    @model_validator(mode="after")
    def _period(self) -> ConsentGrantedPayload:
        if self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class ConsentRevokedPayload(Model):
    consent_id: ConsentId


class HandoverOfferedPayload(Model):
    handover_id: UUID
    kind: HandoverKind
    to_agency: AgencyId
    data_categories: Categories = Field(default_factory=list)
    reason: Annotated[Text500 | None, NOTES] = None
    due_at: Timestamp | None = None
    # Added in event schema v2; absent means "normal".
    priority: Literal["normal", "urgent"] = "normal"


class HandoverAcceptedPayload(Model):
    handover_id: UUID


class HandoverDeclinedPayload(Model):
    handover_id: UUID
    reason: Annotated[Text500, NOTES]


class HandoverForwardedPayload(Model):
    handover_id: UUID
    new_handover_id: UUID
    to_agency: AgencyId
    reason: Annotated[Text500, NOTES]


class HandoverWithdrawnPayload(Model):
    handover_id: UUID
    reason: Annotated[Text500, NOTES]


class HandoverCompletedPayload(Model):
    handover_id: UUID


class CoachAssignedPayload(Model):
    coach: UserId


class AppointmentScheduledPayload(Model):
    appointment_id: UUID
    kind: AppointmentKind
    at: Timestamp


class AppointmentHeldPayload(Model):
    appointment_id: UUID


class AppointmentMissedPayload(Model):
    appointment_id: UUID


class AgreementSignedPayload(Model):
    pass


class PlanAgreedPayload(Model):
    goals: Annotated[TextList, PLAN]
    modules: Annotated[TextList, PLAN]


class PlanUpdatedPayload(Model):
    goals: Annotated[TextList, PLAN]
    modules: Annotated[TextList, PLAN]


class MeasureStartedPayload(Model):
    measure_id: UUID
    kind: Code
    title: Annotated[Text500, PLAN]  # measures are part of the plan in every view


class MeasureEndedPayload(Model):
    measure_id: UUID
    result: Annotated[Text500 | None, PLAN] = None


class AssignmentExtendedPayload(Model):
    months: int = Field(ge=1, le=24)
    reason: Annotated[Text500, NOTES]


class EmploymentStartedPayload(Model):
    employer: Annotated[Name, EMPLOYMENT]
    kind: EmploymentKind
    start_date: Day


class AftercareStartedPayload(Model):
    until: Timestamp | None = None


class AftercareEndedPayload(Model):
    pass


class NoteAddedPayload(Model):
    # Marked as notes; the note's own ``category`` decides who may read it.
    text: Annotated[NoteText, NOTES]
    category: DataCategory = DataCategory.NOTES


class CaseClosedPayload(Model):
    outcome: Outcome
    # Withdraw every open handover (recorded one by one) instead of being refused.
    withdraw_open: bool = False
    # For ``transferred``: the agency or programme the case went to.
    target: Code | None = None


class RehabDecidedPayload(Model):
    handover_id: UUID
    outcome: RehabOutcome
    reason: Annotated[Text500 | None, NOTES] = None
    # The decision notice (Bescheid): supports the date of a decision entered late.
    document_ref: DocumentRef | None = None


class ExpertOpinionRequestedPayload(Model):
    handover_id: UUID


class ExpertOpinionReceivedPayload(Model):
    handover_id: UUID


class LeadTransferredPayload(Model):
    to_agency: AgencyId
    reason: Annotated[Text500, NOTES]


class ParticipantErasedPayload(Model):
    # Sealed with the participant's key, the reason would be shredded in the same
    # transaction that records it; it is the controller's proof of why (Art. 5(2)
    # GDPR), so it stays readable and must name no personal data.
    reason: Annotated[Text500, NotPersonal("the controller's record of why data was erased")]
    # An Art. 17 GDPR request that ends retention early (recorded; names no person).
    ground: Annotated[
        Text500 | None, NotPersonal("the legal ground of an early erasure, e.g. Art. 17 (1) b")
    ] = None
