"""Issue 11, "authority and time": who may record what, and when (DOMAIN rules 2-7).

Each test reproduces a way the case could be bent before the issue: consents
recorded in another agency's name, handovers between kinds that have no such role,
the lead moved by a side door, backdated acts, § 14 SGB IX ping-pong, closures that
leave handovers open. Roles are tested under DOMAIN.md's defaults (``POLICY``),
never under ``ANY_ROLES``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest

from domain.case import Act, Case
from domain.errors import (
    CaseClosed,
    ConsentMissing,
    DecisionPending,
    DecisionRequired,
    DomainError,
    ForwardPeriodOver,
    InvalidRecipient,
    InvalidTransition,
    InvalidValue,
    KindNotAllowed,
    NotConsentSource,
    NotInvolved,
    NotLeadAgency,
    NotReceiver,
    OccurredInFuture,
    OccurredTooEarly,
    OpenHandovers,
    RehabApplicationOpen,
)
from domain.values import (
    AgencyKind,
    DataCategory,
    HandoverKind,
    HandoverState,
    Outcome,
    RehabOutcome,
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
    POLICY,
    PROGRAMME,
    act,
    assert_replays_equal,
    at,
    forward,
    grant,
    offer,
    open_case,
    raises_domain,
)

HEALTH, CONTACT = DataCategory.HEALTH, DataCategory.CONTACT
ASSIGNMENT = HandoverKind.ASSIGNMENT
DISCHARGE = HandoverKind.DISCHARGE
REHAB = HandoverKind.REHAB_APPLICATION
PLACEMENT = HandoverKind.PLACEMENT_SUPPORT
RETURN = HandoverKind.RETURN


def unchanged(case: Case) -> Callable[[], None]:
    """Snapshot the version; the returned check asserts nothing was recorded."""
    case.collect_events()
    version = case.version

    def check() -> None:
        assert case.version == version
        assert case.collect_events() == []

    return check


def kopra_case() -> Case:
    """KoPrA: the clinic opens the case and discharges the patient to the coordination
    point (a coaching provider), which accepts. The clinic stays lead."""
    case = open_case(CLINIC)
    discharge = offer(case, sender=CLINIC, receiver=COACHING, kind=DISCHARGE, days=1)
    case.accept_handover(act(COACHING, 2), POLICY, handover_id=discharge)
    return case


def gal_case() -> tuple[Case, str]:
    """G-A-L: the clinic opens, records the patient's consent (health, contact to the
    Jobcenter), discharges to the Jobcenter, which accepts and becomes lead, and
    assigns a coach. Returns the case and the clinic's consent id."""
    case = open_case(CLINIC)
    consent = grant(case, source=CLINIC, categories=[HEALTH, CONTACT], recipients=[JOBCENTER])
    discharge = offer(
        case, sender=CLINIC, receiver=JOBCENTER, kind=DISCHARGE, categories=[HEALTH], days=1
    )
    case.accept_handover(act(JOBCENTER, 2), POLICY, handover_id=discharge)
    assignment = offer(case, sender=JOBCENTER, receiver=COACHING, days=3)
    case.accept_handover(act(COACHING, 4), POLICY, handover_id=assignment)
    assert case.lead_agency == JOBCENTER
    return case, consent


def rehab_case(receiver: str = EMPLOYMENT_AGENCY, days: float = 0) -> tuple[Case, UUID]:
    case = open_case(JOBCENTER)
    return case, offer(case, sender=JOBCENTER, receiver=receiver, kind=REHAB, days=days)


def decide(case: Case, handover_id: UUID, agency: str, days: float) -> None:
    case.decide_rehab(
        act(agency, days), POLICY, handover_id=handover_id, outcome=RehabOutcome.GRANTED
    )


# ---- consent: recorded by its source, revoked through the source or the lead ------------


def test_coordination_point_cannot_record_a_consent_naming_the_clinic_as_source() -> None:
    """Reproduction: the coach grants itself the clinic's health data."""
    case = kopra_case()
    check = unchanged(case)

    with raises_domain(NotConsentSource, "not_consent_source"):
        case.grant_consent(
            act(COACHING, 3),
            consent_id="forged",
            categories=[HEALTH],
            source_agency=CLINIC,
            recipients=[COACHING],
            valid_from=at(0),
        )

    assert case.consents == {}
    check()


def test_lead_cannot_record_a_consent_in_the_name_of_another_source() -> None:
    case, _ = gal_case()
    check = unchanged(case)

    with raises_domain(NotConsentSource, "not_consent_source"):
        grant(case, by=JOBCENTER, source=CLINIC, recipients=[COACHING], days=5)

    check()


