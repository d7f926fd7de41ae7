"""Snapshots of cases on a real store (both stores): a write loads the latest snapshot
and the events after it; snapshots stay out of the notification log, the hash chain
and the views; they hold ciphertext only, also after erasure, and no notes; cases whose
events are schema v1 (``tests/fixtures/hub-v1.db``) load the same with and without
them; snapshots of ``Case`` class version 1 that the previous code stored
(``tests/fixtures/case-snapshots-v1.json``) load through the upcaster on either store
as the events do; and a snapshot that cannot be taken or used never costs a write."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import StoredEvent
from pydantic import ValidationError
from structlog.testing import capture_logs

from domain.case.snapshot import CaseSnapshot
from services.application import _project
from services.bootstrap import Hub, build_hub
from services.crypto import ERASED, PREFIX
from services.settings import Settings
from services.views.verify import verify_chain
from tests import factories as f
from tests.integration.test_personal_fields import (
    SECRETS,
    _case_with_every_personal_field,
    _erase,
)
from tests.integration.test_personal_fields import _register as register_pf

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_V1 = ROOT / "tests" / "fixtures" / "case-snapshots-v1.json"
JC, COACH = "jc-snap", "coach-snap"
SNAPSHOT_TOPIC = "domain.case.snapshot:CaseSnapshot"


@pytest.fixture
def snapshotting(database_url: str, tmp_path: Path) -> Iterator[Hub]:
    """A hub that snapshots a case every 3 events."""
    hub = build_hub(
        Settings(database_url=database_url, var_dir=tmp_path / "var", snapshot_interval=3)
    )
    yield hub
    hub.close()


def _snapshot_rows(hub: Hub, database_url: str) -> list[tuple[UUID, int, str, bytes]]:
    """The snapshot table, read with SQL apart from the library."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            rows = conn.execute(
                "SELECT originator_id, originator_version, topic, state FROM stored_snapshots"
            ).fetchall()
        return [(UUID(r[0]), r[1], r[2], bytes(r[3])) for r in rows]
    import psycopg

    base, _, schema = database_url.partition("?schema=")
    with psycopg.connect(base) as conn:
        rows = conn.execute(
            f'SELECT originator_id, originator_version, topic, state FROM "{schema}".hub_snapshots'
        ).fetchall()
    return [(r[0], r[1], r[2], bytes(r[3])) for r in rows]


def _coaching_case(hub: Hub, notes: int) -> UUID:
    hub.registry.register(JC, "jobcenter", "Jobcenter Snap")
    hub.registry.register(COACH, "coaching_provider", "Coaching Snap")
    case_id, handover = f.new_id(), f.new_id()
    hub.messages.record_raw(f.opened(JC, case_id))
    hub.messages.record_raw(f.offer(JC, case_id, handover, kind="assignment", to=COACH))
    hub.messages.record_raw(f.decide("handover.accepted", COACH, case_id, handover))
    for n in range(notes):
        hub.messages.record_raw(f.message("note.added", COACH, case_id, {"text": f"n{n}"}))
    return case_id


def _events_only(hub: Hub, case_id: UUID, version: int | None = None) -> dict[str, Any]:
    return vars(hub.app._events_only.get(case_id, version=version, projector_func=_project))


