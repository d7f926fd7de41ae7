"""The read path's single entry points (review findings of the last stop): one way to
show an agency (``agency_entry``), the feed's items through ``ReadService.feed_part``
(the history's rule), and a case's read recorded without looking for the case again
once it was loaded, while a read of an unknown case is still never recorded.
Real stores, both of them (the ``hub`` fixture)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import pytest

from domain.reads import case_reads_id
from services.access import FeedReads, Principal, ReadService, agency_entry
from services.bootstrap import Hub
from services.errors import CaseNotFound
from tests import factories as f

CLINIC, COACH = "clinic-r", "coach-r"
AUDITOR = Principal("auditor", "Prüferin R", "Prüferin R")
COACHING = Principal("agency", COACH, "Coaching R")


def _case(hub: Hub) -> tuple[UUID, ReadService]:
    """A clinic's case with a health note, handed to a coach with its consent."""
    hub.registry.register(CLINIC, "psychiatric_clinic", "Klinik R")
    hub.registry.register(COACH, "coaching_provider", "Coaching R")
    case_id = f.new_id()
    hub.messages.record_raw(f.opened(CLINIC, case_id))
    hub.messages.record_raw(
        f.consent(
            CLINIC, case_id, consent_id="h1", categories=["health"], source=CLINIC,
            recipients=[COACH],
        )
    )  # fmt: skip
    hub.messages.record_raw(
        f.offer(CLINIC, case_id, f.new_id(), kind="discharge", to=COACH, categories=["health"])
    )
    hub.messages.record_raw(
        f.message("note.added", CLINIC, case_id, {"text": "stabil", "category": "health"}, day=1)
    )
    hub.views.catch_up()
    return case_id, ReadService(hub.app, hub.queries, hub.messages, hub.view_store, hub.cipher)


def _reads_of(hub: Hub, case_id: UUID) -> list[Any]:
    return list(hub.app.recorder.select_events(case_reads_id(case_id)))


def test_every_read_shows_an_agency_the_same_way(hub: Hub) -> None:
    case_id, reads = _case(hub)
    listed = {a["agency_id"]: a for a in reads.agencies(AUDITOR)["items"]}
    assert listed[COACH] == {"agency_id": COACH, "kind": "coaching_provider", "name": "Coaching R"}
    for agency_id, entry in listed.items():
        assert agency_entry(hub.registry, agency_id) == entry
    # Named in a case but not registered here (or no registry at all): its id, no kind.
    unknown = {"agency_id": "jc-elsewhere", "kind": None, "name": "jc-elsewhere"}
    assert agency_entry(hub.registry, "jc-elsewhere") == unknown
    assert agency_entry(None, "jc-elsewhere") == unknown
    report = reads.subject_report(AUDITOR, str(case_id))
    names = {a: agency_entry(hub.registry, a)["name"] for a in (CLINIC, COACH)}
    text = str(report)
    assert all(name in text for name in names.values())


def test_a_read_of_an_unknown_case_is_refused_and_never_recorded(hub: Hub) -> None:
    _case(hub)
    unknown = f.new_id()
    with pytest.raises(CaseNotFound):
        hub.messages.record_read(unknown, agency="auditor", actor="a", role="auditor", scope="case")
    reads = ReadService(hub.app, hub.queries, hub.messages, hub.view_store, hub.cipher)
    for read in (reads.case, reads.history, reads.verify_case, reads.subject_report):
        with pytest.raises(CaseNotFound):
            read(AUDITOR, str(unknown))
    with pytest.raises(CaseNotFound):
        reads.case(COACHING, str(unknown))
    with pytest.raises(CaseNotFound):  # the feed's recording, apart from its read
        reads.record_case_read(AUDITOR, str(unknown), "feed", [])
    assert _reads_of(hub, unknown) == []


def test_a_read_of_a_loaded_case_does_not_look_for_the_case_again(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The case view is read from the views; recording its read must not go to the
    event store for the case's own stream (the store, counted, not replaced)."""
    case_id, reads = _case(hub)
    recorder = hub.app.recorder
    looked: list[UUID] = []
    select_events = recorder.select_events

    def counted(originator_id: UUID, *args: Any, **kwargs: Any) -> Any:
        looked.append(originator_id)
        return select_events(originator_id, *args, **kwargs)

    monkeypatch.setattr(recorder, "select_events", counted)
    before = len(_reads_of(hub, case_id))
    reads.case(AUDITOR, str(case_id))
    reads.case(COACHING, str(case_id))  # shows the health note: recorded
    assert case_id not in looked
    assert len(_reads_of(hub, case_id)) == before + 2


def test_the_feed_shows_the_historys_part_from_the_involvement_on(hub: Hub) -> None:
    case_id, reads = _case(hub)
    positions = {e.position for e in hub.app.store.select_case_events(case_id)}
    history = [i for i in reads.history(COACHING, str(case_id))["items"] if i["type"] != "CaseRead"]
    part, shown = reads.feed_part(COACHING, str(case_id), positions)
    offered = next(i["position"] for i in history if i["type"] == "HandoverOffered")
    expected = [i for i in history if i["position"] >= offered]
    assert [{k: v for k, v in i.items() if k not in ("case_id", "version")} for i in part] == (
        expected
    )
    assert {i["case_id"] for i in part} == {str(case_id)}
    assert shown == {"health"}
    items, to_record = FeedReads(reads).items(COACHING, {str(case_id): positions})
    assert items == part
    assert to_record == {str(case_id): ["health"]}
