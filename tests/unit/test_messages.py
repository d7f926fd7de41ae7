"""Inbound message schema: every type parses; bad input is refused without echo."""

from __future__ import annotations

import copy
import json
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from domain.values import DataCategory
from services.messages import (
    MAX_MESSAGE_BYTES,
    MESSAGE_TYPES,
    AgreementSignedMessage,
    MessageInvalid,
    message_json_schema,
    parse_message,
    to_plain,
)
from tests.message_examples import VALID_EXAMPLES

API_TYPES = {
    "case.opened", "consent.granted", "consent.revoked", "handover.offered",
    "handover.accepted", "handover.declined", "handover.forwarded", "handover.withdrawn",
    "handover.completed", "coach.assigned", "appointment.scheduled", "appointment.held",
    "appointment.missed", "agreement.signed", "plan.agreed", "plan.updated",
    "measure.started", "measure.ended", "assignment.extended", "employment.started",
    "aftercare.started", "aftercare.ended", "note.added", "case.closed", "participant.erased",
    "rehab.decided", "expert_opinion.requested", "expert_opinion.received", "lead.transferred",
}  # fmt: skip

PERSONAL = "Erika Mustermann"


def example(type_: str) -> dict[str, Any]:
    return copy.deepcopy(VALID_EXAMPLES[type_])


def refusal(raw: bytes | str | dict[str, Any]) -> MessageInvalid:
    with pytest.raises(MessageInvalid) as caught:
        parse_message(raw)
    return caught.value


def paths(exc: MessageInvalid) -> set[str]:
    return {d["path"] for d in exc.details}


def test_the_examples_and_the_registry_cover_every_api_type() -> None:
    assert set(VALID_EXAMPLES) == API_TYPES
    assert set(MESSAGE_TYPES) == API_TYPES


@pytest.mark.parametrize("type_", sorted(API_TYPES))
def test_every_type_parses_to_its_class_from_dict_str_and_bytes(type_: str) -> None:
    raw = example(type_)
    for given in (raw, json.dumps(raw), json.dumps(raw).encode()):
        message = parse_message(given)
        assert type(message) is MESSAGE_TYPES[type_]
        assert message.type == type_
        assert message.schema_version == 1
    assert parse_message(to_plain(parse_message(raw))) == parse_message(raw)


def test_values_are_typed_and_stripped() -> None:
    raw = example("case.opened")
    raw["actor"] = "  cm-42  "
    message = parse_message(raw)
    assert message.actor == "cm-42"
    assert message.payload.participant.birth_date == date(1990, 4, 17)
    assert message.occurred_at.utcoffset() is not None
    plain = to_plain(message)
    assert plain["case_id"] == raw["case_id"]
    assert plain["payload"]["participant"]["birth_date"] == "1990-04-17"


def test_defaults() -> None:
    opened = example("case.opened")
    del opened["payload"]["assignment_months"]
    assert parse_message(opened).payload.assignment_months == 12

    note = example("note.added")
    del note["payload"]["category"]
    assert parse_message(note).payload.category is DataCategory.NOTES

    offered = example("handover.offered")
    for key in ("data_categories", "reason", "due_at"):
        del offered["payload"][key]
    assert parse_message(offered).payload.data_categories == []


@pytest.mark.parametrize("type_", ["agreement.signed", "aftercare.ended"])
def test_empty_payload_may_be_omitted(type_: str) -> None:
    raw = example(type_)
    del raw["payload"]
    message = parse_message(raw)
    assert to_plain(message)["payload"] == {}
    if type_ == "agreement.signed":
        assert isinstance(message, AgreementSignedMessage)
    raw["payload"] = {"anything": 1}
    assert refusal(raw).code == "schema_invalid"


def test_unknown_top_level_field_is_refused_with_its_path() -> None:
    raw = example("handover.offered")
    raw["priority"] = "high"
    exc = refusal(raw)
    assert exc.code == "schema_invalid"
    assert exc.details == [
        {"path": "priority", "problem": "Extra inputs are not permitted", "kind": "extra_forbidden"}
    ]


def test_unknown_payload_field_is_refused_with_its_path() -> None:
    raw = example("handover.offered")
    raw["payload"]["diagnosis"] = "F32.1"
    exc = refusal(json.dumps(raw))
    assert exc.code == "schema_invalid"
    assert paths(exc) == {"payload.diagnosis"}
    assert "handover.offered" in exc.message