def test_the_source_records_its_consent_with_purpose_and_signed_form() -> None:
    case = kopra_case()

    case.grant_consent(
        act(CLINIC, 3),
        consent_id="c-1",
        categories=[HEALTH],
        source_agency=CLINIC,
        recipients=[COACHING],
        valid_from=at(0),
        purpose="Entlassmanagement",
        document_ref="scan-4711",
    )

    consent = case.consents["c-1"]
    assert consent.granted_by == consent.source_agency == CLINIC
    assert (consent.purpose, consent.document_ref) == ("Entlassmanagement", "scan-4711")
    events = case.collect_events()
    assert (events[-1].purpose, events[-1].document_ref) == ("Entlassmanagement", "scan-4711")
    assert_replays_equal(case, events)


def test_coach_cannot_revoke_the_clinics_consent_to_the_lead() -> None:
    """Reproduction: a coach revokes a consent it neither holds nor leads."""
    case, consent = gal_case()
    check = unchanged(case)

    with raises_domain(NotConsentSource, "not_consent_source"):
        case.revoke_consent(act(COACHING, 5), consent_id=consent)

    assert case.consents[consent].revoked_at is None
    check()


@pytest.mark.parametrize(
    ("agency", "allowed"),
    [(CLINIC, True), (JOBCENTER, True), (COACHING, False)],
    ids=["source", "lead", "coach"],
)
def test_consent_is_revoked_only_through_its_source_or_the_lead(agency: str, allowed: bool) -> None:
    case, consent = gal_case()

    if allowed:
        case.revoke_consent(act(agency, 5), consent_id=consent)
        assert case.consents[consent].revoked_at == at(5)
    else:
        with raises_domain(NotConsentSource, "not_consent_source"):
            case.revoke_consent(act(agency, 5), consent_id=consent)
        assert case.consents[consent].revoked_at is None


# ---- roles follow kinds (rule 6) --------------------------------------------------------


@pytest.mark.parametrize("agency", [COACHING, DRV, CHAMBER, INTEGRATION_OFFICE, "unregistered"])
def test_only_a_jobcenter_employment_agency_or_clinic_opens_a_case(agency: str) -> None:
    with raises_domain(KindNotAllowed, "kind_not_allowed") as info:
        Case.open(
            uuid4(),
            Act(agency, "u", at(0), recorded_at=at(0), kinds=KINDS),
            POLICY,
            programme=PROGRAMME,
            participant={"pseudonym": "P-1"},
        )

    assert info.value.details["allowed"] == [
        "employment_agency",
        "jobcenter",
        "psychiatric_clinic",
    ]


@pytest.mark.parametrize("agency", [JOBCENTER, EMPLOYMENT_AGENCY, CLINIC])
def test_a_case_opened_by_a_lead_kind_or_clinic_has_it_as_lead(agency: str) -> None:
    assert open_case(agency).lead_agency == agency


K = AgencyKind
_LEADS = {K.JOBCENTER, K.EMPLOYMENT_AGENCY}
# DOMAIN.md's table "Kinds of handover" (typical from → to), with the programmes'
# additions the defaults make: the coordination point receives discharges (KoPrA);
# the employment agency sends and receives rehabilitation applications; the Jobcenter
# asks the chamber itself (G-A-L). (senders, receivers)
EXPECTED_ROLES: dict[HandoverKind, tuple[set[AgencyKind], set[AgencyKind]]] = {
    ASSIGNMENT: (_LEADS, {K.COACHING_PROVIDER}),
    DISCHARGE: ({K.PSYCHIATRIC_CLINIC}, _LEADS | {K.COACHING_PROVIDER}),
    REHAB: (_LEADS | {K.PSYCHIATRIC_CLINIC}, {K.REHABILITATION_AGENCY, K.EMPLOYMENT_AGENCY}),
    PLACEMENT: (_LEADS | {K.COACHING_PROVIDER}, {K.CHAMBER, K.INTEGRATION_OFFICE}),
    RETURN: (set(AgencyKind), set(AgencyKind)),  # to the current lead, of whatever kind
}
EVERYONE = [JOBCENTER, EMPLOYMENT_AGENCY, CLINIC, DRV, COACHING, CHAMBER, INTEGRATION_OFFICE]
ROLE_CASES = [
    (kind, sender, receiver)
    for kind in HandoverKind
    for sender in EVERYONE
    for receiver in EVERYONE
    if sender != receiver
]


def crowded_case() -> Case:
    """Every registered agency takes part, each by a rightful path: the clinic opened
    the case and discharged to the Jobcenter (now lead), which assigned the coach,
    asked chamber and integration office for placement support, and sent
    rehabilitation applications that the employment agency and the DRV decided."""
    case = open_case(CLINIC)
    discharge = offer(case, sender=CLINIC, receiver=JOBCENTER, kind=DISCHARGE)
    case.accept_handover(act(JOBCENTER, 1), POLICY, handover_id=discharge)
    offer(case, sender=JOBCENTER, receiver=COACHING, days=1)
    offer(case, sender=JOBCENTER, receiver=CHAMBER, kind=PLACEMENT, days=1)
    offer(case, sender=JOBCENTER, receiver=INTEGRATION_OFFICE, kind=PLACEMENT, days=1)
    for rehab_agency in (EMPLOYMENT_AGENCY, DRV):
        application = offer(case, sender=JOBCENTER, receiver=rehab_agency, kind=REHAB, days=1)
        decide(case, application, rehab_agency, 2)
    assert case.lead_agency == JOBCENTER
    assert set(EVERYONE) <= case.involved_agencies
    return case


