"""Snapshots of ``Case`` load exactly as its events do (``domain/case/snapshot.py``).

A snapshot that rebuilt a case differently from its events would decide writes
differently, so: the shape of the state a snapshot stores is pinned for the current
class version (changing it means a class-version bump and an upcaster); snapshots the
class-version-1 code stored (``tests/fixtures/case-snapshots-v1.json``) load through
``Case.upcast_v1_v2`` as the events do and decide as that code decided; and a state
machine over every command compares, after each step, the case loaded from a snapshot
(taken at a random earlier moment, stored through the library's mapper) plus the
events after it against the case loaded from the events alone.
"""

from __future__ import annotations

import json
import re
from dataclasses import fields, is_dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, get_args, get_type_hints
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic, resolve_topic
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from domain.case import Act, Case
from domain.case.snapshot import CaseSnapshot, SnapshotUnusable, state_hints
from domain.values import AppointmentKind, DataCategory, EmploymentKind
from services.application import HubApplication, _project
from tests.fixtures.case_snapshots_v1 import PROBES, decide
from tests.unit.case_builders import COACHING, JOBCENTER, KINDS, POLICY, PROGRAMME, T0
from tests.unit.test_case_state_machine import RIGHTFUL, CaseMachine, advance, lag, pick, who

FIXTURE_V1 = Path(__file__).resolve().parents[1] / "fixtures" / "case-snapshots-v1.json"

# The state a snapshot of class version 1 stores: attribute -> type, and each record.
# (Kept: the stored v1 snapshots still have it, and ``Case.upcast_v1_v2`` reads it.)
SHAPE_V1 = {
    "_created_on": "datetime",
    "_modified_on": "datetime",
    "programme": "str",
    "site": "str | None",
    "assignment_months": "int",
    "participant": "dict[str, Any]",
    "opened_by": "str",
    "lead_agency": "str",
    "opened_at": "datetime",
    "stage": "Stage",
    "outcome": "Outcome | None",
    "closed_at": "datetime | None",
    "handovers": "dict[UUID, Handover]",
    "consents": "dict[str, Consent]",
    "appointments": "dict[UUID, Appointment]",
    "measures": "dict[UUID, Measure]",
    "notes": "list[Note]",
    "coach": "str | None",
    "coach_agency": "str | None",
    "agreement_signed_at": "datetime | None",
    "plan_goals": "tuple[str, ...] | None",
    "plan_modules": "tuple[str, ...]",
    "assignment_started_at": "datetime | None",
    "extensions": "list[int]",
    "employment": "Employment | None",
    "aftercare_until": "datetime | None",
    "aftercare_ended_at": "datetime | None",
    "erased_at": "datetime | None",
    "last_activity_at": "datetime",
}
RECORDS_V1 = {
    "Handover": {
        "handover_id": "UUID",
        "kind": "HandoverKind",
        "from_agency": "str",
        "to_agency": "str",
        "data_categories": "tuple[DataCategory, ...]",
        "offered_at": "datetime",
        "due_at": "datetime",
        "decide_due_at": "datetime | None",
        "legal_basis": "tuple[str, ...]",
        "reason": "str | None",
        "state": "HandoverState",
        "forwarded_from": "UUID | None",
        "forwarded_to": "UUID | None",
        "chain_origin_agency": "str",
        "decided_at": "datetime | None",
        "completed_at": "datetime | None",
        "priority": "str",
        "decision": "str | None",
        "opinion_requested_at": "datetime | None",
        "opinion_received_at": "datetime | None",
    },
    "Consent": {
        "consent_id": "str",
        "categories": "frozenset[DataCategory]",
        "source_agency": "str",
        "recipients": "frozenset[str]",
        "valid_from": "datetime",
        "valid_until": "datetime | None",
        "granted_by": "str",
        "revoked_at": "datetime | None",
        "purpose": "str | None",
        "document_ref": "str | None",
    },
    "Appointment": {
        "appointment_id": "UUID",
        "kind": "AppointmentKind",
        "at": "datetime",
        "scheduled_at": "datetime | None",
        "state": "AppointmentState",
    },
    "Measure": {
        "measure_id": "UUID",
        "kind": "str",
        "title": "str",
        "started_at": "datetime",
        "ended_at": "datetime | None",
        "result": "str | None",
    },
    "Note": {"category": "DataCategory", "text": "str", "agency": "str", "at": "datetime"},
    "Employment": {"employer": "str", "kind": "EmploymentKind", "start_date": "str"},
}

