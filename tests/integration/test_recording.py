"""The application service on a real store: idempotency, refusals, concurrency."""

from __future__ import annotations

import multiprocessing
import threading
from uuid import UUID

import pytest

from domain.errors import ConsentMissing, DomainError
from services.bootstrap import Hub, build_hub
from services.errors import AgencyUnknown, CaseNotFound
from services.replay import replay_case
from services.settings import Settings
from tests import factories as f

JC, COACH, CLINIC = "jc-test", "coach-test", "clinic-test"


def _register(hub: Hub) -> None:
    hub.registry.register(JC, "jobcenter", "Jobcenter Test")
    hub.registry.register(COACH, "coaching_provider", "Coaching Test")
    hub.registry.register(CLINIC, "psychiatric_clinic", "Klinik Test")


def _open_case(hub: Hub) -> UUID:
    case_id = f.new_id()
    hub.messages.record_raw(f.opened(JC, case_id))
    return case_id


def _event_count(hub: Hub, case_id: UUID) -> int:
    return len(hub.app.store.select_case_events(case_id))


def test_record_returns_plain_result_with_position(hub: Hub) -> None:
    _register(hub)
    case_id = f.new_id()
    result = hub.messages.record_raw(f.opened(JC, case_id))
    assert result["case_id"] == str(case_id)
    assert result["duplicate"] is False
    assert isinstance(result["position"], int)
    assert result["position"] == hub.app.recorder.max_notification_id()


def test_same_message_twice_is_recorded_once(hub: Hub) -> None:
    _register(hub)
    case_id = _open_case(hub)
    handover = f.new_id()
    offer = f.offer(JC, case_id, handover, kind="assignment", to=COACH)

    first = hub.messages.record_raw(offer)
    # Even after the handover moved on, the repeat answers with the first result.
    hub.messages.record_raw(f.decide("handover.accepted", COACH, case_id, handover))
    again = hub.messages.record_raw(offer)

    assert again == {**first, "duplicate": True}
    assert first["handover_id"] == str(handover)
    assert _event_count(hub, case_id) == 3


def test_duplicate_is_recognised_after_a_restart(settings: Settings) -> None:
    first_hub = build_hub(settings)
    _register(first_hub)
    case_id = f.new_id()
    note = f.message("note.added", JC, case_id, {"text": "Gespräch geführt", "category": "notes"})
    first_hub.messages.record_raw(f.opened(JC, case_id))
    first = first_hub.messages.record_raw(note)
    first_hub.close()

    second_hub = build_hub(settings)
    try:
        again = second_hub.messages.record_raw(note)
        assert again == {**first, "duplicate": True}
        assert _event_count(second_hub, case_id) == 2
    finally:
        second_hub.close()


def test_refusal_records_nothing_and_the_message_may_be_sent_again(hub: Hub) -> None:
    _register(hub)
    case_id = _open_case(hub)
    head = hub.app.recorder.max_notification_id()
    offer = f.offer(JC, case_id, f.new_id(), kind="assignment", to=COACH, categories=["health"])

    with pytest.raises(ConsentMissing) as refused:
        hub.messages.record_raw(offer)

    assert refused.value.code == "consent_missing"
    assert hub.app.recorder.max_notification_id() == head
    assert hub.app.store.find_receipt(UUID(offer["message_id"])) is None
    hub.messages.record_raw(
        f.consent(
            JC, case_id, consent_id="c1", categories=["health"], source=JC, recipients=[COACH]
        )
    )
    assert hub.messages.record_raw(offer)["duplicate"] is False


@pytest.mark.parametrize(
    ("build", "error", "code"),
    [
        (lambda c: f.opened("nobody", c), AgencyUnknown, "agency_unknown"),
        (lambda c: f.message("note.added", JC, c, {"text": "x"}), CaseNotFound, "case_not_found"),
        (
            lambda c: f.offer(JC, c, f.new_id(), kind="assignment", to="ghost-agency"),
            AgencyUnknown,
            "agency_unknown",
        ),
    ],
)
def test_unknown_references_are_refused_with_codes(
    hub: Hub, build, error: type[Exception], code: str
) -> None:
    _register(hub)
    case_id = _open_case(hub) if code == "agency_unknown" else f.new_id()
    with pytest.raises(error) as refused:
        hub.messages.record_raw(build(case_id))
    assert refused.value.code == code


def test_a_second_case_opened_with_the_same_id_is_refused(hub: Hub) -> None:
    _register(hub)
    case_id = _open_case(hub)
    with pytest.raises(DomainError) as refused:
        hub.messages.record_raw(f.opened(COACH, case_id))
    assert refused.value.code == "case_exists"


def _notes(case_id: UUID, writer: str, count: int) -> list[dict]:
    return [
        f.message("note.added", JC, case_id, {"text": f"{writer}-{i}", "category": "notes"})
        for i in range(count)
    ]


def test_two_writers_in_threads_lose_nothing(hub: Hub) -> None:
    _register(hub)
    case_id = _open_case(hub)
    batches = [_notes(case_id, f"t{n}", 15) for n in range(4)]
    failures: list[BaseException] = []

    def write(batch: list[dict]) -> None:
        try:
            for note in batch:
                hub.messages.record_raw(note)
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)

    assert failures == []
    state = hub.cipher.reveal(replay_case(hub.app, case_id))["state"]
    assert sorted(n["text"] for n in state["notes"]) == sorted(
        m["payload"]["text"] for b in batches for m in b
    )
    assert state["version"] == 1 + 60


def _write_in_process(database_url: str, var_dir: str, notes: list[dict]) -> None:
    hub = build_hub(Settings(database_url=database_url, var_dir=var_dir))
    try:
        for note in notes:
            hub.messages.record_raw(note)
    finally:
        hub.close()


def test_two_writer_processes_lose_nothing(hub: Hub, settings: Settings) -> None:
    _register(hub)
    case_id = _open_case(hub)
    batches = [_notes(case_id, f"p{n}", 20) for n in range(2)]
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(
            target=_write_in_process,
            args=(settings.effective_database_url, str(settings.var_dir), batch),
        )
        for batch in batches
    ]
    for p in processes:
        p.start()
    for p in processes:
        p.join(timeout=120)

    assert [p.exitcode for p in processes] == [0, 0]
    state = hub.cipher.reveal(replay_case(hub.app, case_id))["state"]
    assert len(state["notes"]) == 40
    assert {n["text"] for n in state["notes"]} == {m["payload"]["text"] for b in batches for m in b}


def test_the_service_loads_a_case_as_the_library_would(hub: Hub) -> None:
    # The service replays events with its own projector (no per-event protocol check);
    # the case it decides on must be the one the library's own projector rebuilds.
    _register(hub)
    case_id = _open_case(hub)
    handover = f.new_id()
    hub.messages.record_raw(f.offer(JC, case_id, handover, kind="assignment", to=COACH))
    hub.messages.record_raw(f.decide("handover.accepted", COACH, case_id, handover))

    loaded = hub.messages._load(case_id)
    expected = hub.app.repository.get(case_id)
    assert loaded is not None
    assert loaded.version == expected.version == 3
    assert vars(loaded) == vars(expected)
    assert hub.messages._load(f.new_id()) is None