def test_unknown_field_in_participant_is_refused() -> None:
    raw = example("case.opened")
    raw["payload"]["participant"]["diagnosis"] = "F32.1"
    assert paths(refusal(raw)) == {"payload.participant.diagnosis"}


@pytest.mark.parametrize(
    ("field", "value"),
    [("occurred_at", "2026-11-02T09:30:00"), ("occurred_at", 1_790_000_000)],
)
def test_timestamps_need_a_zone_and_a_string(field: str, value: object) -> None:
    raw = example("case.closed")
    raw[field] = value
    exc = refusal(raw)
    assert exc.code == "schema_invalid"
    assert paths(exc) == {field}


def test_naive_timestamp_in_payload_is_refused() -> None:
    raw = example("appointment.scheduled")
    raw["payload"]["at"] = "2026-11-05T10:00:00"
    exc = refusal(raw)
    assert paths(exc) == {"payload.at"}
    assert exc.details[0]["kind"] == "timezone_aware"


@pytest.mark.parametrize("field", ["case_id", "message_id"])
def test_ids_must_be_uuids(field: str) -> None:
    raw = example("case.closed")
    raw[field] = "case-17"
    exc = refusal(raw)
    assert exc.code == "schema_invalid"
    assert paths(exc) == {field}
    assert exc.details[0]["kind"] == "uuid_parsing"


@pytest.mark.parametrize("agency", ["JC-Trier", "j", "-jc", "jc trier", "x" * 65, ""])
def test_bad_agency_ids_are_refused(agency: str) -> None:
    raw = example("handover.offered")
    raw["agency"] = agency
    assert paths(refusal(raw)) == {"agency"}
    raw = example("handover.offered")
    raw["payload"]["to_agency"] = agency
    assert paths(refusal(raw)) == {"payload.to_agency"}


def test_malformed_json() -> None:
    for raw in ('{"type": "case.opened",', b"\xff\xfe", ""):
        exc = refusal(raw)
        assert exc.code == "malformed_json"


@pytest.mark.parametrize("raw", ["[1, 2]", "null", "42", '"case.opened"'])
def test_json_that_is_no_object_is_schema_invalid(raw: str) -> None:
    assert refusal(raw).code == "schema_invalid"


@pytest.mark.parametrize("type_", ["case.reopened", "", 7, None])
def test_unknown_type(type_: object) -> None:
    raw = example("case.closed")
    raw["type"] = type_
    exc = refusal(json.dumps(raw))
    assert exc.code == "unknown_type"
    assert exc.details[0]["path"] == "type"
    assert "handover.offered" in exc.details[0]["problem"]


def test_missing_type_is_unknown_type() -> None:
    raw = example("case.closed")
    del raw["type"]
    assert refusal(raw).code == "unknown_type"


def test_unknown_type_never_echoes_the_given_tag() -> None:
    raw = example("case.closed")
    raw["type"] = PERSONAL
    exc = refusal(raw)
    assert PERSONAL not in exc.message
    assert PERSONAL not in str(exc.details)


def test_oversize_input_is_refused_before_parsing() -> None:
    raw = example("note.added")
    raw["payload"]["text"] = "x" * MAX_MESSAGE_BYTES
    body = json.dumps(raw)
    assert refusal(body).code == "too_large"
    assert refusal(body.encode()).code == "too_large"
    assert refusal("{" * (MAX_MESSAGE_BYTES + 1)).code == "too_large"


@pytest.mark.parametrize(
    ("type_", "path", "value"),
    [
        ("case.opened", ("payload", "participant", "birth_date"), PERSONAL),
        ("case.opened", ("payload", "participant", "pseudonym"), PERSONAL * 5),
        ("case.opened", ("payload", "participant", "name"), PERSONAL * 20),
        ("handover.offered", ("payload", "to_agency"), PERSONAL),
        ("handover.offered", ("payload", "kind"), PERSONAL),
        ("handover.offered", ("payload", "data_categories"), [PERSONAL]),
        ("handover.offered", ("payload", "handover_id"), PERSONAL),
        ("handover.offered", ("occurred_at",), PERSONAL),
        ("handover.offered", ("schema_version",), PERSONAL),
        ("assignment.extended", ("payload", "months"), PERSONAL),
        ("note.added", ("payload", "text"), {"name": PERSONAL}),
        ("consent.granted", ("payload", "recipients"), [PERSONAL]),
        ("consent.granted", ("payload", "consent_id"), PERSONAL),
    ],
)
def test_refusals_never_contain_the_input_value(
    type_: str, path: tuple[str, ...], value: object
) -> None:
    raw = example(type_)
    target = raw
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    for given in (raw, json.dumps(raw)):
        exc = refusal(given)
        assert exc.code == "schema_invalid"
        assert PERSONAL not in exc.message
        assert PERSONAL not in str(exc.details)
        assert "Erika" not in str(exc.details)
        assert ".".join(path) in {p.split(".0")[0] for p in paths(exc)}
        for detail in exc.details:
            assert set(detail) == {"path", "problem", "kind"}


