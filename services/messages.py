"""Inbound handover messages (API.md, "Handover messages") as pydantic models.

Every message an agency sends, over HTTP or Kafka, is one envelope
(``message_id``, ``type``, ``agency``, ``case_id``, ``occurred_at``, ``actor``,
``payload``) whose ``payload`` depends on ``type``. ``Message`` is the union of
all 25 types, discriminated on ``type``; ``parse_message`` turns raw input into
one of them or raises ``MessageInvalid``.

Errors never echo input values: messages carry personal data, and refusals end
up in logs, dead-letter queues and HTTP answers.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, get_args
from uuid import UUID

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from domain.values import (
    AppointmentKind,
    DataCategory,
    EmploymentKind,
    HandoverKind,
    Outcome,
)

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MESSAGE_ADAPTER",
    "MESSAGE_TYPES",
    "SCHEMA_ID",
    "AgencyId",
    "Message",
    "MessageInvalid",
    "Participant",
    "message_json_schema",
    "parse_message",
    "to_plain",
]

MAX_MESSAGE_BYTES = 64 * 1024
MAX_LIST_ITEMS = 50
SCHEMA_ID = "https://hub.example/schemas/messages.v1.json"
SCHEMA_TITLE = "Hub handover message v1"


# --- field types -----------------------------------------------------------


def _no_duplicates(values: list[Any]) -> list[Any]:
    if len(set(values)) != len(values):
        raise ValueError("must not list the same value twice")
    return values


def _not_a_number(value: Any) -> Any:
    # Pydantic would read numbers as Unix timestamps; the contract is ISO 8601.
    if isinstance(value, int | float):
        raise ValueError("must be an ISO 8601 string, not a number")
    return value


AgencyId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9._-]{1,63}$")]
ConsentId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")]
ShortId = Annotated[str, StringConstraints(min_length=1, max_length=64)]
UserId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Text500 = Annotated[str, StringConstraints(min_length=1, max_length=500)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=200)]
NoteText = Annotated[str, StringConstraints(min_length=1, max_length=10_000)]
Timestamp = Annotated[AwareDatetime, BeforeValidator(_not_a_number)]
Day = Annotated[dt.date, BeforeValidator(_not_a_number)]

_UNIQUE = {"uniqueItems": True}
Categories = Annotated[
    list[DataCategory],
    Field(max_length=MAX_LIST_ITEMS, json_schema_extra=_UNIQUE),
    AfterValidator(_no_duplicates),
]
Recipients = Annotated[
    list[AgencyId],
    Field(min_length=1, max_length=MAX_LIST_ITEMS, json_schema_extra=_UNIQUE),
    AfterValidator(_no_duplicates),
]
TextList = Annotated[list[Text500], Field(max_length=MAX_LIST_ITEMS)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


# --- payloads ----------------------------------------------------------------


class Participant(_Model):
    pseudonym: ShortId
    name: Name | None = None
    birth_date: Day | None = None
    contact: Text500 | None = None


class CaseOpenedPayload(_Model):
    programme: ShortId
    site: ShortId | None = None
    assignment_months: int = Field(default=12, ge=1, le=36)
    participant: Participant


class ConsentGrantedPayload(_Model):
    consent_id: ConsentId
    categories: Annotated[Categories, Field(min_length=1)]
    source_agency: AgencyId
    recipients: Recipients
    valid_from: Timestamp
    valid_until: Timestamp | None = None

    @model_validator(mode="after")
    def _period(self) -> ConsentGrantedPayload:
        if self.valid_until is not None and self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


class ConsentRevokedPayload(_Model):
    consent_id: ConsentId


class HandoverOfferedPayload(_Model):
    handover_id: UUID
    kind: HandoverKind
    to_agency: AgencyId
    data_categories: Categories = Field(default_factory=list)
    reason: Text500 | None = None
    due_at: Timestamp | None = None
    # Added in event schema v2; absent means "normal".
    priority: Literal["normal", "urgent"] = "normal"


class HandoverAcceptedPayload(_Model):
    handover_id: UUID


class HandoverDeclinedPayload(_Model):
    handover_id: UUID
    reason: Text500


class HandoverForwardedPayload(_Model):
    handover_id: UUID
    new_handover_id: UUID
    to_agency: AgencyId
    reason: Text500


class HandoverWithdrawnPayload(_Model):
    handover_id: UUID
    reason: Text500


class HandoverCompletedPayload(_Model):
    handover_id: UUID


class CoachAssignedPayload(_Model):
    coach: UserId


class AppointmentScheduledPayload(_Model):
    appointment_id: UUID
    kind: AppointmentKind
    at: Timestamp


class AppointmentHeldPayload(_Model):
    appointment_id: UUID


class AppointmentMissedPayload(_Model):
    appointment_id: UUID


class AgreementSignedPayload(_Model):
    pass


class PlanAgreedPayload(_Model):
    goals: TextList
    modules: TextList


class PlanUpdatedPayload(_Model):
    goals: TextList
    modules: TextList


class MeasureStartedPayload(_Model):
    measure_id: UUID
    kind: ShortId
    title: Text500


class MeasureEndedPayload(_Model):
    measure_id: UUID
    result: Text500 | None = None


class AssignmentExtendedPayload(_Model):
    months: int = Field(ge=1, le=24)
    reason: Text500


class EmploymentStartedPayload(_Model):
    employer: Name
    kind: EmploymentKind
    start_date: Day


class AftercareStartedPayload(_Model):
    until: Timestamp | None = None


class AftercareEndedPayload(_Model):
    pass


class NoteAddedPayload(_Model):
    text: NoteText
    category: DataCategory = DataCategory.NOTES


class CaseClosedPayload(_Model):
    outcome: Outcome


class ParticipantErasedPayload(_Model):
    reason: Text500


# --- messages ----------------------------------------------------------------


class _Envelope(_Model):
    """Fields common to every message; subclasses narrow ``type`` and ``payload``."""

    message_id: UUID
    type: str
    agency: AgencyId
    case_id: UUID
    occurred_at: Timestamp
    actor: UserId
    schema_version: Literal[1] = 1
    payload: _Model


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
    | ParticipantErasedMessage,
    Field(discriminator="type"),
]

MESSAGE_TYPES: dict[str, type[BaseModel]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls for cls in get_args(get_args(Message)[0])
}

MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)


# --- parsing -----------------------------------------------------------------


class MessageInvalid(Exception):
    """A message was refused before any rule saw it.

    ``code`` is one of ``too_large``, ``malformed_json``, ``schema_invalid``,
    ``unknown_type``. ``message`` and ``details`` never contain input values.
    """

    def __init__(
        self, code: str, message: str, details: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details: list[dict[str, str]] = details or []


def _problem(error: Any) -> str:
    """Pydantic's message for one error, cut where it could quote the input."""
    msg = str(error["msg"])
    if error["type"] not in {"json_invalid", "value_error"} and "error" in error.get("ctx", {}):
        # Parsing errors append the parser's reason, which may quote characters;
        # value errors are this module's own words, json errors name positions.
        msg = msg.split(",", 1)[0]
    value = error.get("input")
    if isinstance(value, str) and len(value) >= 3 and value in msg:
        msg = "invalid value"
    return msg