@pytest.mark.parametrize(
    ("kind", "sender", "receiver"),
    ROLE_CASES,
    ids=[f"{k.value}-{s}-to-{r}" for k, s, r in ROLE_CASES],
)
def test_handovers_go_only_between_the_kinds_policy_names(
    kind: HandoverKind, sender: str, receiver: str
) -> None:
    case = crowded_case()
    check = unchanged(case)
    senders, receivers = EXPECTED_ROLES[kind]
    expected: tuple[type[DomainError], str] | None = None
    if KINDS[sender] not in senders or KINDS[receiver] not in receivers:
        expected = (KindNotAllowed, "kind_not_allowed")
    elif kind is RETURN and receiver != case.lead_agency:
        expected = (InvalidRecipient, "invalid_recipient")

    if expected is None:
        handover_id = offer(case, sender=sender, receiver=receiver, kind=kind, days=3)
        assert case.handover(handover_id).state is HandoverState.OFFERED
    else:
        with raises_domain(*expected):
            offer(case, sender=sender, receiver=receiver, kind=kind, days=3)
        check()


def test_lead_hijack_chamber_cannot_offer_a_discharge_to_a_coach() -> None:
    """Reproduction: the chamber "discharges" to a coach, who accepts and would lead."""
    case = open_case(JOBCENTER)
    placement = offer(case, sender=JOBCENTER, receiver=CHAMBER, kind=PLACEMENT)
    case.accept_handover(act(CHAMBER, 1), POLICY, handover_id=placement)
    offer(case, sender=JOBCENTER, receiver=COACHING, days=1)
    check = unchanged(case)

    with raises_domain(KindNotAllowed, "kind_not_allowed") as info:
        offer(case, sender=CHAMBER, receiver=COACHING, kind=DISCHARGE, days=2)

    assert info.value.details == {"sender_kind": "chamber"}
    assert case.lead_agency == JOBCENTER
    check()


def _discharge_from_the_lead_clinic_to_the_jobcenter() -> tuple[Case, UUID, str]:
    case = open_case(CLINIC)
    return case, offer(case, sender=CLINIC, receiver=JOBCENTER, kind=DISCHARGE, days=1), JOBCENTER


def _discharge_from_the_lead_clinic_to_the_coordination_point() -> tuple[Case, UUID, str]:
    case = open_case(CLINIC)
    return case, offer(case, sender=CLINIC, receiver=COACHING, kind=DISCHARGE, days=1), CLINIC


def _discharge_from_a_clinic_that_no_longer_leads() -> tuple[Case, UUID, str]:
    case, _ = gal_case()  # the Jobcenter leads now
    second = offer(case, sender=CLINIC, receiver=EMPLOYMENT_AGENCY, kind=DISCHARGE, days=5)
    return case, second, JOBCENTER


DISCHARGES: dict[str, Callable[[], tuple[Case, UUID, str]]] = {
    "from-lead-to-jobcenter-moves": _discharge_from_the_lead_clinic_to_the_jobcenter,
    "to-coaching-kind-does-not-move": _discharge_from_the_lead_clinic_to_the_coordination_point,
    "from-non-lead-does-not-move": _discharge_from_a_clinic_that_no_longer_leads,
}


@pytest.mark.parametrize("setup", list(DISCHARGES.values()), ids=list(DISCHARGES))
def test_accepted_discharge_moves_the_lead_only_from_the_lead_to_a_lead_kind(
    setup: Callable[[], tuple[Case, UUID, str]],
) -> None:
    case, discharge, lead_after = setup()
    receiver = case.handover(discharge).to_agency

    case.accept_handover(act(receiver, 6), POLICY, handover_id=discharge)

    assert case.lead_agency == lead_after
    events = case.collect_events()
    assert events[-1].moves_lead is (KINDS[receiver] in _LEADS)
    rebuilt = assert_replays_equal(case, events)
    assert rebuilt.lead_agency == lead_after


@pytest.mark.parametrize("kind", [ASSIGNMENT, REHAB, PLACEMENT, RETURN])
def test_accepting_a_handover_that_policy_does_not_make_lead_moving_keeps_the_lead(
    kind: HandoverKind,
) -> None:
    case = open_case(JOBCENTER)
    assignment = offer(case, sender=JOBCENTER, receiver=COACHING)
    receiver = {ASSIGNMENT: COACHING, REHAB: EMPLOYMENT_AGENCY, PLACEMENT: CHAMBER}.get(kind)
    if kind is ASSIGNMENT:
        handover_id = assignment
    elif kind is RETURN:
        case.accept_handover(act(COACHING, 1), POLICY, handover_id=assignment)
        handover_id, receiver = offer(case, sender=COACHING, receiver=JOBCENTER, kind=RETURN), None
    else:
        handover_id = offer(case, sender=JOBCENTER, receiver=str(receiver), kind=kind)

    case.accept_handover(act(receiver or JOBCENTER, 2), POLICY, handover_id=handover_id)

    assert case.lead_agency == JOBCENTER
    assert case.collect_events()[-1].moves_lead is False


