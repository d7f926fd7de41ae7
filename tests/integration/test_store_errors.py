"""The stores classify their errors alike (issue 13, finding 4): a repeated receipt is
an ``IntegrityError`` at the first attempt on SQLite and PostgreSQL, never the
"pipeline aborted" ``OperationalError`` that PostgreSQL's pipeline reports for the
statements after the failed one (which the library retries, waiting 0.2 s each
time, and which the service did not take for a duplicate).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError

from domain.case import Act
from services.bootstrap import Hub
from tests import factories as f

JC = "jc-test"


def _open_with_note(hub: Hub) -> tuple[UUID, dict[str, Any]]:
    hub.registry.register(JC, "jobcenter", "Jobcenter Test")
    case_id = f.new_id()
    hub.messages.record_raw(f.opened(JC, case_id))
    note = f.message("note.added", JC, case_id, {"text": "Rückruf", "category": "notes"})
    hub.messages.record_raw(note)
    return case_id, note


def _one_attempt(hub: Hub) -> Any:
    """The recorder's ``insert_events`` without the library's retry decorator around it
    (``functools.wraps`` keeps the undecorated function as ``__wrapped__``)."""
    insert = type(hub.app.recorder).insert_events
    return getattr(insert, "__wrapped__", insert)


def test_a_repeated_receipt_is_an_integrity_error_at_the_first_attempt(hub: Hub) -> None:
    case_id, note = _open_with_note(hub)
    first = hub.app.store.find_receipt(UUID(note["message_id"]), JC)
    assert first is not None
    insert = _one_attempt(hub)
    for _ in range(10):  # on PostgreSQL the old code failed so nine times in ten
        case = hub.app.repository.get(case_id)
        act = Act(agency=JC, actor="user-1", occurred_at=datetime.now(UTC))
        case.add_note(act, text="again", category="notes")
        stored = [hub.app.mapper.to_stored_event(e) for e in case.collect_events()]
        with pytest.raises(IntegrityError):
            insert(hub.app.recorder, stored, receipt=first)
    assert len(hub.app.store.select_case_events(case_id)) == 2  # nothing was written


def test_repeats_are_answered_without_the_stores_retry_pause(hub: Hub) -> None:
    _, note = _open_with_note(hub)
    began = time.perf_counter()
    for _ in range(20):
        assert hub.messages.record_raw(note)["duplicate"] is True
    elapsed = time.perf_counter() - began
    # A retry pause is 0.2 s; twenty repeats that each paid one took over 4 s.
    assert elapsed < 3.5, f"20 repeats took {elapsed:.2f} s"  # generous: a busy machine


def test_repeats_among_concurrent_writers_never_break_a_connection(hub: Hub) -> None:
    """The soak's 500s: on PostgreSQL a repeat refused inside a pipeline left
    psycopg's prepared statements out of step with the server, and the connection's
    next user failed with 'prepared statement … does not exist'. Bounded: 16 writers,
    60 notes each, every third sent twice."""
    import threading
    from uuid import uuid4

    hub.registry.register(JC, "jobcenter", "Jobcenter Test")
    cases = [uuid4() for _ in range(16)]
    for case_id in cases:
        hub.messages.record_raw(f.opened(JC, case_id))
    failures: list[str] = []

    def write(case_id: UUID) -> None:
        for n in range(60):
            note = f.message("note.added", JC, case_id, {"text": f"n{n}", "category": "notes"})
            for _ in range(2 if n % 3 == 0 else 1):
                try:
                    hub.messages.record_raw(note)
                except Exception as error:  # any failure is the finding
                    failures.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=write, args=(case_id,)) for case_id in cases]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert all(len(hub.app.store.select_case_events(c)) == 61 for c in cases)