def test_uuid_errors_do_not_quote_characters() -> None:
    raw = example("case.closed")
    raw["case_id"] = "Q" * 36
    exc = refusal(raw)
    assert "Q" not in str(exc.details)


@pytest.mark.parametrize("valid_until", ["2026-10-31T00:00:00+01:00", "2026-10-31T23:00:00Z"])
def test_valid_until_must_follow_valid_from(valid_until: str) -> None:
    raw = example("consent.granted")
    raw["payload"]["valid_until"] = valid_until  # the second equals valid_from
    exc = refusal(raw)
    assert exc.code == "schema_invalid"
    assert paths(exc) == {"payload"}
    assert "valid_until must be after valid_from" in exc.details[0]["problem"]
    del raw["payload"]["valid_until"]
    assert parse_message(raw).payload.valid_until is None


@pytest.mark.parametrize(
    ("type_", "field", "value"),
    [
        ("consent.granted", "categories", ["health", "contact", "health"]),
        ("consent.granted", "recipients", ["jc-trier", "jc-trier"]),
        ("handover.offered", "data_categories", ["notes", "notes"]),
    ],
)
def test_duplicates_are_refused(type_: str, field: str, value: list[str]) -> None:
    raw = example(type_)
    raw["payload"][field] = value
    exc = refusal(raw)
    assert paths(exc) == {f"payload.{field}"}


@pytest.mark.parametrize("field", ["categories", "recipients"])
def test_consent_needs_categories_and_recipients(field: str) -> None:
    raw = example("consent.granted")
    raw["payload"][field] = []
    assert paths(refusal(raw)) == {f"payload.{field}"}


@pytest.mark.parametrize(
    ("type_", "field", "bad", "good"),
    [
        ("case.opened", "assignment_months", [0, 37], [1, 36]),
        ("assignment.extended", "months", [0, 25], [1, 24]),
    ],
)
def test_month_ranges(type_: str, field: str, bad: list[int], good: list[int]) -> None:
    for months in bad:
        raw = example(type_)
        raw["payload"][field] = months
        assert paths(refusal(raw)) == {f"payload.{field}"}
    for months in good:
        raw = example(type_)
        raw["payload"][field] = months
        assert getattr(parse_message(raw).payload, field) == months


def test_length_limits() -> None:
    raw = example("note.added")
    raw["payload"]["text"] = "x" * 10_001
    assert paths(refusal(raw)) == {"payload.text"}
    raw = example("case.closed")
    raw["actor"] = "   "
    assert paths(refusal(raw)) == {"actor"}
    raw = example("plan.agreed")
    raw["payload"]["goals"] = [f"goal {i}" for i in range(51)]
    assert paths(refusal(raw)) == {"payload.goals"}


def test_messages_are_frozen() -> None:
    message = parse_message(example("case.closed"))
    with pytest.raises(ValidationError, match="frozen"):
        message.actor = "someone else"  # type: ignore[misc]


def test_json_schema_is_one_of_all_types_with_a_discriminator() -> None:
    schema = message_json_schema()
    assert schema["$id"] == "https://hub.example/schemas/messages.v1.json"
    assert schema["title"] == "Hub handover message v1"
    assert schema["discriminator"]["propertyName"] == "type"
    assert set(schema["discriminator"]["mapping"]) == API_TYPES
    assert len(schema["oneOf"]) == len(API_TYPES)
    json.dumps(schema)
    payload = schema["$defs"]["HandoverOfferedPayload"]
    assert payload["additionalProperties"] is False
    assert payload["properties"]["data_categories"]["uniqueItems"] is True