def _transfer(case: Case, by: str, to: str, days: float = 5) -> None:
    case.transfer_lead(act(by, days), POLICY, to_agency=to, reason="SGB III client")


def test_lead_transfers_the_case_to_an_involved_agency_of_a_lead_kind() -> None:
    case, _ = rehab_case(EMPLOYMENT_AGENCY)  # the employment agency takes part

    _transfer(case, JOBCENTER, EMPLOYMENT_AGENCY)

    assert case.lead_agency == EMPLOYMENT_AGENCY
    events = case.collect_events()
    assert type(events[-1]).__name__ == "LeadTransferred"
    assert (events[-1].to_agency, events[-1].reason) == (EMPLOYMENT_AGENCY, "SGB III client")
    assert_replays_equal(case, events)
    with raises_domain(NotLeadAgency, "not_lead_agency"):
        case.close(act(JOBCENTER, 6), outcome=Outcome.OTHER, withdraw_open=True)


def _coach_takes_part(case: Case) -> None:
    offer(case, sender=JOBCENTER, receiver=COACHING)


TRANSFER_REFUSALS: dict[str, tuple[str, str, type[DomainError], str]] = {
    "not-by-the-lead": (EMPLOYMENT_AGENCY, EMPLOYMENT_AGENCY, NotLeadAgency, "not_lead_agency"),
    "not-by-a-coach": (COACHING, EMPLOYMENT_AGENCY, NotLeadAgency, "not_lead_agency"),
    "not-to-a-coaching-kind": (JOBCENTER, COACHING, KindNotAllowed, "kind_not_allowed"),
    "not-to-an-uninvolved-agency": (JOBCENTER, "jc-koeln", NotInvolved, "not_involved"),
    "not-to-itself": (JOBCENTER, JOBCENTER, InvalidRecipient, "invalid_recipient"),
}


@pytest.mark.parametrize("refusal", list(TRANSFER_REFUSALS.values()), ids=list(TRANSFER_REFUSALS))
def test_lead_transfer_is_refused_otherwise(
    refusal: tuple[str, str, type[DomainError], str],
) -> None:
    by, to, error, code = refusal
    case, _ = rehab_case(EMPLOYMENT_AGENCY)
    _coach_takes_part(case)
    check = unchanged(case)

    with raises_domain(error, code):
        _transfer(case, by, to)

    assert case.lead_agency == JOBCENTER
    check()


def test_a_return_goes_only_to_the_current_lead() -> None:
    case, _ = rehab_case(EMPLOYMENT_AGENCY)  # a lead kind that takes part, not the lead
    assignment = offer(case, sender=JOBCENTER, receiver=COACHING)
    case.accept_handover(act(COACHING, 1), POLICY, handover_id=assignment)
    check = unchanged(case)

    with raises_domain(InvalidRecipient, "invalid_recipient"):
        offer(case, sender=COACHING, receiver=EMPLOYMENT_AGENCY, kind=RETURN, days=2)

    check()
    returned = offer(case, sender=COACHING, receiver=JOBCENTER, kind=RETURN, days=2)
    assert case.handover(returned).to_agency == JOBCENTER


# ---- time: the hub's clock decides (rule 4) ----------------------------------------------


def test_occurred_at_beyond_the_hubs_clock_and_its_skew_is_refused() -> None:
    with raises_domain(OccurredInFuture, "occurred_in_future") as info:
        Act(JOBCENTER, "cm", at(0) + timedelta(minutes=6), recorded_at=at(0), kinds=KINDS)

    assert info.value.details == {"allowed_skew_seconds": 300}
    within = Act(JOBCENTER, "cm", at(0) + timedelta(minutes=5), recorded_at=at(0), kinds=KINDS)
    assert within.occurred_at > within.recorded_at


FAR = datetime(9999, 12, 30, tzinfo=UTC)
EARLY = datetime(1899, 12, 31, tzinfo=UTC)


def _offer_dated(moment: datetime) -> Callable[[Case], None]:
    def run(case: Case) -> None:
        case.offer_handover(
            Act(JOBCENTER, "cm", moment, recorded_at=at(1), kinds=KINDS),
            POLICY,
            handover_id=uuid4(),
            kind=ASSIGNMENT,
            to_agency=COACHING,
        )

    return run


OUT_OF_RANGE: dict[str, Callable[[Case], None]] = {
    "occurred-at-9999": _offer_dated(FAR),
    "occurred-at-1899": _offer_dated(EARLY),
    "due-at-9999": lambda case: offer(case, due_at=FAR, days=1),
    "consent-until-9999": lambda case: grant(case, valid_until=FAR, days=1),
    "appointment-at-9999": lambda case: case.schedule_appointment(
        act(JOBCENTER, 1), appointment_id=uuid4(), kind="coaching", at=FAR
    ),
}


