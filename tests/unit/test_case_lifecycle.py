"""Case lifecycle (opened → active → employed → aftercare → closed), rule 4, closure,
erasure, involvement and the once-only / unique-id guards of the ``Case`` aggregate."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.case import Act, Case
from domain.errors import (
    AlreadyDone,
    AppointmentExists,
    AppointmentUnknown,
    CaseClosed,
    DomainError,
    InvalidTransition,
    InvalidValue,
    MeasureExists,
    MeasureUnknown,
    NotInvolved,
    NotLeadAgency,
    NotReceiver,
    NotSender,
    OccurredTooEarly,
    PlanMissing,
)
from domain.values import (
    AppointmentKind,
    AppointmentState,
    DataCategory,
    EmploymentKind,
    HandoverKind,
    HandoverState,
    Outcome,
    Stage,
)
from tests.unit.case_builders import (
    CHAMBER,
    CLINIC,
    COACHING,
    DRV,
    EMPLOYMENT_AGENCY,
    INTEGRATION_OFFICE,
    JOBCENTER,
    KINDS,
    OUTSIDER,
    POLICY,
    PROGRAMME,
    RIGHTFUL,
    T0,
    act,
    active_case,
    assert_replays_equal,
    at,
    grant,
    offer,
    open_case,
    raises_domain,
    rightful_offer,
)

# ---- opening ---------------------------------------------------------------------------


def test_open_records_the_case_with_the_opener_as_lead() -> None:
    case_id = uuid4()

    case = Case.open(
        case_id,
        Act(JOBCENTER, "cm-1", T0, kinds=KINDS),
        programme=PROGRAMME,
        site="Trier-Nord",
        participant={"pseudonym": "P-0001", "name": "Erika"},
    )

    assert case.id == case_id
    assert case.stage is Stage.OPENED
    assert case.lead_agency == JOBCENTER
    assert case.opened_by == JOBCENTER
    assert case.opened_at == T0
    assert (case.programme, case.site) == (PROGRAMME, "Trier-Nord")
    assert case.assignment_months == 12
    assert case.assignment_ends_at is None
    assert case.outcome is None
    assert not case.is_closed
    assert case.involved_agencies == {JOBCENTER}
    [event] = case.collect_events()
    assert type(event).__name__ == "CaseOpened"
    assert (event.agency, event.actor, event.occurred_at) == (JOBCENTER, "cm-1", T0)
    assert_replays_equal(case, [event])


def test_open_keeps_its_own_copy_of_the_participant() -> None:
    participant = {"pseudonym": "P-0001"}
    case = open_case(participant=participant)

    participant["pseudonym"] = "changed"

    assert case.participant == {"pseudonym": "P-0001"}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"assignment_months": 0},
        {"assignment_months": 37},
        {"participant": {}},
        {"participant": {"pseudonym": ""}},
    ],
    ids=["zero-months", "too-many-months", "no-pseudonym", "empty-pseudonym"],
)
def test_open_refuses_invalid_values(kwargs: dict[str, Any]) -> None:
    with raises_domain(InvalidValue, "invalid_value"):
        open_case(**kwargs)


# ---- rule 4: who and when ----------------------------------------------------------------


def test_naive_occurred_at_is_refused() -> None:
    with raises_domain(InvalidValue, "invalid_value"):
        Act(JOBCENTER, "cm-1", datetime(2026, 3, 2, 9))  # naive on purpose


def test_every_event_names_agency_actor_occurred_at_and_recorded_timestamp() -> None:
    before = datetime.now(UTC)
    case = Case.open(
        uuid4(),
        Act(JOBCENTER, "cm-1", T0, kinds=KINDS),
        programme=PROGRAMME,
        participant={"pseudonym": "P"},
    )
    expected: list[tuple[str, str, datetime]] = [(JOBCENTER, "cm-1", T0)]

    def do(agency: str, actor: str, days: int, command: Callable[[Act], None]) -> None:
        moment = T0 + timedelta(days=days)
        command(Act(agency, actor, moment, kinds=KINDS))
        expected.append((agency, actor, moment))

    assignment = uuid4()
    do(
        JOBCENTER,
        "cm-1",
        0,
        lambda a: case.grant_consent(
            a,
            consent_id="c-1",
            categories=[DataCategory.HEALTH],
            source_agency=JOBCENTER,
            recipients=[COACHING],
            valid_from=T0,
        ),
    )
    do(
        JOBCENTER,
        "cm-2",
        1,
        lambda a: case.offer_handover(
            a,
            POLICY,
            handover_id=assignment,
            kind=HandoverKind.ASSIGNMENT,
            to_agency=COACHING,
            data_categories=[DataCategory.HEALTH],
        ),
    )
    do(COACHING, "coach-7", 2, lambda a: case.accept_handover(a, handover_id=assignment))
    do(COACHING, "coach-7", 3, lambda a: case.assign_coach(a, coach="coach-7"))
    do(COACHING, "coach-7", 4, case.sign_agreement)
    do(
        COACHING,
        "coach-7",
        5,
        lambda a: case.add_note(a, text="first contact", category=DataCategory.NOTES),
    )
    # rule 7: the case closes once no handover is open
    do(COACHING, "coach-7", 6, lambda a: case.complete_handover(a, handover_id=assignment))
    do(JOBCENTER, "cm-1", 7, lambda a: case.close(a, outcome=Outcome.OTHER))
    after = datetime.now(UTC)

    events = case.collect_events()
    assert [(e.agency, e.actor, e.occurred_at) for e in events] == expected
    for event in events:
        assert event.occurred_at.tzinfo is not None
        assert isinstance(event.timestamp, datetime)
        assert event.timestamp.tzinfo is not None
        assert before <= event.timestamp <= after  # recorded now, not at occurred_at
    assert_replays_equal(case, events)


# ---- opened → active ----------------------------------------------------------------------


def _accept_assignment(case: Case, handover_id: UUID) -> None:
    case.accept_handover(act(COACHING, 1), handover_id=handover_id)


def _sign(case: Case, _: UUID) -> None:
    case.sign_agreement(act(COACHING, 2))


@pytest.mark.parametrize(
    ("first", "second"),
    [(_accept_assignment, _sign), (_sign, _accept_assignment)],
    ids=["accept-then-sign", "sign-then-accept"],
)
def test_case_becomes_active_after_assignment_accepted_and_agreement_signed(
    first: Callable[[Case, UUID], None], second: Callable[[Case, UUID], None]
) -> None:
    case = open_case()
    assignment = offer(case, receiver=COACHING, kind=HandoverKind.ASSIGNMENT)

    first(case, assignment)
    assert case.stage is Stage.OPENED

    second(case, assignment)
    assert case.stage is Stage.ACTIVE
    assert_replays_equal(case)


@pytest.mark.parametrize("kind", [k for k in HandoverKind if k is not HandoverKind.ASSIGNMENT])
def test_accepting_another_kind_of_handover_does_not_activate(kind: HandoverKind) -> None:
    case, handover_id = rightful_offer(kind)
    _, receiver = RIGHTFUL[kind]
    case.sign_agreement(act(JOBCENTER, 1))

    case.accept_handover(act(receiver, 2), POLICY, handover_id=handover_id)

    assert case.stage is Stage.OPENED
    assert case.assignment_ends_at is None


def test_declined_assignment_does_not_activate() -> None:
    case = open_case()
    assignment = offer(case, receiver=COACHING)
    case.sign_agreement(act(JOBCENTER, 1))

    case.decline_handover(act(COACHING, 2), handover_id=assignment, reason="full")

    assert case.stage is Stage.OPENED


def test_signing_the_agreement_twice_is_refused() -> None:
    case, _ = active_case()

    with raises_domain(AlreadyDone, "already_recorded"):
        case.sign_agreement(act(COACHING, 3))

    assert case.agreement_signed_at == at(2)


# ---- employment and aftercare ---------------------------------------------------------------


def _employ(case: Case, days: float = 10, agency: str = COACHING) -> None:
    case.start_employment(
        act(agency, days),
        employer="Bäckerei Müller",
        kind=EmploymentKind.EMPLOYMENT,
        start_date="2026-04-01",
    )


def _case_in(stage: Stage) -> Case:
    if stage is Stage.OPENED:
        case = open_case()
        offer(case, receiver=COACHING)
        return case
    case, _ = active_case()
    if stage in (Stage.EMPLOYED, Stage.AFTERCARE):
        _employ(case)
    if stage is Stage.AFTERCARE:
        case.start_aftercare(act(COACHING, 11), until=at(190))
    assert case.stage is stage
    return case


@pytest.mark.parametrize("stage", [Stage.OPENED, Stage.ACTIVE])
def test_employment_starts_from_opened_or_active(stage: Stage) -> None:
    case = _case_in(stage)

    case.start_employment(
        act(COACHING, 10), employer="Bäckerei Müller", kind="training", start_date="2026-04-01"
    )

    assert case.stage is Stage.EMPLOYED
    assert case.employment is not None
    assert case.employment.kind is EmploymentKind.TRAINING
    assert case.employment.start_date == "2026-04-01"
    assert_replays_equal(case)


@pytest.mark.parametrize("stage", [Stage.EMPLOYED, Stage.AFTERCARE])
def test_employment_cannot_start_again(stage: Stage) -> None:
    case = _case_in(stage)

    with raises_domain(InvalidTransition, "invalid_transition"):
        _employ(case, days=20)

    assert case.stage is stage


def test_aftercare_starts_after_employment() -> None:
    case = _case_in(Stage.EMPLOYED)

    case.start_aftercare(act(COACHING, 11), until=at(190))

    assert case.stage is Stage.AFTERCARE
    assert case.aftercare_until == at(190)
    assert_replays_equal(case)


@pytest.mark.parametrize("stage", [Stage.OPENED, Stage.ACTIVE, Stage.AFTERCARE])
def test_aftercare_cannot_start_outside_employment(stage: Stage) -> None:
    case = _case_in(stage)

    with raises_domain(InvalidTransition, "invalid_transition"):
        case.start_aftercare(act(COACHING, 20))


def test_aftercare_ends_during_aftercare_only_once() -> None:
    case = _case_in(Stage.AFTERCARE)

    case.end_aftercare(act(COACHING, 190))
    assert case.aftercare_ended_at == at(190)

    with raises_domain(InvalidTransition, "invalid_transition"):
        case.end_aftercare(act(COACHING, 191))


@pytest.mark.parametrize("stage", [Stage.OPENED, Stage.ACTIVE, Stage.EMPLOYED])
def test_aftercare_cannot_end_when_none_is_running(stage: Stage) -> None:
    case = _case_in(stage)

    with raises_domain(InvalidTransition, "invalid_transition"):
        case.end_aftercare(act(COACHING, 20))


# ---- closing and lead agency ------------------------------------------------------------------


@pytest.mark.parametrize("outcome", list(Outcome))
def test_lead_agency_closes_with_an_outcome(outcome: Outcome) -> None:
    case, assignment = active_case()
    case.complete_handover(act(COACHING, 29), handover_id=assignment)
    target = "jobcenter-koeln" if outcome is Outcome.TRANSFERRED else None

    case.close(act(JOBCENTER, 30), outcome=outcome, target=target)

    assert case.stage is Stage.CLOSED
    assert case.is_closed
    assert case.outcome is outcome
    assert case.closed_at == at(30)
    assert_replays_equal(case)


@pytest.mark.parametrize("stage", list(Stage)[:-1])
def test_case_closes_from_every_open_stage(stage: Stage) -> None:
    case = _case_in(stage)

    case.close(act(JOBCENTER, 300), outcome=Outcome.MOVED_AWAY, withdraw_open=True)

    assert case.stage is Stage.CLOSED
    assert not any(h.is_open for h in case.handovers.values())


def test_only_the_lead_agency_closes() -> None:
    case, _ = active_case()

    with raises_domain(NotLeadAgency, "not_lead_agency"):
        case.close(act(COACHING, 30), outcome=Outcome.EMPLOYED)

    assert case.stage is Stage.ACTIVE


def _clinic_case_with_discharge() -> tuple[Case, UUID]:
    case = open_case(CLINIC)
    grant(
        case,
        by=CLINIC,
        categories=[DataCategory.HEALTH, DataCategory.CONTACT],
        source=CLINIC,
        recipients=[JOBCENTER],
    )
    discharge = offer(
        case,
        sender=CLINIC,
        receiver=JOBCENTER,
        kind=HandoverKind.DISCHARGE,
        categories=[DataCategory.HEALTH, DataCategory.CONTACT],
    )
    return case, discharge


def test_offered_discharge_leaves_the_clinic_as_lead() -> None:
    case, _ = _clinic_case_with_discharge()

    assert case.lead_agency == CLINIC


def test_discharge_accepted_by_the_jobcenter_makes_it_lead() -> None:
    case, discharge = _clinic_case_with_discharge()

    case.accept_handover(act(JOBCENTER, 3), handover_id=discharge)

    assert case.lead_agency == JOBCENTER
    assert case.opened_by == CLINIC
    with raises_domain(NotLeadAgency, "not_lead_agency"):
        case.close(act(CLINIC, 4), outcome=Outcome.OTHER)
    rebuilt = assert_replays_equal(case)
    assert rebuilt.lead_agency == JOBCENTER


@pytest.mark.parametrize("decision", ["decline", "withdraw"])
def test_undone_discharge_leaves_the_lead_unchanged(decision: str) -> None:
    case, discharge = _clinic_case_with_discharge()

    if decision == "decline":
        case.decline_handover(act(JOBCENTER, 3), handover_id=discharge, reason="not ours")
    else:
        case.withdraw_handover(act(CLINIC, 3), handover_id=discharge, reason="stays")

    assert case.lead_agency == CLINIC


def test_scenario_clinic_to_jobcenter() -> None:
    """DOMAIN scenario 1 (G-A-L), on the aggregate."""
    case, discharge = _clinic_case_with_discharge()
    case.accept_handover(act(JOBCENTER, 3), POLICY, handover_id=discharge)
    # the Jobcenter's contact before the discharge date completes the discharge
    case.complete_handover(act(JOBCENTER, 10), handover_id=discharge)
    placement = offer(
        case, sender=JOBCENTER, receiver=CHAMBER, kind=HandoverKind.PLACEMENT_SUPPORT, days=5
    )
    case.accept_handover(act(CHAMBER, 6), handover_id=placement)
    case.start_measure(act(CHAMBER, 10), measure_id=uuid4(), kind="internship", title="Praktikum")
    case.complete_handover(act(CHAMBER, 40), handover_id=placement)
    _employ(case, days=60, agency=JOBCENTER)
    case.start_aftercare(act(JOBCENTER, 60), until=at(240))
    case.end_aftercare(act(JOBCENTER, 240))

    case.close(act(JOBCENTER, 241), outcome=Outcome.EMPLOYED)

    assert case.stage is Stage.CLOSED
    assert case.outcome is Outcome.EMPLOYED
    # rule 7: nothing is open when the case closes (the discharge was completed; an
    # accepted but unfinished one would block the closure)
    assert case.handover(discharge).state is HandoverState.COMPLETED
    assert case.handover(placement).state is HandoverState.COMPLETED
    assert_replays_equal(case)


# ---- assignment period --------------------------------------------------------------------------


def test_assignment_period_runs_twelve_months_from_acceptance() -> None:
    case, _ = active_case()  # accepted on day 1

    assert case.assignment_started_at == at(1)
    assert case.assignment_ends_at == datetime(2027, 3, 3, 9, tzinfo=UTC)


def test_extension_adds_months_to_the_assignment_period() -> None:
    case, _ = active_case()

    case.extend_assignment(act(JOBCENTER, 300), months=3, reason="needs more time")

    assert case.extensions == [3]
    assert case.assignment_ends_at == datetime(2027, 6, 3, 9, tzinfo=UTC)  # 15 months
    assert_replays_equal(case)


def test_extensions_add_up() -> None:
    case, _ = active_case()
    case.extend_assignment(act(JOBCENTER, 300), months=3, reason="a")
    case.extend_assignment(act(JOBCENTER, 380), months=2, reason="b")

    assert case.assignment_ends_at == datetime(2027, 8, 3, 9, tzinfo=UTC)  # 17 months


def test_custom_assignment_period() -> None:
    case = open_case(assignment_months=6)
    assignment = offer(case)
    case.accept_handover(act(COACHING, 1), handover_id=assignment)

    assert case.assignment_ends_at == datetime(2026, 9, 3, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("accepted_on", "months", "ends_on"),
    [
        (datetime(2026, 1, 31, 9, tzinfo=UTC), 1, datetime(2026, 2, 28, 9, tzinfo=UTC)),
        (datetime(2027, 12, 31, 9, tzinfo=UTC), 2, datetime(2028, 2, 29, 9, tzinfo=UTC)),
        (datetime(2026, 12, 15, 9, tzinfo=UTC), 12, datetime(2027, 12, 15, 9, tzinfo=UTC)),
        (datetime(2026, 10, 31, 9, tzinfo=UTC), 2, datetime(2026, 12, 31, 9, tzinfo=UTC)),
    ],
    ids=["end-of-january", "leap-february", "december", "into-december"],
)
def test_assignment_end_is_clamped_to_the_last_day_of_the_month(
    accepted_on: datetime, months: int, ends_on: datetime
) -> None:
    case = Case.open(
        uuid4(),
        Act(JOBCENTER, "cm", accepted_on - timedelta(days=1), kinds=KINDS),
        programme=PROGRAMME,
        assignment_months=months,
        participant={"pseudonym": "P"},
    )
    assignment = offer(case, days=(accepted_on - T0).days - 1)
    case.accept_handover(Act(COACHING, "c", accepted_on, kinds=KINDS), handover_id=assignment)

    assert case.assignment_ends_at == ends_on


def test_only_the_lead_agency_extends_the_assignment() -> None:
    case, _ = active_case()

    with raises_domain(NotLeadAgency, "not_lead_agency"):
        case.extend_assignment(act(COACHING, 300), months=3, reason="x")

    assert case.extensions == []


@pytest.mark.parametrize("months", [0, 25])
def test_extension_must_be_between_one_and_twenty_four_months(months: int) -> None:
    case, _ = active_case()

    with raises_domain(InvalidValue, "invalid_value"):
        case.extend_assignment(act(JOBCENTER, 300), months=months, reason="x")


def test_scenario_coaching_up_to_twelve_months() -> None:
    """DOMAIN scenario 3 (Trier), on the aggregate."""
    case, assignment = active_case()
    meeting = uuid4()
    case.schedule_appointment(
        act(COACHING, 1), appointment_id=meeting, kind=AppointmentKind.INFORMATION, at=at(5)
    )
    case.record_appointment_held(act(COACHING, 5), appointment_id=meeting)
    case.agree_plan(act(COACHING, 10), goals=["Praktikum"], modules=["Bewerbung"])
    case.extend_assignment(act(JOBCENTER, 330), months=3, reason="Praktikum läuft")
    # the participant moves away: the provider reports the coaching's end
    case.complete_handover(act(COACHING, 399), handover_id=assignment)

    case.close(act(JOBCENTER, 400), outcome=Outcome.MOVED_AWAY)

    assert case.appointments[meeting.hex] is AppointmentState.HELD
    assert case.outcome is Outcome.MOVED_AWAY
    assert case.assignment_ends_at == datetime(2027, 6, 3, 9, tzinfo=UTC)
    assert_replays_equal(case)


# ---- coach, appointments, plan, measures, notes -------------------------------------------------


@pytest.mark.parametrize("agency", [JOBCENTER, COACHING], ids=["lead", "accepted-provider"])
def test_coach_is_assigned_by_lead_or_accepted_provider(agency: str) -> None:
    case, _ = active_case()

    case.assign_coach(act(agency, 3), coach="coach-7")

    assert (case.coach, case.coach_agency) == ("coach-7", agency)


def test_provider_cannot_assign_a_coach_before_accepting() -> None:
    case = open_case()
    offer(case, receiver=COACHING)

    with raises_domain(NotLeadAgency, "not_lead_agency"):
        case.assign_coach(act(COACHING, 1), coach="coach-7")

    assert case.coach is None


def test_appointment_is_scheduled_and_then_held_or_missed_once() -> None:
    case, _ = active_case()
    held, missed = uuid4(), uuid4()
    for appointment_id in (held, missed):
        case.schedule_appointment(
            act(COACHING, 3), appointment_id=appointment_id, kind="coaching", at=at(7)
        )

    case.record_appointment_held(act(COACHING, 7), appointment_id=held)
    case.record_appointment_missed(act(COACHING, 7), appointment_id=missed)

    assert case.appointments[held.hex] is AppointmentState.HELD
    assert case.appointments[missed.hex] is AppointmentState.MISSED
    assert case.appointments_scheduled_at == {}  # only a scheduled one's is kept
    # The case keeps only the state; the kind is the event's (the views read it there).
    scheduled = [e for e in case.pending_events if isinstance(e, Case.AppointmentScheduled)]
    assert [e.kind for e in scheduled] == [AppointmentKind.COACHING.value] * 2
    for record in (case.record_appointment_held, case.record_appointment_missed):
        for appointment_id in (held, missed):
            with raises_domain(InvalidTransition, "invalid_transition"):
                record(act(COACHING, 8), appointment_id=appointment_id)
    assert_replays_equal(case)


def test_reusing_an_appointment_id_is_refused() -> None:
    case, _ = active_case()
    appointment_id = uuid4()
    case.schedule_appointment(
        act(COACHING, 3), appointment_id=appointment_id, kind="information", at=at(7)
    )

    with raises_domain(AppointmentExists, "appointment_exists"):
        case.schedule_appointment(
            act(COACHING, 3), appointment_id=appointment_id, kind="coaching", at=at(9)
        )

    scheduled = [e for e in case.pending_events if isinstance(e, Case.AppointmentScheduled)]
    assert [(e.appointment_id, e.at) for e in scheduled] == [(appointment_id, at(7))]
    assert case.appointments_scheduled_at == {appointment_id.hex: at(3)}


@pytest.mark.parametrize("outcome", ["held", "missed"])
def test_unknown_appointment_is_refused(outcome: str) -> None:
    case, _ = active_case()
    record = getattr(case, f"record_appointment_{outcome}")

    with raises_domain(AppointmentUnknown, "appointment_unknown"):
        record(act(COACHING, 3), appointment_id=uuid4())


def test_plan_is_agreed_once_then_updated() -> None:
    case, _ = active_case()

    with raises_domain(PlanMissing, "plan_missing"):
        case.update_plan(act(COACHING, 3), goals=["x"], modules=[])

    case.agree_plan(act(COACHING, 4), goals=["Praktikum"], modules=["Bewerbung"])
    with raises_domain(AlreadyDone, "already_recorded"):
        case.agree_plan(act(COACHING, 5), goals=["other"], modules=[])
    case.update_plan(act(COACHING, 6), goals=["Ausbildung"], modules=["Bewerbung", "Praxis"])

    assert case.plan_goals == ("Ausbildung",)
    assert case.plan_modules == ("Bewerbung", "Praxis")
    assert_replays_equal(case)


def test_measure_starts_and_ends_once() -> None:
    case, _ = active_case()
    measure_id = uuid4()
    case.start_measure(act(COACHING, 3), measure_id=measure_id, kind="internship", title="P")

    case.end_measure(act(COACHING, 30), measure_id=measure_id, result="completed")

    measure = case.measures[measure_id]
    assert (measure.started_at, measure.ended_at, measure.result) == (at(3), at(30), "completed")
    with raises_domain(InvalidTransition, "invalid_transition"):
        case.end_measure(act(COACHING, 31), measure_id=measure_id)
    assert_replays_equal(case)


def test_reusing_a_measure_id_is_refused() -> None:
    case, _ = active_case()
    measure_id = uuid4()
    case.start_measure(act(COACHING, 3), measure_id=measure_id, kind="internship", title="P")

    with raises_domain(MeasureExists, "measure_exists"):
        case.start_measure(act(COACHING, 4), measure_id=measure_id, kind="module", title="Q")

    assert case.measures[measure_id].title == "P"


def test_unknown_measure_is_refused() -> None:
    case, _ = active_case()

    with raises_domain(MeasureUnknown, "measure_unknown"):
        case.end_measure(act(COACHING, 3), measure_id=uuid4())


# ---- erasure ----------------------------------------------------------------------------------


def _case_with_notes() -> Case:
    case = open_case(participant={"pseudonym": "P-0001", "name": "Erika", "dob": "1990-01-01"})
    offer(case, receiver=COACHING)
    case.add_note(act(JOBCENTER, 1), text="Erika called", category=DataCategory.NOTES)
    case.add_note(act(COACHING, 2), text="diagnosis ...", category=DataCategory.HEALTH)
    return case


def test_erasure_keeps_only_the_pseudonym_and_the_case_holds_no_notes() -> None:
    case = _case_with_notes()

    case.erase_participant(
        act(JOBCENTER, 10), reason="retention ended", ground="Art. 17 (1) b DSGVO"
    )

    assert case.participant == {"pseudonym": "P-0001", "erased": True}
    # Notes are not part of the case (no rule reads them), so there is nothing to
    # blank here; their texts are the events', whose keys erasure destroys (services).
    assert "notes" not in vars(case)
    assert case.erased_at == at(10)
    rebuilt = assert_replays_equal(case)
    assert rebuilt.participant["erased"] is True


def test_erasure_happens_once() -> None:
    case = _case_with_notes()
    case.erase_participant(
        act(JOBCENTER, 10), reason="retention ended", ground="Art. 17 (1) b DSGVO"
    )

    with raises_domain(AlreadyDone, "already_recorded"):
        case.erase_participant(act(JOBCENTER, 11), reason="again", ground="Art. 17 (1) b DSGVO")

    assert case.erased_at == at(10)


def test_erasure_dated_before_the_case_opened_is_refused() -> None:
    """Found by the snapshot state machine: an erasure backdated before the opening."""
    case = _case_with_notes()
    with raises_domain(OccurredTooEarly, "occurred_too_early"):
        case.erase_participant(act(JOBCENTER, -1), reason="backdated", ground="Art. 17 (1) b DSGVO")
    assert case.erased_at is None


def test_erasure_by_a_non_lead_agency_is_refused_unless_as_auditor() -> None:
    case = _case_with_notes()

    with raises_domain(NotLeadAgency, "not_lead_agency"):
        case.erase_participant(act(COACHING, 10), reason="x", ground="Art. 17 (1) b DSGVO")
    assert case.erased_at is None

    case.erase_participant(
        act(COACHING, 10), reason="audit order", as_auditor=True, ground="Art. 17 (1) b DSGVO"
    )
    assert case.participant["erased"] is True


# ---- every command, against a closed case and from an outsider ----------------------------------


@dataclass
class Ids:
    assignment: UUID
    offered: UUID
    consent: str
    appointment: UUID
    measure: UUID


def _rich_case() -> tuple[Case, Ids]:
    """Active case holding one of everything a command can refer to. The offered
    handover is a rehabilitation application: under the default roles it is the
    kind its receiver may forward (to a rehabilitation agency)."""
    case, assignment = active_case()
    ids = Ids(
        assignment=assignment,
        offered=offer(
            case, receiver=EMPLOYMENT_AGENCY, kind=HandoverKind.REHAB_APPLICATION, days=3
        ),
        consent=grant(case, days=3),
        appointment=uuid4(),
        measure=uuid4(),
    )
    case.schedule_appointment(
        act(COACHING, 3), appointment_id=ids.appointment, kind="coaching", at=at(9)
    )
    case.start_measure(act(COACHING, 3), measure_id=ids.measure, kind="internship", title="P")
    case.agree_plan(act(COACHING, 3), goals=["g"], modules=[])
    return case, ids


def _close_rich(case: Case, ids: Ids, days: float, outcome: Outcome) -> None:
    """Rule 7: the pending rehabilitation application is withdrawn by its sender
    (a pending § 14 decision blocks closure), the closure withdraws the rest."""
    case.withdraw_handover(act(JOBCENTER, days), handover_id=ids.offered, reason="closing")
    case.close(act(JOBCENTER, days), outcome=outcome, withdraw_open=True)


# command name -> (rightful agency, call(case, ids, act))
CommandCall = Callable[[Case, Ids, Act], None]
ALL_COMMANDS: dict[str, tuple[str, CommandCall]] = {
    "grant_consent": (JOBCENTER, lambda c, i, a: c.grant_consent(
        a, consent_id="c-new", categories=["contact"], source_agency=JOBCENTER,
        recipients=[COACHING], valid_from=T0)),
    "revoke_consent": (JOBCENTER, lambda c, i, a: c.revoke_consent(a, consent_id=i.consent)),
    "offer_handover": (JOBCENTER, lambda c, i, a: c.offer_handover(
        a, POLICY, handover_id=uuid4(), kind="placement_support",
        to_agency=INTEGRATION_OFFICE)),
    "accept_handover": (EMPLOYMENT_AGENCY, lambda c, i, a: c.accept_handover(
        a, POLICY, handover_id=i.offered)),
    "decline_handover": (EMPLOYMENT_AGENCY, lambda c, i, a: c.decline_handover(
        a, handover_id=i.offered, reason="x")),
    "forward_handover": (EMPLOYMENT_AGENCY, lambda c, i, a: c.forward_handover(
        a, POLICY, handover_id=i.offered, new_handover_id=uuid4(),
        to_agency=DRV, reason="x")),
    "withdraw_handover": (JOBCENTER, lambda c, i, a: c.withdraw_handover(
        a, handover_id=i.offered, reason="x")),
    "complete_handover": (COACHING, lambda c, i, a: c.complete_handover(
        a, handover_id=i.assignment)),
    "assign_coach": (JOBCENTER, lambda c, i, a: c.assign_coach(a, coach="coach-9")),
    "schedule_appointment": (COACHING, lambda c, i, a: c.schedule_appointment(
        a, appointment_id=uuid4(), kind="coaching", at=at(20))),
    "record_appointment_held": (COACHING, lambda c, i, a: c.record_appointment_held(
        a, appointment_id=i.appointment)),
    "record_appointment_missed": (COACHING, lambda c, i, a: c.record_appointment_missed(
        a, appointment_id=i.appointment)),
    "sign_agreement": (COACHING, lambda c, i, a: c.sign_agreement(a)),
    "agree_plan": (COACHING, lambda c, i, a: c.agree_plan(a, goals=["g"], modules=[])),
    "update_plan": (COACHING, lambda c, i, a: c.update_plan(a, goals=["h"], modules=[])),
    "start_measure": (COACHING, lambda c, i, a: c.start_measure(
        a, measure_id=uuid4(), kind="module", title="Q")),
    "end_measure": (COACHING, lambda c, i, a: c.end_measure(a, measure_id=i.measure)),
    "extend_assignment": (JOBCENTER, lambda c, i, a: c.extend_assignment(
        a, months=3, reason="x")),
    "start_employment": (COACHING, lambda c, i, a: c.start_employment(
        a, employer="E", kind="employment", start_date="2026-05-01")),
    "start_aftercare": (COACHING, lambda c, i, a: c.start_aftercare(a)),
    "end_aftercare": (COACHING, lambda c, i, a: c.end_aftercare(a)),
    "add_note": (COACHING, lambda c, i, a: c.add_note(a, text="t", category="notes")),
    "close": (JOBCENTER, lambda c, i, a: c.close(a, outcome="other", withdraw_open=True)),
}  # fmt: skip


@pytest.mark.parametrize("name", list(ALL_COMMANDS))
def test_closed_case_refuses_every_command(name: str) -> None:
    case, ids = _rich_case()
    _close_rich(case, ids, 50, Outcome.DROPPED_OUT)
    case.collect_events()
    agency, call = ALL_COMMANDS[name]

    with raises_domain(CaseClosed, "case_closed"):
        call(case, ids, act(agency, 51))

    assert case.collect_events() == []
    assert case.stage is Stage.CLOSED


def test_closed_case_still_accepts_erasure_once() -> None:
    case, ids = _rich_case()
    case.add_note(act(COACHING, 4), text="private", category=DataCategory.NOTES)
    _close_rich(case, ids, 50, Outcome.EMPLOYED)

    case.erase_participant(act(JOBCENTER, 50 + 366), reason="retention ended")

    assert case.participant == {"pseudonym": "P-0001", "erased": True}
    assert case.stage is Stage.CLOSED
    with raises_domain(AlreadyDone, "already_recorded"):
        case.erase_participant(act(JOBCENTER, 50 + 367), reason="again")
    assert_replays_equal(case)


OUTSIDER_ERRORS: dict[str, tuple[type[DomainError], str]] = {
    "accept_handover": (NotReceiver, "not_receiver"),
    "decline_handover": (NotReceiver, "not_receiver"),
    "forward_handover": (NotReceiver, "not_receiver"),
    "complete_handover": (NotReceiver, "not_receiver"),
    "withdraw_handover": (NotSender, "not_sender"),
    "extend_assignment": (NotLeadAgency, "not_lead_agency"),
    "close": (NotLeadAgency, "not_lead_agency"),
}


@pytest.mark.parametrize("name", list(ALL_COMMANDS))
def test_agency_not_involved_in_the_case_is_refused(name: str) -> None:
    case, ids = _rich_case()
    case.collect_events()
    _, call = ALL_COMMANDS[name]
    error, code = OUTSIDER_ERRORS.get(name, (NotInvolved, "not_involved"))

    with raises_domain(error, code):
        call(case, ids, act(OUTSIDER, 10))

    assert case.collect_events() == []
    assert OUTSIDER not in case.involved_agencies


def test_outsider_cannot_erase() -> None:
    case, _ = _rich_case()

    with raises_domain(NotLeadAgency, "not_lead_agency"):
        case.erase_participant(act(OUTSIDER, 10), reason="x", ground="Art. 17 (1) b DSGVO")


def test_every_command_runs_for_its_rightful_agency_on_an_open_case() -> None:
    """Sanity check for the tables above: each call is valid in some open case, so the
    refusals really come from closure or from the outsider."""
    for name, (agency, call) in ALL_COMMANDS.items():
        case, ids = _rich_case()
        if name == "end_aftercare":
            ALL_COMMANDS["start_employment"][1](case, ids, act(COACHING, 4))
            ALL_COMMANDS["start_aftercare"][1](case, ids, act(COACHING, 4))
        if name == "start_aftercare":
            ALL_COMMANDS["start_employment"][1](case, ids, act(COACHING, 4))
        if name == "sign_agreement":
            case = open_case()
            ids.assignment = offer(case)
        if name == "agree_plan":
            case, ids.assignment = active_case()
        if name == "close":  # a pending § 14 decision blocks the closure (rule 7)
            case.withdraw_handover(act(JOBCENTER, 4), handover_id=ids.offered, reason="x")
        call(case, ids, act(agency, 5))
