"""Receipts are keyed by (agency, message_id) (issue 11, item 7), on both stores.

A message id is the sender's: the same agency repeating it with the same body gets
the first answer (``duplicate: true``), with another body ``message_id_reused``;
another agency using it sends a message of its own. Receipts written before the
key had an agency are migrated in place at start.
"""

from __future__ import annotations

import shutil
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse
from uuid import UUID

import pytest

from services.bootstrap import Hub, build_hub
from services.demo import AGENCIES
from services.errors import CaseNotFound, MessageIdReused
from services.messages import parse_message
from services.replay import replay_case
from services.settings import Settings
from tests import factories as f

ROOT = Path(__file__).resolve().parents[2]
JC, COACH, CLINIC = "jc-test", "coach-test", "clinic-test"
SECRET = "Frau Beispiel, geb. 1.2.1980"  # stands for personal data in a note


def _register(hub: Hub) -> None:
    hub.registry.register(JC, "jobcenter", "Jobcenter Test")
    hub.registry.register(COACH, "coaching_provider", "Coaching Test")
    hub.registry.register(CLINIC, "psychiatric_clinic", "Klinik Test")


def _open_case(hub: Hub, agency: str = JC) -> UUID:
    case_id = f.new_id()
    hub.messages.record_raw(f.opened(agency, case_id))
    return case_id


def _event_count(hub: Hub, case_id: UUID) -> int:
    return len(hub.app.store.select_case_events(case_id))


def _with_id(message: dict[str, Any], message_id: str) -> dict[str, Any]:
    return {**message, "message_id": message_id}


def _note(agency: str, case_id: UUID, text: str = "Gespräch geführt") -> dict[str, Any]:
    return f.message("note.added", agency, case_id, {"text": text, "category": "notes"})


# ---- another agency's message with the same id ---------------------------------------


def test_another_agency_reusing_a_message_id_is_recorded(hub: Hub) -> None:
    _register(hub)
    case_id = _open_case(hub)
    handover = f.new_id()
    offer = f.offer(JC, case_id, handover, kind="assignment", to=COACH)
    offered = hub.messages.record_raw(offer)
    accept = _with_id(f.decide("handover.accepted", COACH, case_id, handover), offer["message_id"])

    accepted = hub.messages.record_raw(accept)

    assert accepted["duplicate"] is False
    assert accepted["type"] == "handover.accepted"
    assert accepted["position"] > offered["position"]
    assert _event_count(hub, case_id) == 3
    state = replay_case(hub.app, case_id)["state"]
    assert [h["state"] for h in state["handovers"]] == ["accepted"]
    # Each agency's repeat answers with its own first result.
    assert hub.messages.record_raw(offer) == {**offered, "duplicate": True}
    assert hub.messages.record_raw(accept) == {**accepted, "duplicate": True}


def test_another_agencys_reuse_does_not_return_the_first_agencys_result(hub: Hub) -> None:
    _register(hub)
    jc_case, clinic_case = f.new_id(), f.new_id()
    jc_opened = f.opened(JC, jc_case)
    first = hub.messages.record_raw(jc_opened)
    # Another type and another case, under the jobcenter's message id.
    clinic_opened = _with_id(f.opened(CLINIC, clinic_case), jc_opened["message_id"])

    result = hub.messages.record_raw(clinic_opened)

    assert result["duplicate"] is False
    assert result["case_id"] == str(clinic_case) != first["case_id"]
    assert result["position"] != first["position"]
    assert _event_count(hub, clinic_case) == 1
    assert hub.app.store.find_receipt(UUID(jc_opened["message_id"]), CLINIC).case_id == clinic_case
    assert hub.app.store.find_receipt(UUID(jc_opened["message_id"]), JC).case_id == jc_case


def test_another_agencys_reuse_is_refused_on_its_own_merits(hub: Hub) -> None:
    _register(hub)
    case_id = _open_case(hub)
    note = _note(JC, case_id)
    hub.messages.record_raw(note)
    head = hub.app.recorder.max_notification_id()
    # The clinic is not involved in the case: its note is refused, not a duplicate.
    intruder = _with_id(_note(CLINIC, case_id, "anything"), note["message_id"])

    with pytest.raises(CaseNotFound) as refused:
        hub.messages.record_raw(intruder)

    # Not involved: answered as for an unknown case (issue 13), not as a duplicate.
    assert refused.value.code == "case_not_found"
    assert hub.app.recorder.max_notification_id() == head
    assert hub.app.store.find_receipt(UUID(note["message_id"]), CLINIC) is None