@pytest.mark.parametrize("command", list(OUT_OF_RANGE.values()), ids=list(OUT_OF_RANGE))
def test_dates_outside_1900_to_2200_are_invalid_values_not_overflows(
    command: Callable[[Case], None],
) -> None:
    case = open_case(JOBCENTER)
    check = unchanged(case)

    with raises_domain(InvalidValue, "invalid_value"):
        command(case)

    check()


BEFORE_OPENING: dict[str, Callable[[Case, Act], None]] = {
    "offer": lambda c, a: c.offer_handover(
        a, POLICY, handover_id=uuid4(), kind=ASSIGNMENT, to_agency=COACHING
    ),
    "grant-consent": lambda c, a: c.grant_consent(
        a,
        consent_id="c",
        categories=[HEALTH],
        source_agency=JOBCENTER,
        recipients=[COACHING],
        valid_from=at(0),
    ),
    "note": lambda c, a: c.add_note(a, text="t", category="notes"),
    "measure": lambda c, a: c.start_measure(a, measure_id=uuid4(), kind="module", title="M"),
    "appointment": lambda c, a: c.schedule_appointment(
        a, appointment_id=uuid4(), kind="coaching", at=at(12)
    ),
    "agreement": lambda c, a: c.sign_agreement(a),
    "extension": lambda c, a: c.extend_assignment(a, months=1, reason="r"),
    "close": lambda c, a: c.close(a, outcome=Outcome.OTHER),
}


@pytest.mark.parametrize("command", list(BEFORE_OPENING.values()), ids=list(BEFORE_OPENING))
def test_command_dated_before_the_case_opened_is_refused(
    command: Callable[[Case, Act], None],
) -> None:
    case = open_case(JOBCENTER, days=10)
    check = unchanged(case)

    with raises_domain(OccurredTooEarly, "occurred_too_early"):
        command(case, act(JOBCENTER, 9, recorded_days=11))

    check()


ANSWERS: dict[str, Callable[[Case, UUID, float], None]] = {
    "accept": lambda c, h, d: c.accept_handover(act(EMPLOYMENT_AGENCY, d), POLICY, handover_id=h),
    "decline": lambda c, h, d: c.decline_handover(
        act(EMPLOYMENT_AGENCY, d), handover_id=h, reason="r"
    ),
    "forward": lambda c, h, d: forward(c, h, by=EMPLOYMENT_AGENCY, to=DRV, days=d),
    "withdraw": lambda c, h, d: c.withdraw_handover(act(JOBCENTER, d), handover_id=h, reason="r"),
    "decide": lambda c, h, d: decide(c, h, EMPLOYMENT_AGENCY, d),
}


@pytest.mark.parametrize("answer", list(ANSWERS.values()), ids=list(ANSWERS))
def test_answer_dated_before_the_offer_is_refused(
    answer: Callable[[Case, UUID, float], None],
) -> None:
    """Reproduction: an acceptance dated before the offer it accepts."""
    case, handover_id = rehab_case(EMPLOYMENT_AGENCY, days=5)
    check = unchanged(case)

    with raises_domain(OccurredTooEarly, "occurred_too_early"):
        answer(case, handover_id, 4)

    assert case.handover(handover_id).state is HandoverState.OFFERED
    check()
    answer(case, handover_id, 5)  # the same answer at the offer's moment is fine


def test_completion_dated_before_the_acceptance_is_refused() -> None:
    case = open_case(JOBCENTER)
    assignment = offer(case, days=5)
    case.accept_handover(act(COACHING, 8), POLICY, handover_id=assignment)
    check = unchanged(case)

    with raises_domain(OccurredTooEarly, "occurred_too_early"):
        case.complete_handover(act(COACHING, 7), handover_id=assignment)

    assert case.handover(assignment).state is HandoverState.ACCEPTED
    check()


def test_measure_cannot_end_before_it_started() -> None:
    case = open_case(JOBCENTER)
    measure = uuid4()
    case.start_measure(act(JOBCENTER, 5), measure_id=measure, kind="internship", title="P")
    check = unchanged(case)

    with raises_domain(OccurredTooEarly, "occurred_too_early"):
        case.end_measure(act(JOBCENTER, 4), measure_id=measure)

    assert case.measures[measure].ended_at is None
    check()


@pytest.mark.parametrize("outcome", ["held", "missed"])
def test_appointment_cannot_be_held_or_missed_before_it_was_scheduled(outcome: str) -> None:
    case = open_case(JOBCENTER)
    appointment = uuid4()
    case.schedule_appointment(
        act(JOBCENTER, 5), appointment_id=appointment, kind="information", at=at(7)
    )
    check = unchanged(case)

    with raises_domain(OccurredTooEarly, "occurred_too_early"):
        getattr(case, f"record_appointment_{outcome}")(
            act(JOBCENTER, 4), appointment_id=appointment
        )

    check()