# Class version 2: no notes (no rule reads them); of the appointments only what the
# rules read, each one's state by the hex digits of its id and the scheduling time of
# those still scheduled. The records Appointment and Note are gone.
SHAPE_V2 = {
    **{name: hint for name, hint in SHAPE_V1.items() if name not in ("appointments", "notes")},
    "appointments": "dict[str, AppointmentState]",
    "appointments_scheduled_at": "dict[str, datetime]",
}
RECORDS_V2 = {
    name: record for name, record in RECORDS_V1.items() if name not in ("Appointment", "Note")
}


def _name(hint: Any) -> str:
    text = hint.__name__ if isinstance(hint, type) else str(hint)
    return re.sub(r"\b(?:[a-z_]+\.)+([A-Za-z_]+)", r"\1", text)


def _records(hint: Any, found: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    if isinstance(hint, type) and is_dataclass(hint) and hint.__name__ not in found:
        hints = get_type_hints(hint)
        found[hint.__name__] = {f.name: _name(hints[f.name]) for f in fields(hint)}
        for f in fields(hint):
            _records(hints[f.name], found)
    for arg in get_args(hint):
        _records(arg, found)
    return found


def in_memory_hub(interval: int = 1) -> HubApplication:
    """The hub's application on the library's in-memory store: the real mapper,
    transcoder and snapshot store, no database."""
    return HubApplication(
        env={"PERSISTENCE_MODULE": "eventsourcing.popo"}, snapshot_interval=interval
    )


def test_cases_are_snapshotted_by_the_pinned_class() -> None:
    assert Case.Snapshot is CaseSnapshot
    assert get_topic(CaseSnapshot) == "domain.case.snapshot:CaseSnapshot"
    assert resolve_topic("domain.case.snapshot:CaseSnapshot") is CaseSnapshot


def test_the_shape_of_the_snapshot_state_is_pinned_for_its_class_version() -> None:
    """Changing what a case holds changes what its snapshots hold: raise
    ``Case.class_version``, write ``Case.upcast_v1_v2(state)`` for the stored snapshots,
    then add the new shape here."""
    assert Case.class_version == 2
    hints = state_hints()
    assert {name: _name(hint) for name, hint in hints.items()} == SHAPE_V2
    found: dict[str, dict[str, str]] = {}
    for hint in hints.values():
        _records(hint, found)
    assert found == RECORDS_V2


def _busy_case() -> Case:
    """A case with something in every kind of state a snapshot encodes."""
    act = Act(JOBCENTER, "u", T0, recorded_at=T0, kinds=KINDS)
    case = Case.open(uuid4(), act, POLICY, programme=PROGRAMME, participant={"pseudonym": "P-1"})
    case.grant_consent(
        act,
        consent_id="c1",
        categories=[DataCategory.HEALTH, DataCategory.CONTACT],
        source_agency=JOBCENTER,
        recipients=[COACHING],
        valid_from=T0,
        valid_until=T0 + timedelta(days=30),
    )
    handover = uuid4()
    case.offer_handover(
        act,
        POLICY,
        handover_id=handover,
        kind="assignment",
        to_agency=COACHING,
        data_categories=[DataCategory.CONTACT],
    )
    later = Act(
        COACHING, "c", T0 + timedelta(hours=1), recorded_at=T0 + timedelta(hours=1), kinds=KINDS
    )
    case.accept_handover(later, POLICY, handover_id=handover)
    case.schedule_appointment(
        later, appointment_id=uuid4(), kind=AppointmentKind.INFORMATION, at=T0 + timedelta(days=2)
    )
    case.agree_plan(later, goals=["g1", "g2"], modules=["m1"])
    case.add_note(later, text="n1", category=DataCategory.NOTES)
    case.extend_assignment(act, months=3, reason="r")
    return case


def test_the_library_snapshot_would_not_load_a_case_as_its_events_do() -> None:
    """Why ``CaseSnapshot``: through the JSON transcoder the library's own ``Snapshot``
    brings tuples back as lists and enum members as plain strings (or cannot store
    UUID keys at all)."""
    app = in_memory_hub()
    case = _busy_case()
    app.save(case)
    with pytest.raises(TypeError):  # UUID keys are no JSON object keys
        app.mapper.to_stored_event(Snapshot.take(case))
    stored = app.mapper.to_stored_event(CaseSnapshot.take(case))
    loaded = app.mapper.to_domain_event(stored).mutate(None)
    assert vars(loaded) == vars(app.repository.get(case.id))
    assert loaded.stage is case.stage  # the enum member itself, so ``is`` checks hold
    assert type(loaded.plan_goals) is tuple


def test_a_snapshot_taken_before_a_class_version_bump_loads_through_its_upcaster(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A snapshot stored at class version 2, read after ``Case`` moved to version 3:
    the library calls ``Case.upcast_v2_v3`` on the stored state first. Played here as
    if version 2 had no ``coach_agency`` (removed from the stored snapshot) and
    version 3 added it with this upcaster. (The real bump, 1 to 2, is tested on the
    snapshots the v1 code stored, below.)"""
    app = in_memory_hub()
    case = _busy_case()
    app.save(case)
    app.take_snapshot(case.id)
    assert app.snapshots is not None
    stored = app.snapshots.recorder.select_events(case.id, desc=True, limit=1)[0]
    state = json.loads(stored.state)
    assert state["state"]["class_version"] == 2  # (version 1 was not written down)
    del state["state"]["coach_agency"]
    older = type(stored)(
        stored.originator_id, stored.originator_version, stored.topic, json.dumps(state).encode()
    )

    def upcast_v2_v3(old: dict[str, Any]) -> None:
        old["coach_agency"] = None

    monkeypatch.setattr(Case, "class_version", 3)
    monkeypatch.setattr(Case, "upcast_v2_v3", staticmethod(upcast_v2_v3), raising=False)
    loaded = app.mapper.to_domain_event(older).mutate(None)
    assert vars(loaded) == vars(app.repository.get(case.id))
    # The next snapshot records the version it was taken at.
    retaken = app.mapper.to_stored_event(CaseSnapshot.take(loaded))
    assert json.loads(retaken.state)["state"]["class_version"] == 3


def test_a_snapshot_no_upcaster_reaches_is_passed_over_for_the_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = in_memory_hub()
    case = _busy_case()
    app.save(case)
    app.take_snapshot(case.id)
    expected = vars(app._events_only.get(case.id, projector_func=_project))

    monkeypatch.setattr(Case, "class_version", 3)  # and no upcast_v2_v3
    with pytest.raises(SnapshotUnusable):
        app.repository.get(case.id, projector_func=_project)
    assert vars(app.load(case.id)) == expected  # from the events instead


def test_a_snapshot_of_a_newer_class_version_is_not_decoded() -> None:
    """Written by a newer version of the code (then rolled back): its shape is unknown."""
    app = in_memory_hub()
    case = _busy_case()
    app.save(case)
    newer = CaseSnapshot.take(case)
    newer.state["class_version"] = 3
    stored = app.mapper.to_stored_event(newer)
    with pytest.raises(SnapshotUnusable, match="newer"):
        app.mapper.to_domain_event(stored).mutate(None)


# ---- class version 1, as its code stored it ----------------------------------------


def _stored(row: dict[str, Any]) -> StoredEvent:
    return StoredEvent(
        originator_id=UUID(row["originator_id"]),
        originator_version=row["originator_version"],
        topic=row["topic"],
        state=row["state"].encode(),
    )


def _fixture_v1() -> dict[str, Any]:
    fixture: dict[str, Any] = json.loads(FIXTURE_V1.read_text())
    assert fixture["class_version"] == 1
    return fixture


def test_the_v1_fixture_holds_v1_snapshots_of_every_record() -> None:
    """What the tests below read really is the old shape: no ``class_version``, notes
    and appointment records, appointments in every state."""
    domain = _fixture_v1()["domain"]
    states = [json.loads(row["state"])["state"] for row in domain["snapshots"]]
    assert len(states) == len(domain["events"]) == len(domain["decisions"])
    for state in states:
        assert "class_version" not in state
        assert set(state) == set(SHAPE_V1)
    last = states[-1]
    assert [n["text"] for n in last["notes"]] == ["", ""]  # blanked by the erasure
    assert sorted(a["state"] for a in last["appointments"].values()) == [
        "held",
        "missed",
        "scheduled",
    ]
    assert set(next(iter(last["appointments"].values()))) == set(RECORDS_V1["Appointment"])


def test_upcast_v1_v2_keeps_what_the_rules_read() -> None:
    state = json.loads(_fixture_v1()["domain"]["snapshots"][-1]["state"])["state"]
    old_appointments = json.loads(json.dumps(state["appointments"]))
    Case.upcast_v1_v2(state)
    assert set(state) == set(SHAPE_V2)
    assert state["appointments"] == {k: a["state"] for k, a in old_appointments.items()}
    assert state["appointments_scheduled_at"] == {
        k: a["scheduled_at"] for k, a in old_appointments.items() if a["state"] == "scheduled"
    }
    with pytest.raises(KeyError):  # no v1 state: the snapshot is unusable, not guessed at
        Case.upcast_v1_v2({"appointments": {}})


@pytest.mark.parametrize("version", range(1, 19))
def test_a_v1_snapshot_loads_as_the_events_do_and_decides_as_the_v1_code_did(
    version: int,
) -> None:
    """Each snapshot the v1 code stored, alone in the snapshot store beside the case's
    events: the case loaded from it (upcast) at its version, and with the events after
    it at the latest, is the case the events alone give; and on the fourteen probe
    commands it decides what the v1 code decided at that version."""
    domain = _fixture_v1()["domain"]
    assert len(domain["snapshots"]) == 18
    app = in_memory_hub(interval=1_000)  # snapshots on; no save here reaches one
    assert app.snapshots is not None
    app.recorder.insert_events([_stored(row) for row in domain["events"]])
    app.snapshots.recorder.insert_events([_stored(domain["snapshots"][version - 1])])
    case_id = UUID(domain["events"][0]["originator_id"])

    at = app.repository.get(case_id, version=version, projector_func=_project)
    past = app._events_only.get(case_id, version=version, projector_func=_project)
    assert vars(at) == vars(past)
    assert all(type(key) is str for key in at.appointments)
    latest = app.repository.get(case_id, projector_func=_project)
    assert vars(latest) == vars(app._events_only.get(case_id, projector_func=_project))
    expected = {
        name: answer if isinstance(answer, str) else list(answer)
        for name, answer in domain["decisions"][version - 1].items()
    }
    assert {name: decide(at, probe) for name, probe in PROBES.items()} == expected


# ---- the state machine: snapshots against events, for random histories ---------------


class SnapshotMachine(CaseMachine):
    """``CaseMachine`` (every handover, consent and lifecycle rule, with its
    invariants) plus the casework records, erasure and snapshots at random moments;
    every event is stored in the hub's application on the in-memory store."""

    def __init__(self) -> None:
        super().__init__()
        self.app = in_memory_hub()
        self.saved = 0
        self.snapshot_versions: list[int] = []

    def _store(self) -> None:
        if self.saved < len(self.events):
            self.app.save(*self.events[self.saved :])
            self.saved = len(self.events)

    def _involved(self, agency: str, ahead: float, late: float) -> Act:
        return self.act(self._party(agency, self.case.lead_agency), ahead, late)

    def _records(self, name: str) -> list[Any]:
        return list(getattr(self.case, name).values())

    def _appointment_ids(self) -> list[UUID]:
        return [UUID(key) for key in self.case.appointments]

    @rule()
    def snapshot(self) -> None:
        """Through the library's path (load, take, store), failing loudly here."""
        self._store()
        assert self.app.snapshots is not None
        aggregate = self.app.repository.get(self.case.id, projector_func=_project)
        if aggregate.version in self.snapshot_versions:
            return  # one snapshot per version
        self.app.snapshots.put([type(aggregate).Snapshot.take(aggregate)])
        self.snapshot_versions.append(aggregate.version)

    @rule(agency=who, ahead=advance, late=lag, text=st.text(max_size=8))
    def note(self, agency: str, ahead: float, late: float, text: str) -> None:
        def run() -> Act:
            a = self._involved(agency, ahead, late)
            self.case.add_note(a, text=f"enc:v1:k:{text}", category=DataCategory.NOTES)
            return a

        self.attempt(run)

    @rule(
        agency=who,
        ahead=advance,
        late=lag,
        kind=st.sampled_from(AppointmentKind),
        days=st.integers(-3, 30),
    )
    def schedule(
        self, agency: str, ahead: float, late: float, kind: AppointmentKind, days: int
    ) -> None:
        def run() -> Act:
            a = self._involved(agency, ahead, late)
            at = self.hub + timedelta(days=days)
            self.case.schedule_appointment(a, appointment_id=uuid4(), kind=kind, at=at)
            return a

        self.attempt(run)

    @precondition(lambda self: bool(self.case.appointments))
    @rule(index=pick, agency=who, held=st.booleans(), ahead=advance, late=lag)
    def settle(self, index: int, agency: str, held: bool, ahead: float, late: float) -> None:
        appointment_id = self._appointment_ids()[index % len(self.case.appointments)]

        def run() -> Act:
            a = self._involved(agency, ahead, late)
            settle = (
                self.case.record_appointment_held if held else self.case.record_appointment_missed
            )
            settle(a, appointment_id=appointment_id)
            return a

        self.attempt(run)

    @rule(agency=who, ahead=advance, late=lag, title=st.text(max_size=5))
    def start_measure(self, agency: str, ahead: float, late: float, title: str) -> None:
        def run() -> Act:
            a = self._involved(agency, ahead, late)
            self.case.start_measure(a, measure_id=uuid4(), kind="internship", title=title)
            return a

        self.attempt(run)

    @precondition(lambda self: bool(self.case.measures))
    @rule(
        index=pick,
        agency=who,
        ahead=advance,
        late=lag,
        result=st.one_of(st.none(), st.text(max_size=5)),
    )
    def end_measure(
        self, index: int, agency: str, ahead: float, late: float, result: str | None
    ) -> None:
        measure = self._records("measures")[index % len(self.case.measures)]

        def run() -> Act:
            a = self._involved(agency, ahead, late)
            self.case.end_measure(a, measure_id=measure.measure_id, result=result)
            return a

        self.attempt(run)

    @rule(agency=who, ahead=advance, late=lag, goals=st.lists(st.text(max_size=4), max_size=3))
    def plan(self, agency: str, ahead: float, late: float, goals: list[str]) -> None:
        def run() -> Act:
            a = self._involved(agency, ahead, late)
            if self.case.plan_goals is None:
                self.case.agree_plan(a, goals=goals, modules=["m"])
            else:
                self.case.update_plan(a, goals=goals, modules=[])
            return a

        self.attempt(run)

    @rule(agency=who, ahead=advance, late=lag)
    def coach_and_agreement(self, agency: str, ahead: float, late: float) -> None:
        def run() -> Act:
            a = self._involved(agency, ahead, late)
            self.case.assign_coach(a, coach="coach-1")
            if self.case.agreement_signed_at is None:
                self.case.sign_agreement(a)
            return a

        self.attempt(run)

    @rule(agency=who, ahead=advance, late=lag, months=st.integers(0, 3))
    def extend(self, agency: str, ahead: float, late: float, months: int) -> None:
        def run() -> Act:
            a = self._involved(agency, ahead, late)
            self.case.extend_assignment(a, months=months, reason="r")
            return a

        self.attempt(run)

    @rule(agency=who, ahead=advance, late=lag, step=st.integers(0, 2))
    def employment(self, agency: str, ahead: float, late: float, step: int) -> None:
        def run() -> Act:
            a = self._involved(agency, ahead, late)
            if step == 0:
                self.case.start_employment(
                    a,
                    employer="e",
                    kind=EmploymentKind.EMPLOYMENT,
                    start_date=T0.date().isoformat(),
                )
            elif step == 1:
                self.case.start_aftercare(a, until=self.hub + timedelta(days=90))
            else:
                self.case.end_aftercare(a)
            return a

        self.attempt(run)

    @rule(agency=who, ahead=advance)
    def erase(self, agency: str, ahead: float) -> None:
        def run() -> Act:
            # On the hub's clock: erasure does not check ``occurred_at`` against the
            # opening (reported; not this test's subject).
            a = self._involved(agency, ahead, 0)
            self.case.erase_participant(a, POLICY, reason="r", ground="Art. 17 (1) a DSGVO")
            return a

        self.attempt(run)

    @invariant()
    def the_case_from_a_snapshot_is_the_case_from_its_events(self) -> None:
        self._store()
        from_events = self.app._events_only.get(self.case.id, projector_func=_project)
        with_snapshot = self.app.repository.get(self.case.id, projector_func=_project)
        assert vars(with_snapshot) == vars(from_events)
        # and at every version a snapshot was taken at, from the snapshot alone
        for version in self.snapshot_versions[-2:]:
            at = self.app.repository.get(self.case.id, version=version, projector_func=_project)
            past = self.app._events_only.get(self.case.id, version=version, projector_func=_project)
            assert vars(at) == vars(past)


SnapshotMachine.TestCase.settings = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)
test_snapshots_load_as_the_events_do = SnapshotMachine.TestCase


def test_the_snapshot_machine_reaches_records_snapshots_and_erasure() -> None:
    """Not vacuous: a scripted run records every kind of record, snapshots between
    them and erases."""
    machine = SnapshotMachine()
    machine.open(JOBCENTER, consent_days=None)
    machine.note(RIGHTFUL, 1, 0, "a")
    machine.schedule(RIGHTFUL, 1, 0, AppointmentKind.INFORMATION, 2)
    machine.snapshot()
    machine.settle(0, RIGHTFUL, True, 1, 0)
    machine.start_measure(RIGHTFUL, 1, 0, "t")
    machine.end_measure(0, RIGHTFUL, 1, 0, "r")
    machine.plan(RIGHTFUL, 1, 0, ["g"])
    machine.snapshot()
    machine.extend(RIGHTFUL, 1, 0, 2)
    machine.erase(RIGHTFUL, 1)
    machine.the_case_from_a_snapshot_is_the_case_from_its_events()
    assert machine.refusals == 0
    assert sum(isinstance(e, Case.NoteAdded) for e in machine.events) == 1
    assert sum(isinstance(e, Case.AppointmentHeld) for e in machine.events) == 1
    assert machine.case.erased_at is not None
    assert len(machine.snapshot_versions) == 2
    assert [UUID(key) for key in machine.case.appointments]
