"""The personal-data marks on the payloads, and what reads them.

A text field in any payload must be marked ``Personal`` or ``NotPersonal``; the
table below is the decision for every personal field, and each consumer
(encryption, Kafka, logs, the schema, the views' erasure) follows it.
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import pytest

from domain.case import Case
from domain.values import DataCategory
from projections import case_doc
from services import commands, crypto
from services.logging import drop_personal_keys
from services.messages import (
    MESSAGE_TYPES,
    PAYLOAD_TYPES,
    PERSONAL_KEYS,
    PERSONAL_PATHS,
    CaseOpenedPayload,
    NotPersonal,
    Personal,
    event_type,
    message_json_schema,
    parse_message,
    seal_personal,
)
from services.messages.fields import Model, Text500
from services.messages.personal import PERSONAL_SCHEMA_KEY, unclassified_text_fields
from tests.message_examples import VALID_EXAMPLES

ID, CONTACT, NOTES, PLAN, WORK = (
    DataCategory.IDENTITY,
    DataCategory.CONTACT,
    DataCategory.NOTES,
    DataCategory.PLAN,
    DataCategory.EMPLOYMENT_HISTORY,
)
PERSONAL_FIELD_TABLE = {
    "case.opened": {
        "participant.name": ID,
        "participant.birth_date": ID,
        "participant.contact": CONTACT,
    },
    "handover.offered": {"reason": NOTES},
    "handover.declined": {"reason": NOTES},
    "handover.forwarded": {"reason": NOTES},
    "handover.withdrawn": {"reason": NOTES},
    "plan.agreed": {"goals": PLAN, "modules": PLAN},
    "plan.updated": {"goals": PLAN, "modules": PLAN},
    "measure.started": {"title": PLAN},
    "measure.ended": {"result": PLAN},
    "assignment.extended": {"reason": NOTES},
    "employment.started": {"employer": WORK},
    "note.added": {"text": NOTES},
    "rehab.decided": {"reason": NOTES},
    "lead.transferred": {"reason": NOTES},
}


def test_every_text_field_of_every_payload_is_marked_personal_or_not() -> None:
    unmarked = {t: unclassified_text_fields(p) for t, p in PAYLOAD_TYPES.items()}
    assert {t: fields for t, fields in unmarked.items() if fields} == {}


def test_the_check_finds_an_unmarked_text_field() -> None:
    class Payload(Model):
        remark: Text500 | None = None
        tags: list[str]
        said: Annotated[Text500, NotPersonal("a test")]
        secret: Annotated[Text500, Personal(DataCategory.NOTES)]

    assert unclassified_text_fields(Payload) == ["remark", "tags"]


def test_the_personal_fields_are_the_agreed_table() -> None:
    assert {t: paths for t, paths in PERSONAL_PATHS.items() if paths} == PERSONAL_FIELD_TABLE


def test_every_message_type_but_case_opened_has_one_handler() -> None:
    assert set(commands.HANDLERS) == set(PAYLOAD_TYPES.values()) - {CaseOpenedPayload}

    class Payload(Model):
        pass

    register = commands.handles(Payload)
    register(lambda case, p, ctx: None)
    try:
        with pytest.raises(ValueError, match="already has a handler"):
            register(lambda case, p, ctx: None)
    finally:
        commands.HANDLERS.pop(Payload)


def test_every_message_type_names_its_domain_event() -> None:
    for type_ in MESSAGE_TYPES:
        assert isinstance(getattr(Case, event_type(type_), None), type), type_


def test_sealing_encrypts_every_marked_value_and_keeps_lists_lists() -> None:
    def seal(text: str) -> str:
        return f"sealed({text})"

    plan = parse_message(VALID_EXAMPLES["plan.agreed"]).payload
    sealed = seal_personal(plan, seal)
    assert sealed.goals == ["sealed(internship in retail)"]  # type: ignore[attr-defined]
    assert sealed.modules == ["sealed(application training)", "sealed(internship)"]  # type: ignore[attr-defined]

    opened = parse_message(VALID_EXAMPLES["case.opened"]).payload
    participant = seal_personal(opened, seal).participant  # type: ignore[attr-defined]
    assert participant.birth_date == "sealed(1990-04-17)"  # a date, sealed as ISO text
    assert participant.pseudonym == "P-7Q2X"
    assert opened.participant.birth_date == date(1990, 4, 17)  # type: ignore[attr-defined]

    closed = parse_message(VALID_EXAMPLES["case.closed"]).payload
    assert seal_personal(closed, seal) is closed  # nothing personal, nothing copied


@pytest.mark.parametrize("type_", sorted(VALID_EXAMPLES))
def test_sealing_touches_exactly_the_marked_fields(type_: str) -> None:
    payload = parse_message(VALID_EXAMPLES[type_]).payload
    before = payload.model_dump()
    sealed = seal_personal(payload, lambda text: "SEALED")
    after = sealed.model_dump(warnings=False)  # sealed dates are strings now
    changed = {path for path in _leaves(before) if _get(after, path) != _get(before, path)}
    present = {p for p in PERSONAL_PATHS[type_] if _get(before, p) not in (None, [])}
    assert changed == present


def _leaves(value: dict[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for key, item in value.items():
        path = f"{prefix}{key}"
        out += _leaves(item, path + ".") if isinstance(item, dict) else [path]
    return out


def _get(value: Any, path: str) -> Any:
    for key in path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if isinstance(value, list):
        return [_text(v) for v in value]
    return None if value is None else _text(value)


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


def test_the_schema_names_the_category_of_every_personal_field() -> None:
    schema = message_json_schema()
    found = {}
    for name, definition in schema["$defs"].items():
        for field, spec in definition.get("properties", {}).items():
            if PERSONAL_SCHEMA_KEY in spec:
                found[f"{name}.{field}"] = spec[PERSONAL_SCHEMA_KEY]
    assert found["HandoverOfferedPayload.reason"] == "notes"
    assert found["PlanAgreedPayload.goals"] == "plan"
    assert found["Participant.birth_date"] == "identity"
    assert "ParticipantErasedPayload.reason" not in found
    assert len(found) == sum(len(paths) for paths in PERSONAL_PATHS.values())


def test_logs_withhold_every_personal_field_name_and_any_ciphertext() -> None:
    line = {
        "event": "oops",
        "reason": "Kündigung",
        "goals": ["Ausbildung"],
        "title": "Praktikum",
        "result": "abgebrochen",
        "employer": "Bäckerei",
        "detail": crypto.PREFIX + "case-1:abc",
        "case_id": "c-1",
    }
    scrubbed = drop_personal_keys(None, "info", dict(line))
    assert scrubbed["case_id"] == "c-1"
    assert scrubbed["event"] == "oops"
    for key in ("reason", "goals", "title", "result", "employer", "detail"):
        assert scrubbed[key] == "[withheld]", key
    assert {"reason", "goals", "modules", "title", "result", "employer"} <= PERSONAL_KEYS


def test_the_views_know_the_participant_categories_and_the_ciphertext_prefix() -> None:
    marked = {
        path.removeprefix("participant."): category.value
        for path, category in PERSONAL_PATHS["case.opened"].items()
    }
    assert marked == case_doc.PARTICIPANT_CATEGORIES
    assert case_doc.CIPHERTEXT_PREFIX == crypto.PREFIX