def test_employment_cannot_start_before_the_case_opened() -> None:
    case = open_case(JOBCENTER)  # opened 2026-03-02
    check = unchanged(case)

    with raises_domain(OccurredTooEarly, "occurred_too_early"):
        case.start_employment(
            act(JOBCENTER, 5), employer="E", kind="employment", start_date="2026-03-01"
        )

    assert case.employment is None
    check()
    case.start_employment(
        act(JOBCENTER, 5), employer="E", kind="employment", start_date="2026-03-02"
    )
    assert case.employment is not None


def _offer_health_to_coach(case: Case, days: float, recorded_days: float) -> UUID:
    handover_id = uuid4()
    case.offer_handover(
        act(JOBCENTER, days, recorded_days=recorded_days),
        POLICY,
        handover_id=handover_id,
        kind=ASSIGNMENT,
        to_agency=COACHING,
        data_categories=[HEALTH],
    )
    return handover_id


def test_backdated_offer_recorded_after_the_consent_expired_is_refused() -> None:
    """Reproduction: valid until day 10; the offer says day 5 but reaches the hub on
    day 30, when the data would flow."""
    case = open_case(JOBCENTER)
    grant(case, valid_from=at(0), valid_until=at(10))
    check = unchanged(case)

    with raises_domain(ConsentMissing, "consent_missing"):
        _offer_health_to_coach(case, days=5, recorded_days=30)

    assert case.handovers == {}
    check()
    # the same offer reaching the hub in time is covered
    assert case.handover(_offer_health_to_coach(case, days=5, recorded_days=9)).legal_basis


def test_backdated_offer_recorded_after_the_revocation_is_refused() -> None:
    case = open_case(JOBCENTER)
    consent = grant(case, valid_from=at(0))
    case.revoke_consent(act(JOBCENTER, 8), consent_id=consent)
    check = unchanged(case)

    with raises_domain(ConsentMissing, "consent_missing"):
        _offer_health_to_coach(case, days=5, recorded_days=9)

    check()


def test_backdated_forward_needs_its_consent_valid_when_the_hub_records_it() -> None:
    case = open_case(JOBCENTER)
    grant(case, recipients=[EMPLOYMENT_AGENCY], categories=[HEALTH])
    application = offer(case, receiver=EMPLOYMENT_AGENCY, kind=REHAB, categories=[HEALTH])
    grant(case, recipients=[DRV], categories=[HEALTH], valid_until=at(9))
    check = unchanged(case)

    with raises_domain(ConsentMissing, "consent_missing"):
        case.forward_handover(
            act(EMPLOYMENT_AGENCY, 8, recorded_days=12),
            POLICY,
            handover_id=application,
            new_handover_id=uuid4(),
            to_agency=DRV,
            reason="not competent",
        )

    check()


@pytest.mark.parametrize(
    ("recorded_days", "document_ref", "late", "counted_days"),
    [
        (18 + 2 / 24, None, False, 18),  # recorded two hours later: in time
        (25, None, True, 25),  # a week late, no notice: counts when recorded
        (25, "Bescheid-2026-0815", True, 18),  # a week late, the notice dates it
    ],
    ids=["in-time", "late-without-notice", "late-with-notice"],
)
def test_late_rehab_decision_is_marked_and_counts_on_the_hubs_clock_unless_documented(
    recorded_days: float, document_ref: str | None, late: bool, counted_days: float
) -> None:
    case, application = rehab_case(DRV)

    case.decide_rehab(
        act(DRV, 18, recorded_days=recorded_days),
        POLICY,
        handover_id=application,
        outcome=RehabOutcome.PARTLY_GRANTED,
        document_ref=document_ref,
    )

    event = case.collect_events()[-1]
    assert type(event).__name__ == "RehabDecided"
    assert event.occurred_at == at(18)
    assert (event.late_entry, event.counted_at) == (late, at(counted_days))
    assert event.document_ref == document_ref
    assert case.handover(application).decision == "partly_granted"
    assert case.handover(application).state is HandoverState.COMPLETED


# ---- § 14 SGB IX: forwarded once, in time, to a rehabilitation agency; then decided ------


def forwarded_case() -> tuple[Case, UUID, UUID]:
    """The Jobcenter's application to the employment agency, forwarded to the DRV on
    day 9 (DOMAIN scenario 2)."""
    case, first = rehab_case(EMPLOYMENT_AGENCY)
    return case, first, forward(case, first, by=EMPLOYMENT_AGENCY, to=DRV, days=9)


def test_second_agency_cannot_decline_a_forwarded_application() -> None:
    """Reproduction: the DRV declines and the application bounces back."""
    case, _, second = forwarded_case()
    check = unchanged(case)

    with raises_domain(DecisionRequired, "decision_required"):
        case.decline_handover(act(DRV, 12), handover_id=second, reason="not ours")

    assert case.handover(second).state is HandoverState.OFFERED
    check()