# ---- the same agency, the same id -----------------------------------------------------


def test_same_agency_same_id_another_body_is_refused_and_records_nothing(hub: Hub) -> None:
    _register(hub)
    case_id = _open_case(hub)
    note = _note(JC, case_id)
    first = hub.messages.record_raw(note)
    head = hub.app.recorder.max_notification_id()
    changed = {**note, "payload": {**note["payload"], "text": SECRET}}

    with pytest.raises(MessageIdReused) as refused:
        hub.messages.record_raw(changed)

    assert refused.value.code == "message_id_reused"
    assert note["message_id"] in refused.value.message
    assert SECRET not in refused.value.message
    assert SECRET not in str(refused.value.details)
    assert hub.app.recorder.max_notification_id() == head
    assert _event_count(hub, case_id) == 2
    # The first message still answers as before.
    assert hub.messages.record_raw(note) == {**first, "duplicate": True}


@pytest.mark.parametrize("change", ["another type", "another case", "refused body"])
def test_reused_id_is_refused_before_the_rules_of_its_body(hub: Hub, change: str) -> None:
    _register(hub)
    case_id = _open_case(hub)
    opening = f.opened(JC, f.new_id())
    hub.messages.record_raw(opening)
    head = hub.app.recorder.max_notification_id()
    reused = {
        "another type": _with_id(_note(JC, case_id), opening["message_id"]),
        "another case": _with_id(f.opened(JC, f.new_id()), opening["message_id"]),
        # A second case.opened for the same case would be case_exists on its own.
        "refused body": {**opening, "payload": {**opening["payload"], "site": "Elsewhere"}},
    }[change]

    with pytest.raises(MessageIdReused) as refused:
        hub.messages.record_raw(reused)

    assert refused.value.code == "message_id_reused"
    assert hub.app.recorder.max_notification_id() == head


def test_same_body_spelled_otherwise_is_a_duplicate(hub: Hub) -> None:
    _register(hub)
    case_id = _open_case(hub)
    note = _note(JC, case_id)
    first = hub.messages.record_raw(note)
    # Keys in another order, padding the model strips, Z for +00:00: the same message.
    respelled = {
        "payload": {"category": "notes", "text": f"  {note['payload']['text']} "},
        **{k: v for k, v in reversed(note.items()) if k != "payload"},
        "occurred_at": note["occurred_at"].replace("+00:00", "Z"),
    }
    assert hub.messages.record_raw(respelled) == {**first, "duplicate": True}


def test_a_default_sent_or_left_out_is_the_same_body(hub: Hub) -> None:
    _register(hub)
    case_id = _open_case(hub)
    sent = f.offer(JC, case_id, f.new_id(), kind="assignment", to=COACH)
    first = hub.messages.record_raw(sent)
    explicit = {**sent, "payload": {**sent["payload"], "priority": "normal"}}
    assert hub.messages.record_raw(explicit) == {**first, "duplicate": True}
    urgent = {**sent, "payload": {**sent["payload"], "priority": "urgent"}}
    with pytest.raises(MessageIdReused):
        hub.messages.record_raw(urgent)


def test_the_auditors_erasure_follows_the_same_rule(hub: Hub) -> None:
    _register(hub)
    case_id, other_case = _open_case(hub), _open_case(hub)
    erase = f.message(
        "participant.erased",
        "auditor",
        case_id,
        {"reason": "Löschfrist", "ground": "Art. 17 (1) b DSGVO"},
    )
    first = hub.messages.record(parse_message(erase), as_auditor=True)
    assert first["duplicate"] is False

    again = hub.messages.record(parse_message(erase), as_auditor=True)
    assert again == {**first, "duplicate": True}
    other_reason = {**erase, "payload": {"reason": "Antrag der Person"}}
    with pytest.raises(MessageIdReused):
        hub.messages.record(parse_message(other_reason), as_auditor=True)
    # An agency using the auditor's message id sends a message of its own.
    note = _with_id(_note(JC, other_case), erase["message_id"])
    assert hub.messages.record_raw(note)["duplicate"] is False
    assert _event_count(hub, other_case) == 2
    assert _event_count(hub, case_id) == 2