def test_a_write_loads_the_latest_snapshot_and_only_the_events_after_it(
    snapshotting: Hub, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = snapshotting
    case_id = _coaching_case(hub, notes=8)  # 11 events: snapshots at 3, 6 and 9

    rows = [r for r in _snapshot_rows(hub, database_url) if r[0] == case_id]
    assert [(version, topic) for _, version, topic, _ in rows] == [(9, SNAPSHOT_TOPIC)]  # latest
    assert vars(hub.messages._load(case_id)) == _events_only(hub, case_id)

    asked: list[dict[str, Any]] = []
    select_events = hub.app.recorder.select_events

    def spy(originator_id: UUID, **kwargs: Any) -> Any:
        asked.append(kwargs)
        return select_events(originator_id, **kwargs)

    monkeypatch.setattr(hub.app.recorder, "select_events", spy)
    hub.messages.record_raw(f.message("note.added", COACH, case_id, {"text": "n8"}))
    # The write read events 10 and 11, not 1 to 11; so did the snapshot it took at 12.
    assert [(a["gt"], a["lte"]) for a in asked] == [(9, None), (9, 12)]
    loaded = hub.messages._load(case_id)
    assert loaded is not None
    assert loaded.version == 12


def test_snapshots_stay_out_of_the_log_the_chain_and_the_views(
    snapshotting: Hub, database_url: str
) -> None:
    hub = snapshotting
    case_id = _coaching_case(hub, notes=10)
    assert _snapshot_rows(hub, database_url)

    notifications = hub.app.recorder.select_notifications(1, 10_000)
    events = hub.app.store.select_case_events(case_id)
    assert len(events) == 13
    assert all(n.topic != SNAPSHOT_TOPIC for n in notifications)
    assert [n.originator_version for n in notifications if n.originator_id == case_id] == list(
        range(1, 14)
    )
    assert hub.app.store.max_notification_id() == len(notifications)
    hub.views.catch_up()
    assert set(hub.views.positions().values()) == {len(notifications)}
    verification = verify_chain(hub.app.recorder, hub.view_store)
    assert verification.ok
    assert verification.events_checked == len(notifications)
    doc = hub.queries.case_doc(str(case_id))
    assert doc is not None
    assert len(doc["notes"]) == 10


def test_the_snapshot_table_sits_beside_the_events(snapshotting: Hub, database_url: str) -> None:
    """Its own table in the events' database (PostgreSQL: the events' schema, not the
    keys' one), created with the application."""
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        assert {"stored_events", "stored_snapshots"} <= tables
        return
    import psycopg

    base, _, schema = database_url.partition("?schema=")
    with psycopg.connect(base) as conn:
        found = conn.execute(
            "SELECT table_schema FROM information_schema.tables WHERE table_name = 'hub_snapshots'"
        ).fetchall()
    assert (schema,) in found
    assert (f"{schema}_keys",) not in found


def test_snapshots_hold_ciphertext_only_also_after_erasure(
    snapshotting: Hub, database_url: str
) -> None:
    hub = snapshotting
    register_pf(hub)

    class Checked:
        """Records as the service does, and greps the snapshot table after each message."""

        def record_raw(self, raw: dict[str, Any]) -> dict[str, Any]:
            result = hub.messages.record_raw(raw)
            stored = b"".join(r[3] for r in _snapshot_rows(hub, database_url))
            for field, secret in SECRETS.items():
                assert secret.encode() not in stored, f"plaintext in a snapshot: {field}"
            return result

    case_id = _case_with_every_personal_field(Checked())  # type: ignore[arg-type]
    hub.app.take_snapshot(case_id)
    (before,) = [r for r in _snapshot_rows(hub, database_url) if r[0] == case_id]
    state = json.loads(before[3])["state"]
    assert PREFIX in json.dumps(state)  # the fields are there, encrypted ...
    shown = json.dumps(hub.cipher.reveal(state), ensure_ascii=False)
    # ... every one the case keeps (these only its events hold; no rule reads them)
    not_kept = {
        "assignment.extended.reason",
        "lead.transferred.reason",
        "rehab.decided.reason",
        "note.added.text",
    }
    assert {k for k, secret in SECRETS.items() if secret not in shown} == not_kept
    assert "notes" not in state

    _erase(hub.messages, case_id)
    hub.app.take_snapshot(case_id)
    rows = [r for r in _snapshot_rows(hub, database_url) if r[0] == case_id]
    assert [version for _, version, _, _ in rows] == [before[1] + 1]  # only the latest is kept
    stored = b"".join(r[3] for r in _snapshot_rows(hub, database_url))
    if database_url.startswith("sqlite"):  # and none left behind in the file's free pages
        path = Path(database_url.removeprefix("sqlite:///"))
        stored += b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
    for field, secret in SECRETS.items():
        assert secret.encode() not in stored, f"plaintext at rest after erasure: {field}"
    after = json.loads(rows[0][3])["state"]
    assert after["participant"] == {"pseudonym": "PF-1", "erased": True}
    revealed = json.dumps(hub.cipher.reveal(after), ensure_ascii=False)
    assert ERASED in revealed  # what is still ciphertext can no longer be opened
    assert not any(secret in revealed for secret in SECRETS.values())
    case = hub.messages._load(case_id)
    assert case is not None
    assert case.participant == {"pseudonym": "PF-1", "erased": True}


def test_cases_of_schema_v1_load_the_same_with_and_without_snapshots(tmp_path: Path) -> None:
    """Every case of the v1 fixture, snapshotted at each of its versions: the snapshot
    and the (upcast) events after it give the case its events alone give, and a new
    message on such a case is decided on the same state."""
    copy = tmp_path / "old.db"
    shutil.copy(ROOT / "tests" / "fixtures" / "hub-v1.db", copy)
    with sqlite3.connect(copy) as conn:
        cases = conn.execute(
            "SELECT originator_id, max(originator_version) FROM stored_events "
            "WHERE topic LIKE 'domain.case:%' GROUP BY originator_id"
        ).fetchall()
    assert len(cases) >= 5
    settings = Settings(database_url=f"sqlite:///{copy}", var_dir=tmp_path / "var")
    hub = build_hub(settings.model_copy(update={"snapshot_interval": 1}))
    try:
        for raw_id, last in cases:
            case_id = UUID(raw_id)
            for version in range(1, last + 1):
                hub.app.take_snapshot(case_id, version=version)
                at = hub.app.repository.get(case_id, version=version, projector_func=_project)
                assert vars(at) == _events_only(hub, case_id, version)
                assert vars(hub.messages._load(case_id)) == _events_only(hub, case_id)
        # An open case of the fixture, read through its last snapshot, takes a note.
        case = next(
            c for c in (hub.messages._load(UUID(raw_id)) for raw_id, _ in cases) if not c.is_closed
        )
        note = f.message("note.added", case.lead_agency, case.id, {"text": "danach"})
        note["occurred_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        hub.messages.record_raw(note)
        assert vars(hub.messages._load(case.id)) == _events_only(hub, case.id)
    finally:
        hub.close()


def _stored(row: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        originator_id=UUID(row["originator_id"]),
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=row["state"].encode(),
    )


def test_v1_snapshots_stored_by_the_previous_code_load_as_the_events_do(
    database_url: str, tmp_path: Path
) -> None:
    """The fixture's scripted case (its events and a class-version-1 snapshot at each
    version, as the v1 code stored them) on this store: from each snapshot, upcast,
    the case at its version and at the latest is the case its events alone give, and
    the next write, loaded through it, records what it would without snapshots."""
    domain = json.loads(FIXTURE_V1.read_text())["domain"]
    case_id = UUID(domain["events"][0]["originator_id"])
    settings = Settings(database_url=database_url, var_dir=tmp_path / "var")
    hub = build_hub(settings.model_copy(update={"snapshot_interval": 1_000}))
    try:
        assert hub.app.snapshots is not None
        hub.app.recorder.insert_events([_stored(row) for row in domain["events"]])
        for row in domain["snapshots"]:
            assert "class_version" not in json.loads(row["state"])["state"]
            version = row["originator_version"]
            hub.app.snapshots.recorder.insert_events([_stored(row)])
            at = hub.app.repository.get(case_id, version=version, projector_func=_project)
            assert vars(at) == _events_only(hub, case_id, version)
            latest = hub.app.repository.get(case_id, projector_func=_project)
            assert vars(latest) == _events_only(hub, case_id)
        # The last v1 snapshot (version 18) is the latest: a write loads through it.
        (open_id,) = [k for k, s in latest.appointments.items() if s.value == "scheduled"]
        held = f.message("appointment.held", "coach-fixture", case_id, {"appointment_id": open_id})
        held["occurred_at"] = "2026-04-01T09:00:00+00:00"
        hub.registry.register("jc-fixture", "jobcenter", "Fixture Jobcenter")
        hub.registry.register("coach-fixture", "coaching_provider", "Fixture Coaching")
        hub.messages.record_raw(held)
        loaded = hub.messages._load(case_id)
        assert loaded is not None
        assert loaded.version == 19
        assert loaded.appointments[open_id].value == "held"
        assert vars(loaded) == _events_only(hub, case_id)
    finally:
        hub.close()


def test_v1_snapshots_of_the_v1_fixture_cases_load_as_their_events_do(tmp_path: Path) -> None:
    """``tests/fixtures/hub-v1.db``'s cases (schema v1 events) with the class-version-1
    snapshots the previous code took of them at their middle and last versions: each
    case, upcast from either, is the case its events alone give, and a note on an open
    one is decided on that state."""
    copy = tmp_path / "old.db"
    shutil.copy(ROOT / "tests" / "fixtures" / "hub-v1.db", copy)
    rows = json.loads(FIXTURE_V1.read_text())["hub_v1"]
    assert len({r["originator_id"] for r in rows}) >= 5
    settings = Settings(database_url=f"sqlite:///{copy}", var_dir=tmp_path / "var")
    hub = build_hub(settings.model_copy(update={"snapshot_interval": 1_000}))
    try:
        assert hub.app.snapshots is not None
        for row in rows:  # per case, the middle version first
            assert "class_version" not in json.loads(row["state"])["state"]
            case_id, version = UUID(row["originator_id"]), row["originator_version"]
            hub.app.snapshots.recorder.insert_events([_stored(row)])
            at = hub.app.repository.get(case_id, version=version, projector_func=_project)
            assert vars(at) == _events_only(hub, case_id, version)
            latest = hub.app.repository.get(case_id, projector_func=_project)
            assert vars(latest) == _events_only(hub, case_id)
        cases = [hub.messages._load(UUID(r["originator_id"])) for r in rows]
        case = next(c for c in cases if c is not None and not c.is_closed)
        note = f.message("note.added", case.lead_agency, case.id, {"text": "danach"})
        note["occurred_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        hub.messages.record_raw(note)
        assert vars(hub.messages._load(case.id)) == _events_only(hub, case.id)
    finally:
        hub.close()


def test_a_snapshot_that_cannot_be_taken_or_used_never_fails_a_write(
    snapshotting: Hub, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hub = snapshotting

    def broken(cls: Any, aggregate: Any) -> Any:
        raise RuntimeError("cannot take")

    with monkeypatch.context() as patched, capture_logs() as logs:
        patched.setattr(CaseSnapshot, "take", classmethod(broken))
        case_id = _coaching_case(hub, notes=3)  # 6 events, two of them on an interval
    assert _snapshot_rows(hub, database_url) == []
    assert [e["error"] for e in logs if e["event"] == "snapshot_failed"] == ["RuntimeError"] * 2

    hub.messages.record_raw(f.message("note.added", COACH, case_id, {"text": "n3"}))  # at 9
    hub.messages.record_raw(f.message("note.added", COACH, case_id, {"text": "n4"}))
    hub.messages.record_raw(f.message("note.added", COACH, case_id, {"text": "n5"}))
    (row,) = _snapshot_rows(hub, database_url)
    assert row[1] == 9
    _replace_snapshot_state(database_url, row, lambda state: state.pop("stage"))
    with capture_logs() as logs:
        for n in range(6, 9):  # to version 12: loads pass the bad snapshot over, then replace it
            hub.messages.record_raw(f.message("note.added", COACH, case_id, {"text": f"n{n}"}))
    assert [e["event"] for e in logs].count("snapshot_unusable") >= 3
    (row,) = _snapshot_rows(hub, database_url)
    assert row[1] == 12
    assert vars(hub.messages._load(case_id)) == _events_only(hub, case_id)


def _replace_snapshot_state(database_url: str, row: tuple[Any, ...], change: Any) -> None:
    envelope = json.loads(row[3])
    change(envelope["state"])
    state = json.dumps(envelope).encode()
    if database_url.startswith("sqlite"):
        with sqlite3.connect(database_url.removeprefix("sqlite:///")) as conn:
            conn.execute(
                "UPDATE stored_snapshots SET state = ? WHERE originator_id = ?", (state, row[0].hex)
            )
        return
    import psycopg

    base, _, schema = database_url.partition("?schema=")
    with psycopg.connect(base) as conn:
        conn.execute(
            f'UPDATE "{schema}".hub_snapshots SET state = %s WHERE originator_id = %s',
            (state, row[0]),
        )


def test_the_interval_is_a_setting_and_zero_turns_snapshots_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert Settings().snapshot_interval == 100
    monkeypatch.setenv("HUB_SNAPSHOT_INTERVAL", "7")
    assert Settings().snapshot_interval == 7
    monkeypatch.setenv("HUB_SNAPSHOT_INTERVAL", "-1")
    with pytest.raises(ValidationError):
        Settings()
    monkeypatch.setenv("HUB_SNAPSHOT_INTERVAL", "0")
    url = f"sqlite:///{tmp_path / 'off.db'}"
    hub = build_hub(Settings(database_url=url, var_dir=tmp_path / "var"))
    try:
        assert hub.app.snapshots is None
        case_id = _coaching_case(hub, notes=120)
        loaded = hub.messages._load(case_id)
        assert loaded is not None
        assert loaded.version == 123
    finally:
        hub.close()
    with sqlite3.connect(tmp_path / "off.db") as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    assert "stored_snapshots" not in tables