def test_forwarder_cannot_withdraw_the_forwarded_application() -> None:
    case, _, second = forwarded_case()
    check = unchanged(case)

    with raises_domain(DecisionRequired, "decision_required"):
        case.withdraw_handover(act(EMPLOYMENT_AGENCY, 10), handover_id=second, reason="oops")

    assert case.handover(second).state is HandoverState.OFFERED
    check()


def test_second_agency_decides_the_forwarded_application() -> None:
    case, first, second = forwarded_case()

    decide(case, second, DRV, 20)

    assert case.handover(second).state is HandoverState.COMPLETED
    assert case.handover(second).decision == "granted"
    assert case.handover(first).state is HandoverState.FORWARDED
    events = case.collect_events()
    assert events[-1].counted_at == at(20) <= at(9 + 21)
    assert_replays_equal(case, events)


def test_only_the_receiver_decides_an_application() -> None:
    case, _, second = forwarded_case()

    with raises_domain(NotReceiver, "not_receiver"):
        decide(case, second, EMPLOYMENT_AGENCY, 20)


def _offered(case: Case, first: UUID) -> None:
    pass


def _accepted(case: Case, first: UUID) -> None:
    case.accept_handover(act(EMPLOYMENT_AGENCY, 2), POLICY, handover_id=first)


def _forwarded(case: Case, first: UUID) -> None:
    forward(case, first, by=EMPLOYMENT_AGENCY, to=DRV, days=2)


OPEN_CHAINS = {"offered": _offered, "accepted": _accepted, "forwarded": _forwarded}


@pytest.mark.parametrize("state", list(OPEN_CHAINS.values()), ids=list(OPEN_CHAINS))
def test_no_new_rehab_application_while_one_awaits_its_decision(
    state: Callable[[Case, UUID], None],
) -> None:
    """Reproduction: a second application opened beside a pending chain."""
    case, first = rehab_case(EMPLOYMENT_AGENCY)
    state(case, first)
    awaiting = [str(h.handover_id) for h in case.handovers.values() if h.is_open]
    check = unchanged(case)

    with raises_domain(RehabApplicationOpen, "rehab_application_open") as info:
        offer(case, receiver=DRV, kind=REHAB, days=3)

    assert info.value.details == {"handover_ids": awaiting}
    check()


@pytest.mark.parametrize("ending", ["decided", "withdrawn"])
def test_new_rehab_application_once_the_chain_is_decided_or_withdrawn(ending: str) -> None:
    case, first = rehab_case(EMPLOYMENT_AGENCY)
    if ending == "decided":
        decide(case, first, EMPLOYMENT_AGENCY, 2)
    else:
        case.withdraw_handover(act(JOBCENTER, 2), handover_id=first, reason="wrong form")

    second = offer(case, receiver=DRV, kind=REHAB, days=3)

    assert case.handover(second).state is HandoverState.OFFERED


@pytest.mark.parametrize("day", [15, 40])
def test_forward_after_the_competence_period_is_refused(day: int) -> None:
    """Reproduction: forwarded on day 40, long after § 14 Abs. 1's two weeks."""
    case, first = rehab_case(EMPLOYMENT_AGENCY)
    check = unchanged(case)

    with raises_domain(ForwardPeriodOver, "forward_period_over") as info:
        forward(case, first, by=EMPLOYMENT_AGENCY, to=DRV, days=day)

    assert info.value.details == {"forward_due_at": at(14).isoformat()}
    assert case.handover(first).state is HandoverState.OFFERED
    check()


def test_forward_on_the_last_day_of_the_competence_period_is_allowed() -> None:
    case, first = rehab_case(EMPLOYMENT_AGENCY)

    second = forward(case, first, by=EMPLOYMENT_AGENCY, to=DRV, days=14)

    assert case.handover(second).to_agency == DRV


@pytest.mark.parametrize("target", [CHAMBER, COACHING, INTEGRATION_OFFICE, CLINIC])
def test_application_is_forwarded_only_to_a_rehabilitation_or_employment_agency(
    target: str,
) -> None:
    """Reproduction: an application forwarded to the chamber."""
    case, first = rehab_case(EMPLOYMENT_AGENCY)
    check = unchanged(case)

    with raises_domain(KindNotAllowed, "kind_not_allowed"):
        forward(case, first, by=EMPLOYMENT_AGENCY, to=target, days=3)

    assert case.handover(first).state is HandoverState.OFFERED
    check()


def test_application_awaiting_its_decision_cannot_be_completed() -> None:
    case, first = rehab_case(EMPLOYMENT_AGENCY)
    case.accept_handover(act(EMPLOYMENT_AGENCY, 2), POLICY, handover_id=first)
    check = unchanged(case)

    with raises_domain(DecisionRequired, "decision_required"):
        case.complete_handover(act(EMPLOYMENT_AGENCY, 5), handover_id=first)

    assert case.handover(first).state is HandoverState.ACCEPTED
    check()