# ---- concurrency -----------------------------------------------------------------------


def _send_together(hub: Hub, messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    barrier = threading.Barrier(len(messages))
    results: list[dict[str, Any]] = []
    failures: list[BaseException] = []

    def send(message: dict[str, Any]) -> None:
        try:
            barrier.wait(timeout=30)
            results.append(hub.messages.record_raw(message))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=send, args=(m,)) for m in messages]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert failures == []
    return results


def test_eight_concurrent_sends_of_one_message_record_it_once(hub: Hub) -> None:
    _register(hub)
    case_id = _open_case(hub)
    note = _note(JC, case_id)

    results = _send_together(hub, [note] * 8)

    assert sorted(r["duplicate"] for r in results) == [False] + [True] * 7
    assert len({r["position"] for r in results}) == 1
    assert _event_count(hub, case_id) == 2


def test_two_agencies_sending_one_id_concurrently_record_one_message_each(hub: Hub) -> None:
    _register(hub)
    case_id = _open_case(hub)
    hub.messages.record_raw(f.offer(JC, case_id, f.new_id(), kind="assignment", to=COACH))
    jc_note = _note(JC, case_id)
    coach_note = _with_id(_note(COACH, case_id, "Termin vereinbart"), jc_note["message_id"])

    results = _send_together(hub, [jc_note, coach_note] * 4)

    recorded = [r for r in results if not r["duplicate"]]
    assert len(recorded) == 2
    assert _event_count(hub, case_id) == 4
    for agency in (JC, COACH):
        receipt = hub.app.store.find_receipt(UUID(jc_note["message_id"]), agency)
        assert receipt is not None
        assert receipt.agency == agency


# ---- receipts of the first schema -----------------------------------------------------

LEGACY_SQLITE = (
    "CREATE TABLE hub_receipts (message_id TEXT PRIMARY KEY, case_id TEXT NOT NULL, "
    "message_type TEXT NOT NULL, handover_id TEXT, case_version INTEGER NOT NULL)"
)
LEGACY_POSTGRES = (
    "CREATE TABLE {t} (message_id uuid PRIMARY KEY, case_id uuid NOT NULL, "
    "message_type text NOT NULL, handover_id uuid, case_version bigint NOT NULL)"
)
OLD_COLUMNS = "message_id, case_id, message_type, handover_id, case_version"


def _downgrade(database_url: str, extra: Sequence[tuple[UUID, UUID, int]] = ()) -> None:
    """Rewrite the receipts table as the first schema created it, rows kept; ``extra``
    adds legacy rows (message_id, case_id, case_version)."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(urlparse(database_url).path[1:]) as conn:
            conn.executescript(
                f"CREATE TABLE receipts_copy AS SELECT {OLD_COLUMNS} FROM hub_receipts;"
                f"DROP TABLE hub_receipts; {LEGACY_SQLITE};"
                f"INSERT INTO hub_receipts SELECT {OLD_COLUMNS} FROM receipts_copy;"
                "DROP TABLE receipts_copy;"
            )
            for message_id, case_id, version in extra:
                conn.execute(
                    "INSERT INTO hub_receipts VALUES (?, ?, 'note.added', NULL, ?)",
                    (message_id.hex, case_id.hex, version),
                )
        return
    import psycopg

    schema = parse_qs(urlparse(database_url).query)["schema"][0]
    table = f'"{schema}".hub_receipts'
    with psycopg.connect(database_url.split("?", maxsplit=1)[0], autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table}_copy AS SELECT {OLD_COLUMNS} FROM {table}")
        conn.execute(f"DROP TABLE {table}")
        conn.execute(LEGACY_POSTGRES.format(t=table))
        conn.execute(f"INSERT INTO {table} SELECT {OLD_COLUMNS} FROM {table}_copy")
        conn.execute(f"DROP TABLE {table}_copy")
        for message_id, case_id, version in extra:
            conn.execute(
                f"INSERT INTO {table} VALUES (%s, %s, 'note.added', NULL, %s)",
                (message_id, case_id, version),
            )


def _receipt_rows(database_url: str) -> list[tuple[str, str | None, str | None]]:
    """(message_id, agency, body_hash) of every receipt, read beside the hub."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(urlparse(database_url).path[1:]) as conn:
            return conn.execute("SELECT message_id, agency, body_hash FROM hub_receipts").fetchall()
    import psycopg

    schema = parse_qs(urlparse(database_url).query)["schema"][0]
    with psycopg.connect(database_url.split("?", maxsplit=1)[0]) as conn:
        rows = conn.execute(
            f'SELECT message_id, agency, body_hash FROM "{schema}".hub_receipts'
        ).fetchall()
    return [(UUID(str(m)).hex, a, h) for m, a, h in rows]