def _path(loc: tuple[int | str, ...]) -> str:
    # Errors inside a tagged union start with the tag; the tag is no field.
    if loc and loc[0] in MESSAGE_TYPES:
        loc = loc[1:]
    return ".".join(str(part) for part in loc)


def _refusal(exc: ValidationError) -> MessageInvalid:
    errors = exc.errors(include_url=False, include_input=True)
    kinds = {e["type"] for e in errors}
    if "json_invalid" in kinds:
        detail = {"path": "", "problem": _problem(errors[0]), "kind": "json_invalid"}
        return MessageInvalid("malformed_json", "message is not valid JSON", [detail])
    if kinds & {"union_tag_not_found", "union_tag_invalid"}:
        allowed = ", ".join(MESSAGE_TYPES)
        detail = {
            "path": "type",
            "problem": f"missing or unknown message type; allowed: {allowed}",
            "kind": "union_tag_not_found"
            if "union_tag_not_found" in kinds
            else "union_tag_invalid",
        }
        return MessageInvalid("unknown_type", "message type is missing or unknown", [detail])
    if errors and errors[0]["loc"] == () and errors[0]["type"] == "dict_type":
        detail = {"path": "", "problem": "message must be a JSON object", "kind": "dict_type"}
        return MessageInvalid("schema_invalid", "message must be a JSON object", [detail])
    details = [{"path": _path(e["loc"]), "problem": _problem(e), "kind": e["type"]} for e in errors]
    tag = errors[0]["loc"][0] if errors and errors[0]["loc"] else None
    what = f"{tag} message" if tag in MESSAGE_TYPES else "message"
    return MessageInvalid(
        "schema_invalid", f"{what} does not match its schema ({len(details)} problem(s))", details
    )


def parse_message(raw: bytes | str | dict[str, Any]) -> Message:
    """Validate ``raw`` (a JSON document, or an already decoded object) as a message.

    The 64 KiB limit applies to raw JSON; a dict was decoded by the caller.
    """
    if isinstance(raw, dict):
        try:
            return _without_control_characters(MESSAGE_ADAPTER.validate_python(raw))
        except ValidationError as exc:
            raise _refusal(exc) from None
    if not isinstance(raw, bytes | str):
        detail = {"path": "", "problem": "message must be a JSON object", "kind": "dict_type"}
        raise MessageInvalid("schema_invalid", "message must be a JSON object", [detail])
    size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
    if size > MAX_MESSAGE_BYTES:
        raise MessageInvalid(
            "too_large",
            f"message exceeds {MAX_MESSAGE_BYTES} bytes",
            [{"path": "", "problem": f"at most {MAX_MESSAGE_BYTES} bytes", "kind": "too_large"}],
        )
    try:
        message = MESSAGE_ADAPTER.validate_json(raw)
        # Valid JSON carries control characters only as \u00XX escapes: most messages
        # have none, and skip the walk.
        escaped = b"\\u00" if isinstance(raw, bytes) else "\\u00"
        if escaped in raw:  # type: ignore[operator]
            return _without_control_characters(message)
        return message
    except ValidationError as exc:
        raise _refusal(exc) from None


_CONTROL = frozenset(chr(c) for c in range(32)) - {"\n", "\r", "\t"}


def _without_control_characters(message: Message) -> Message:
    """NUL and other control characters are refused: PostgreSQL text cannot hold NUL,
    and no agency field needs them (line breaks and tabs are fine)."""

    def walk(value: Any, path: str) -> None:
        if isinstance(value, str):
            if not _CONTROL.isdisjoint(value):
                raise MessageInvalid(
                    "schema_invalid",
                    "text must not contain control characters",
                    [{"path": path, "problem": "control character", "kind": "control_char"}],
                )
        elif isinstance(value, dict):
            for key, item in value.items():
                walk(item, f"{path}.{key}" if path else str(key))
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}.{index}")

    walk(message.model_dump(), "")
    return message


def message_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of every message type, one ``oneOf`` on ``type``."""
    schema = MESSAGE_ADAPTER.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": SCHEMA_TITLE,
        **schema,
    }


def to_plain(message: BaseModel) -> dict[str, Any]:
    """The message as JSON-ready builtins (UUIDs and datetimes as strings)."""
    return message.model_dump(mode="json")