def test_expert_opinion_moves_the_decision_to_two_weeks_after_its_receipt() -> None:
    case, _, second = forwarded_case()
    assert case.handover(second).decide_due_at == at(30)

    case.request_expert_opinion(act(DRV, 12), handover_id=second)
    case.receive_expert_opinion(act(DRV, 25), POLICY, handover_id=second)

    handover = case.handover(second)
    assert handover.opinion_requested_at == at(12)
    assert handover.opinion_received_at == at(25)
    assert handover.decide_due_at == at(39)
    assert_replays_equal(case)


def test_expert_opinion_is_received_only_after_it_was_requested() -> None:
    case, _, second = forwarded_case()

    with raises_domain(InvalidTransition, "invalid_transition"):
        case.receive_expert_opinion(act(DRV, 25), POLICY, handover_id=second)
    case.request_expert_opinion(act(DRV, 12), handover_id=second)
    with raises_domain(OccurredTooEarly, "occurred_too_early"):
        case.receive_expert_opinion(act(DRV, 11), POLICY, handover_id=second)


# ---- closure and involvement (rule 7) ------------------------------------------------------


def _case_with_two_open_handovers() -> tuple[Case, list[UUID]]:
    case = open_case(JOBCENTER)
    assignment = offer(case)
    case.accept_handover(act(COACHING, 1), POLICY, handover_id=assignment)
    placement = offer(case, receiver=CHAMBER, kind=PLACEMENT, days=2)
    return case, [assignment, placement]


def test_case_with_open_handovers_does_not_close() -> None:
    """Reproduction: a case closed while a coach still works on its assignment."""
    case, open_ids = _case_with_two_open_handovers()
    check = unchanged(case)

    with raises_domain(OpenHandovers, "open_handovers") as info:
        case.close(act(JOBCENTER, 10), outcome=Outcome.OTHER)

    assert sorted(info.value.details["handover_ids"]) == sorted(map(str, open_ids))
    assert not case.is_closed
    check()


def test_closure_with_withdraw_open_records_a_withdrawal_per_open_handover() -> None:
    case, open_ids = _case_with_two_open_handovers()
    case.collect_events()

    case.close(act(JOBCENTER, 10), outcome=Outcome.DROPPED_OUT, withdraw_open=True)

    events = case.collect_events()
    assert [type(e).__name__ for e in events] == [
        "HandoverWithdrawn",
        "HandoverWithdrawn",
        "CaseClosed",
    ]
    assert {e.handover_id for e in events[:2]} == set(open_ids)
    assert all(case.handover(h).state is HandoverState.WITHDRAWN for h in open_ids)
    assert case.is_closed
    with raises_domain(CaseClosed, "case_closed"):
        offer(case, receiver=COACHING, days=11)


@pytest.mark.parametrize("chain", ["first-agency", "forwarded"])
def test_pending_rehab_decision_blocks_closure_even_with_withdraw_open(chain: str) -> None:
    case, first = rehab_case(EMPLOYMENT_AGENCY)
    if chain == "forwarded":
        first = forward(case, first, by=EMPLOYMENT_AGENCY, to=DRV, days=2)
    check = unchanged(case)

    with raises_domain(DecisionPending, "decision_pending") as info:
        case.close(act(JOBCENTER, 10), outcome=Outcome.OTHER, withdraw_open=True)

    assert info.value.details == {"handover_ids": [str(first)]}
    check()


def test_transferred_outcome_names_its_target() -> None:
    case = open_case(JOBCENTER)

    with raises_domain(InvalidValue, "invalid_value"):
        case.close(act(JOBCENTER, 10), outcome=Outcome.TRANSFERRED)

    case.close(act(JOBCENTER, 10), outcome=Outcome.TRANSFERRED, target="kopra-erzgebirge")
    assert case.collect_events()[-1].target == "kopra-erzgebirge"


@pytest.mark.parametrize("ending", ["declined", "withdrawn"])
def test_receiver_of_a_declined_or_withdrawn_handover_is_no_longer_involved(ending: str) -> None:
    """Reproduction: a coach that declined still writes notes into the case."""
    case = open_case(JOBCENTER)
    assignment = offer(case)
    if ending == "declined":
        case.decline_handover(act(COACHING, 1), handover_id=assignment, reason="full")
    else:
        case.withdraw_handover(act(JOBCENTER, 1), handover_id=assignment, reason="mistake")
    check = unchanged(case)

    assert COACHING not in case.involved_agencies
    with raises_domain(NotInvolved, "not_involved"):
        case.add_note(act(COACHING, 2), text="still here", category="notes")
    with raises_domain(NotInvolved, "not_involved"):
        _transfer(case, JOBCENTER, COACHING)
    check()


def test_receiver_with_another_part_stays_involved_after_declining() -> None:
    case = open_case(JOBCENTER)
    first = offer(case)
    case.accept_handover(act(COACHING, 1), POLICY, handover_id=first)
    second = offer(case, days=2)

    case.decline_handover(act(COACHING, 3), handover_id=second, reason="one is enough")

    assert COACHING in case.involved_agencies
    case.add_note(act(COACHING, 4), text="coaching goes on", category="notes")