def test_legacy_receipt_table_is_migrated(settings: Settings) -> None:
    url = settings.effective_database_url
    hub = build_hub(settings)
    _register(hub)
    case_id = _open_case(hub)
    note = _note(JC, case_id)
    first = hub.messages.record_raw(note)
    hub.close()
    _downgrade(url)

    hub = build_hub(settings)
    try:
        assert [agency for _, agency, _ in _receipt_rows(url)] == [JC, JC]
        assert hub.app.store.legacy_receipts is False
        assert hub.messages.record_raw(note) == {**first, "duplicate": True}
        # The agency was found in the case's events: another agency's message with
        # that id is its own.
        clinic = _with_id(f.opened(CLINIC, f.new_id()), note["message_id"])
        clinic_result = hub.messages.record_raw(clinic)
        assert clinic_result["duplicate"] is False
        # Migrated receipts have no body hash: the same id answers as before.
        changed = {**note, "payload": {**note["payload"], "text": "anders"}}
        assert hub.messages.record_raw(changed) == {**first, "duplicate": True}
    finally:
        hub.close()

    # A second start migrates nothing again and changes nothing.
    rows = _receipt_rows(url)
    hub = build_hub(settings)
    try:
        assert _receipt_rows(url) == rows
        assert sorted(agency for _, agency, _ in rows) == [CLINIC, JC, JC]
        # New receipts carry the hash of their body; migrated ones have none.
        assert [h is not None for _, a, h in rows if a == CLINIC] == [True]
        assert [h for _, a, h in rows if a == JC] == [None, None]
        assert hub.messages.record_raw(note) == {**first, "duplicate": True}
        assert hub.messages.record_raw(clinic) == {**clinic_result, "duplicate": True}
    finally:
        hub.close()


def test_legacy_receipt_whose_agency_is_not_found_answers_for_every_agency(
    settings: Settings,
) -> None:
    url = settings.effective_database_url
    hub = build_hub(settings)
    _register(hub)
    case_id = _open_case(hub)
    hub.close()
    orphan = f.new_id()
    _downgrade(url, extra=[(orphan, case_id, 99)])  # no event at version 99

    hub = build_hub(settings)
    try:
        assert hub.app.store.legacy_receipts is True
        assert [a for m, a, _ in _receipt_rows(url) if m == orphan.hex] == [None]
        for agency in (JC, CLINIC):
            note = _with_id(_note(agency, case_id), str(orphan))
            assert hub.messages.record_raw(note)["duplicate"] is True
        assert _event_count(hub, case_id) == 1
    finally:
        hub.close()


def test_the_v1_fixture_database_is_migrated(tmp_path: Path) -> None:
    copy = tmp_path / "old.db"
    shutil.copy(ROOT / "tests" / "fixtures" / "hub-v1.db", copy)
    url = f"sqlite:///{copy}"
    with sqlite3.connect(copy) as conn:
        before = conn.execute(f"SELECT {OLD_COLUMNS} FROM hub_receipts ORDER BY 1").fetchall()
    assert before

    for _start in range(2):
        build_hub(Settings(database_url=url, var_dir=tmp_path / "var")).close()
        with sqlite3.connect(copy) as conn:
            after = conn.execute(f"SELECT {OLD_COLUMNS} FROM hub_receipts ORDER BY 1").fetchall()
            agencies = [row[0] for row in conn.execute("SELECT agency FROM hub_receipts")]
            indexes = [row[1] for row in conn.execute("PRAGMA index_list(hub_receipts)")]
        assert after == before
        assert None not in agencies
        assert set(agencies) <= {a for a, _, _ in AGENCIES} | {"auditor"}
        assert len(set(agencies)) > 1
        assert "hub_receipts_key" in indexes
