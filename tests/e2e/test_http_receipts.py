"""POST /v1/messages and message ids (issue 11, item 7), on SQLite and PostgreSQL.

An attacker agency that learns or guesses another agency's message ids must not get
that agency's answers (case ids, handover ids, positions) back, nor have its own
message dropped as a "duplicate". The same agency reusing an id for another body is
refused with 409 ``message_id_reused``; a true repeat is 200 with the first answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import UUID, uuid4

import pytest
from fastapi.testclient import TestClient

from services.api.app import create_app
from services.bootstrap import Hub
from tests.factories import message, offer, opened
from tests.http_helpers import Tokens, assert_error, demo_tokens

JC, AA, CLINIC = "jc-trier", "aa-trier", "klinik-oder-spree"
SECRET = "Herr Beispiel, Diagnose F32.1"  # stands for personal data in a note


@pytest.fixture
def tokens(hub: Hub) -> Tokens:
    return demo_tokens(hub)


@pytest.fixture
def api(hub: Hub, tokens: Tokens) -> Iterator[TestClient]:
    with TestClient(create_app(hub)) as client:
        yield client


def _post(api: TestClient, tokens: Tokens, body: dict[str, Any]) -> Any:
    sender = tokens.audit() if body["agency"] == "auditor" else tokens.of(body["agency"])
    return api.post("/v1/messages", json=body, headers=sender)


def _open(api: TestClient, tokens: Tokens, agency: str = JC) -> tuple[UUID, dict[str, Any]]:
    case_id = uuid4()
    response = _post(api, tokens, opened(agency, case_id))
    assert response.status_code == 201, response.text
    return case_id, response.json()


def _note(agency: str, case_id: UUID, text: str, message_id: str | None = None) -> dict[str, Any]:
    note = message("note.added", agency, case_id, {"text": text, "category": "notes"})
    return note if message_id is None else {**note, "message_id": message_id}


def test_another_agency_reusing_a_message_id_records_its_own_message(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    case_id, _ = _open(api, tokens)
    handover = uuid4()
    sent = offer(JC, case_id, handover, kind="rehab_application", to=AA)
    offered = _post(api, tokens, sent)
    assert offered.status_code == 201, offered.text

    # The receiver answers under the sender's message id: a message of its own.
    accept = message("handover.accepted", AA, case_id, {"handover_id": str(handover)})
    accepted = _post(api, tokens, {**accept, "message_id": sent["message_id"]})

    assert accepted.status_code == 201, accepted.text
    result = accepted.json()
    assert result["duplicate"] is False
    assert result["type"] == "handover.accepted"
    assert result["position"] > offered.json()["position"]
    assert len(hub.app.store.select_case_events(case_id)) == 3
    # The sender's repeat still answers with the sender's first result.
    again = _post(api, tokens, sent)
    assert again.status_code == 200, again.text
    assert again.json() == {**offered.json(), "duplicate": True}


def test_an_attacker_reusing_a_message_id_gets_none_of_the_first_answer(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    case_id, _ = _open(api, tokens)
    victim = _note(JC, case_id, "Termin vereinbart")
    assert _post(api, tokens, victim).status_code == 201
    head = hub.app.recorder.max_notification_id()

    # The clinic is not involved: refused (as for an unknown case), with nothing of the
    # jobcenter's.
    probe = _note(CLINIC, case_id, "x", message_id=victim["message_id"])
    error = assert_error(_post(api, tokens, probe), 404, "case_not_found")
    assert hub.app.recorder.max_notification_id() == head
    assert "duplicate" not in str(error)

    # On a case of its own the same id records the clinic's message, not a duplicate.
    own_case, _ = _open(api, tokens, CLINIC)
    response = _post(api, tokens, _note(CLINIC, own_case, "y", message_id=victim["message_id"]))
    assert response.status_code == 201, response.text
    assert response.json()["case_id"] == str(own_case)
    assert response.json()["duplicate"] is False


def test_same_agency_same_id_another_body_is_409_and_records_nothing(
    api: TestClient, tokens: Tokens, hub: Hub
) -> None:
    case_id, _ = _open(api, tokens)
    note = _note(JC, case_id, "Gespräch geführt")
    first = _post(api, tokens, note)
    assert first.status_code == 201, first.text
    head = hub.app.recorder.max_notification_id()

    changed = _post(api, tokens, {**note, "payload": {**note["payload"], "text": SECRET}})

    error = assert_error(changed, 409, "message_id_reused")
    assert note["message_id"] in error["message"]
    assert SECRET not in changed.text
    assert hub.app.recorder.max_notification_id() == head
    assert len(hub.app.store.select_case_events(case_id)) == 2
    # Another type under that id is refused the same way.
    other_type = {**opened(JC, uuid4()), "message_id": note["message_id"]}
    assert_error(_post(api, tokens, other_type), 409, "message_id_reused")
    assert hub.app.recorder.max_notification_id() == head


def test_same_agency_same_id_same_body_is_200_with_the_first_result(
    api: TestClient, tokens: Tokens
) -> None:
    case_id, _ = _open(api, tokens)
    note = _note(JC, case_id, "Gespräch geführt")
    first = _post(api, tokens, note)
    assert first.status_code == 201, first.text

    again = _post(api, tokens, note)

    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "duplicate": True}


def test_the_auditors_erasure_repeats_as_a_duplicate_and_not_with_another_body(
    api: TestClient, tokens: Tokens
) -> None:
    case_id, _ = _open(api, tokens)
    erase = message(
        "participant.erased",
        "auditor",
        case_id,
        {"reason": "Löschfrist", "ground": "Art. 17 (1) b DSGVO"},
    )
    first = _post(api, tokens, erase)
    assert first.status_code == 201, first.text

    again = _post(api, tokens, erase)
    assert again.status_code == 200, again.text
    assert again.json() == {**first.json(), "duplicate": True}
    other = {**erase, "payload": {"reason": "Antrag der Person"}}
    assert_error(_post(api, tokens, other), 409, "message_id_reused")
