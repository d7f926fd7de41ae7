"""The message envelope, one class per message type, and their union.

Every message is one envelope (``message_id``, ``type``, ``agency``,
``case_id``, ``occurred_at``, ``actor``, ``payload``) whose ``payload`` depends
on ``type``. ``Message`` is the union of all types, discriminated on ``type``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import BaseModel, Field, TypeAdapter

from services.messages.fields import AgencyId, Model, Timestamp, UserId
from services.messages.payloads import (
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
    ExpertOpinionReceivedPayload,
    ExpertOpinionRequestedPayload,
    HandoverAcceptedPayload,
    HandoverCompletedPayload,
    HandoverDeclinedPayload,
    HandoverForwardedPayload,
    HandoverOfferedPayload,
    HandoverWithdrawnPayload,
    LeadTransferredPayload,
    MeasureEndedPayload,
    MeasureStartedPayload,
    NoteAddedPayload,
    ParticipantErasedPayload,
    PlanAgreedPayload,
    PlanUpdatedPayload,
    RehabDecidedPayload,
)


class _Envelope(Model):
    """Fields common to every message; subclasses narrow ``type`` and ``payload``."""

    message_id: UUID
    type: str
    agency: AgencyId
    case_id: UUID
    occurred_at: Timestamp
    actor: UserId
    schema_version: Literal[1] = 1
    payload: Model


class CaseOpenedMessage(_Envelope):
    type: Literal["case.opened"]
    payload: CaseOpenedPayload


class ConsentGrantedMessage(_Envelope):
    type: Literal["consent.granted"]
    payload: ConsentGrantedPayload


class ConsentRevokedMessage(_Envelope):
    type: Literal["consent.revoked"]
    payload: ConsentRevokedPayload


class HandoverOfferedMessage(_Envelope):
    type: Literal["handover.offered"]
    payload: HandoverOfferedPayload


class HandoverAcceptedMessage(_Envelope):
    type: Literal["handover.accepted"]
    payload: HandoverAcceptedPayload


class HandoverDeclinedMessage(_Envelope):
    type: Literal["handover.declined"]
    payload: HandoverDeclinedPayload


class HandoverForwardedMessage(_Envelope):
    type: Literal["handover.forwarded"]
    payload: HandoverForwardedPayload


class HandoverWithdrawnMessage(_Envelope):
    type: Literal["handover.withdrawn"]
    payload: HandoverWithdrawnPayload


class HandoverCompletedMessage(_Envelope):
    type: Literal["handover.completed"]
    payload: HandoverCompletedPayload


class CoachAssignedMessage(_Envelope):
    type: Literal["coach.assigned"]
    payload: CoachAssignedPayload


class AppointmentScheduledMessage(_Envelope):
    type: Literal["appointment.scheduled"]
    payload: AppointmentScheduledPayload


class AppointmentHeldMessage(_Envelope):
    type: Literal["appointment.held"]
    payload: AppointmentHeldPayload


class AppointmentMissedMessage(_Envelope):
    type: Literal["appointment.missed"]
    payload: AppointmentMissedPayload


class AgreementSignedMessage(_Envelope):
    type: Literal["agreement.signed"]
    payload: AgreementSignedPayload = Field(default_factory=AgreementSignedPayload)


class PlanAgreedMessage(_Envelope):
    type: Literal["plan.agreed"]
    payload: PlanAgreedPayload


class PlanUpdatedMessage(_Envelope):
    type: Literal["plan.updated"]
    payload: PlanUpdatedPayload


class MeasureStartedMessage(_Envelope):
    type: Literal["measure.started"]
    payload: MeasureStartedPayload


class MeasureEndedMessage(_Envelope):
    type: Literal["measure.ended"]
    payload: MeasureEndedPayload


class AssignmentExtendedMessage(_Envelope):
    type: Literal["assignment.extended"]
    payload: AssignmentExtendedPayload


class EmploymentStartedMessage(_Envelope):
    type: Literal["employment.started"]
    payload: EmploymentStartedPayload


class AftercareStartedMessage(_Envelope):
    type: Literal["aftercare.started"]
    payload: AftercareStartedPayload


class AftercareEndedMessage(_Envelope):
    type: Literal["aftercare.ended"]
    payload: AftercareEndedPayload = Field(default_factory=AftercareEndedPayload)


class NoteAddedMessage(_Envelope):
    type: Literal["note.added"]
    payload: NoteAddedPayload


class CaseClosedMessage(_Envelope):
    type: Literal["case.closed"]
    payload: CaseClosedPayload


class ParticipantErasedMessage(_Envelope):
    type: Literal["participant.erased"]
    payload: ParticipantErasedPayload


class RehabDecidedMessage(_Envelope):
    type: Literal["rehab.decided"]
    payload: RehabDecidedPayload


class ExpertOpinionRequestedMessage(_Envelope):
    type: Literal["expert_opinion.requested"]
    payload: ExpertOpinionRequestedPayload


class ExpertOpinionReceivedMessage(_Envelope):
    type: Literal["expert_opinion.received"]
    payload: ExpertOpinionReceivedPayload


class LeadTransferredMessage(_Envelope):
    type: Literal["lead.transferred"]
    payload: LeadTransferredPayload


Message = Annotated[
    CaseOpenedMessage
    | ConsentGrantedMessage
    | ConsentRevokedMessage
    | HandoverOfferedMessage
    | HandoverAcceptedMessage
    | HandoverDeclinedMessage
    | HandoverForwardedMessage
    | HandoverWithdrawnMessage
    | HandoverCompletedMessage
    | CoachAssignedMessage
    | AppointmentScheduledMessage
    | AppointmentHeldMessage
    | AppointmentMissedMessage
    | AgreementSignedMessage
    | PlanAgreedMessage
    | PlanUpdatedMessage
    | MeasureStartedMessage
    | MeasureEndedMessage
    | AssignmentExtendedMessage
    | EmploymentStartedMessage
    | AftercareStartedMessage
    | AftercareEndedMessage
    | NoteAddedMessage
    | CaseClosedMessage
    | ParticipantErasedMessage
    | RehabDecidedMessage
    | ExpertOpinionRequestedMessage
    | ExpertOpinionReceivedMessage
    | LeadTransferredMessage,
    Field(discriminator="type"),
]

MESSAGE_TYPES: dict[str, type[BaseModel]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls for cls in get_args(get_args(Message)[0])
}

MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


def event_type(message_type: str) -> str:
    """The name of the domain event a message type records: ``handover.offered`` is
    ``HandoverOffered`` (a convention the domain follows; a test checks it)."""
    words = message_type.replace("_", ".").split(".")
    return "".join(word.capitalize() for word in words)


def to_plain(message: BaseModel) -> dict[str, Any]:
    """The message as JSON-ready builtins (UUIDs and datetimes as strings)."""
    return message.model_dump(mode="json")


def _payload_class(message: type[BaseModel]) -> type[BaseModel]:
    annotation = message.model_fields["payload"].annotation
    if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
        raise TypeError(f"{message.__name__}.payload must be a model")
    return annotation


PAYLOAD_TYPES: dict[str, type[BaseModel]] = {
    type_: _payload_class(cls) for type_, cls in MESSAGE_TYPES.items()
}
