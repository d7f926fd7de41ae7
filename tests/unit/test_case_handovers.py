"""The handover state machine (DOMAIN.md) and rules 1 and 2, on the pure ``Case``.

The state machine is the same for every handover kind, so these tests keep fixed
parties and run under ``ANY_ROLES`` (every kind may send and receive every handover
kind). Roles (rule 6) are tested under DOMAIN.md's defaults in
``test_case_authority_and_time.py``; the § 14 SGB IX tests below use the defaults.

offered ──accept──▶ accepted ──complete──▶ completed
   │  ╲──decline──▶ declined
   │   ╲─forward──▶ forwarded (a new handover is offered to the next agency)
   └──withdraw────▶ withdrawn
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.case import STATUTORY_TASK, Case
from domain.errors import (
    DecisionRequired,
    ForwardLimitReached,
    HandoverExists,
    HandoverUnknown,
    InvalidRecipient,
    InvalidTransition,
    NotReceiver,
    NotSender,
)
from domain.values import HandoverKind, HandoverState, RehabOutcome
from tests.unit.case_builders import (
    ANY_ROLES,
    CHAMBER,
    CLINIC,
    COACHING,
    DRV,
    EMPLOYMENT_AGENCY,
    INTEGRATION_OFFICE,
    JOBCENTER,
    OUTSIDER,
    POLICY,
    act,
    assert_replays_equal,
    at,
    forward,
    offer,
    open_case,
    raises_domain,
)

SENDER, RECEIVER, NEXT = JOBCENTER, COACHING, CHAMBER
NON_REHAB_KINDS = [k for k in HandoverKind if k is not HandoverKind.REHAB_APPLICATION]


def offered_case(kind: HandoverKind = HandoverKind.PLACEMENT_SUPPORT) -> tuple[Case, UUID]:
    case = open_case(SENDER)
    return case, offer(case, sender=SENDER, receiver=RECEIVER, kind=kind, policy=ANY_ROLES)


def event_names(events: list[object]) -> list[str]:
    return [type(e).__name__ for e in events]


# ---- every valid transition --------------------------------------------------------


@pytest.mark.parametrize("kind", list(HandoverKind))
def test_offer_records_an_offered_handover(kind: HandoverKind) -> None:
    case, handover_id = offered_case(kind)

    handover = case.handover(handover_id)
    assert handover.state is HandoverState.OFFERED
    assert handover.kind is kind
    assert (handover.from_agency, handover.to_agency) == (SENDER, RECEIVER)
    assert handover.offered_at == at(0)
    assert handover.due_at == POLICY.accept_due(kind, at(0))
    assert handover.decide_due_at == POLICY.decide_due(kind, at(0))
    assert handover.legal_basis == (STATUTORY_TASK,)
    assert handover.forwarded_from is None
    assert handover.forwarded_to is None
    assert handover.is_open
    events = case.collect_events()
    assert event_names(events) == ["CaseOpened", "HandoverOffered"]
    assert_replays_equal(case, events)


def test_offered_then_accepted_then_completed() -> None:
    case, handover_id = offered_case()

    case.accept_handover(act(RECEIVER, 2), ANY_ROLES, handover_id=handover_id)
    accepted = case.handover(handover_id)
    assert accepted.state is HandoverState.ACCEPTED
    assert accepted.decided_at == at(2)
    assert accepted.is_open

    case.complete_handover(act(RECEIVER, 30), handover_id=handover_id)
    completed = case.handover(handover_id)
    assert completed.state is HandoverState.COMPLETED
    assert completed.completed_at == at(30)
    assert not completed.is_open

    events = case.collect_events()
    assert event_names(events)[-2:] == ["HandoverAccepted", "HandoverCompleted"]
    assert_replays_equal(case, events)


def test_offered_then_declined_records_reason() -> None:
    case, handover_id = offered_case()

    case.decline_handover(act(RECEIVER, 3), handover_id=handover_id, reason="no capacity")

    handover = case.handover(handover_id)
    assert handover.state is HandoverState.DECLINED
    assert handover.decided_at == at(3)
    assert handover.reason == "no capacity"
    assert not handover.is_open
    events = case.collect_events()
    assert event_names(events)[-1] == "HandoverDeclined"
    assert events[-1].reason == "no capacity"
    assert_replays_equal(case, events)


def test_offered_then_withdrawn_records_reason() -> None:
    case, handover_id = offered_case()

    case.withdraw_handover(act(SENDER, 1), handover_id=handover_id, reason="sent in error")

    handover = case.handover(handover_id)
    assert handover.state is HandoverState.WITHDRAWN
    assert handover.decided_at == at(1)
    assert handover.reason == "sent in error"
    events = case.collect_events()
    assert event_names(events)[-1] == "HandoverWithdrawn"
    assert_replays_equal(case, events)


@pytest.mark.parametrize("kind", list(HandoverKind))
def test_offered_then_forwarded_offers_a_linked_handover_to_the_next_agency(
    kind: HandoverKind,
) -> None:
    case, first_id = offered_case(kind)

    second_id = forward(
        case, first_id, by=RECEIVER, to=NEXT, days=9, reason="not competent", policy=ANY_ROLES
    )

    first = case.handover(first_id)
    second = case.handover(second_id)
    assert first.state is HandoverState.FORWARDED
    assert first.decided_at == at(9)
    assert first.forwarded_to == second_id
    assert second.forwarded_from == first_id
    assert second.state is HandoverState.OFFERED
    assert second.kind is kind
    assert (second.from_agency, second.to_agency) == (RECEIVER, NEXT)
    assert second.offered_at == at(9)
    assert second.reason == "not competent"
    assert second.chain_origin_agency == SENDER
    # deadlines run from the forward, not from the first offer
    assert second.due_at == POLICY.accept_due(kind, at(9))
    assert second.decide_due_at == POLICY.decide_due(kind, at(9))
    events = case.collect_events()
    assert event_names(events)[-1] == "HandoverForwarded"
    assert_replays_equal(case, events)


def test_forwarded_handover_can_be_accepted_by_the_next_agency() -> None:
    case, first_id = offered_case()
    second_id = forward(case, first_id, by=RECEIVER, to=NEXT, days=1, policy=ANY_ROLES)

    case.accept_handover(act(NEXT, 2), ANY_ROLES, handover_id=second_id)

    assert case.handover(second_id).state is HandoverState.ACCEPTED
    assert case.handover(first_id).state is HandoverState.FORWARDED
    assert_replays_equal(case)


def test_forwarder_may_withdraw_the_handover_it_forwarded() -> None:
    case, first_id = offered_case()
    second_id = forward(case, first_id, by=RECEIVER, to=NEXT, days=1, policy=ANY_ROLES)

    case.withdraw_handover(act(RECEIVER, 2), handover_id=second_id, reason="mistake")

    assert case.handover(second_id).state is HandoverState.WITHDRAWN


# ---- every invalid transition: states x commands --------------------------------------

Command = Callable[[Case, UUID], None]


def _accept(case: Case, hid: UUID) -> None:
    case.accept_handover(act(RECEIVER, 5), ANY_ROLES, handover_id=hid)


def _decline(case: Case, hid: UUID) -> None:
    case.decline_handover(act(RECEIVER, 5), handover_id=hid, reason="no")


def _forward(case: Case, hid: UUID) -> None:
    forward(case, hid, by=RECEIVER, to=INTEGRATION_OFFICE, days=5, policy=ANY_ROLES)


def _withdraw(case: Case, hid: UUID) -> None:
    case.withdraw_handover(act(SENDER, 5), handover_id=hid, reason="no")


def _complete(case: Case, hid: UUID) -> None:
    case.complete_handover(act(RECEIVER, 5), handover_id=hid)


COMMANDS: dict[str, Command] = {
    "accept": _accept,
    "decline": _decline,
    "forward": _forward,
    "withdraw": _withdraw,
    "complete": _complete,
}

# How to reach each state from "offered", by the rightful party.
REACH: dict[HandoverState, list[Command]] = {
    HandoverState.OFFERED: [],
    HandoverState.ACCEPTED: [_accept],
    HandoverState.DECLINED: [_decline],
    HandoverState.FORWARDED: [_forward],
    HandoverState.WITHDRAWN: [_withdraw],
    HandoverState.COMPLETED: [_accept, _complete],
}

VALID: dict[tuple[HandoverState, str], HandoverState] = {
    (HandoverState.OFFERED, "accept"): HandoverState.ACCEPTED,
    (HandoverState.OFFERED, "decline"): HandoverState.DECLINED,
    (HandoverState.OFFERED, "forward"): HandoverState.FORWARDED,
    (HandoverState.OFFERED, "withdraw"): HandoverState.WITHDRAWN,
    (HandoverState.ACCEPTED, "complete"): HandoverState.COMPLETED,
}

MATRIX = [(state, name) for state in HandoverState for name in COMMANDS]
INVALID = [pair for pair in MATRIX if pair not in VALID]


def handover_in(state: HandoverState) -> tuple[Case, UUID]:
    case, handover_id = offered_case()
    for step in REACH[state]:
        step(case, handover_id)
    assert case.handover(handover_id).state is state
    return case, handover_id


def test_the_matrix_covers_every_state_and_command() -> None:
    assert len(MATRIX) == len(HandoverState) * len(COMMANDS) == 30
    assert len(INVALID) == 25


@pytest.mark.parametrize(
    ("state", "command"), list(VALID), ids=[f"{s.value}-{c}" for s, c in VALID]
)
def test_valid_transition(state: HandoverState, command: str) -> None:
    case, handover_id = handover_in(state)

    COMMANDS[command](case, handover_id)

    assert case.handover(handover_id).state is VALID[(state, command)]
    assert_replays_equal(case)


@pytest.mark.parametrize(("state", "command"), INVALID, ids=[f"{s.value}-{c}" for s, c in INVALID])
def test_invalid_transition_is_refused(state: HandoverState, command: str) -> None:
    case, handover_id = handover_in(state)
    case.collect_events()
    before = case.version

    with raises_domain(InvalidTransition, "invalid_transition"):
        COMMANDS[command](case, handover_id)

    assert case.handover(handover_id).state is state
    assert case.collect_events() == []
    assert case.version == before


def test_decline_twice_is_refused() -> None:
    case, handover_id = offered_case()
    _decline(case, handover_id)

    with raises_domain(InvalidTransition, "invalid_transition"):
        _decline(case, handover_id)


# ---- rule 1: only the receiver decides, only the sender withdraws -------------------


def _case_with_a_third_involved_agency() -> tuple[Case, UUID]:
    """CLINIC is involved in the case through another handover, but not in this one."""
    case, handover_id = offered_case()
    offer(case, sender=SENDER, receiver=CLINIC, kind=HandoverKind.RETURN, policy=ANY_ROLES)
    return case, handover_id


RECEIVER_ONLY = ["accept", "decline", "forward", "complete"]


@pytest.mark.parametrize("command", RECEIVER_ONLY)
@pytest.mark.parametrize("wrong_agency", [SENDER, CLINIC, OUTSIDER])
def test_only_the_receiver_decides(command: str, wrong_agency: str) -> None:
    case, handover_id = _case_with_a_third_involved_agency()
    if command == "complete":
        _accept(case, handover_id)
    state = case.handover(handover_id).state
    case.collect_events()
    run: dict[str, Callable[[], None]] = {
        "accept": lambda: case.accept_handover(
            act(wrong_agency, 1), ANY_ROLES, handover_id=handover_id
        ),
        "decline": lambda: case.decline_handover(
            act(wrong_agency, 1), handover_id=handover_id, reason="x"
        ),
        "forward": lambda: forward(
            case, handover_id, by=wrong_agency, to=DRV, days=1, policy=ANY_ROLES
        ),
        "complete": lambda: case.complete_handover(act(wrong_agency, 1), handover_id=handover_id),
    }

    with raises_domain(NotReceiver, "not_receiver"):
        run[command]()

    assert case.handover(handover_id).state is state
    assert case.collect_events() == []


@pytest.mark.parametrize("wrong_agency", [RECEIVER, CLINIC, OUTSIDER])
def test_only_the_sender_withdraws(wrong_agency: str) -> None:
    case, handover_id = _case_with_a_third_involved_agency()
    case.collect_events()

    with raises_domain(NotSender, "not_sender"):
        case.withdraw_handover(act(wrong_agency, 1), handover_id=handover_id, reason="x")

    assert case.handover(handover_id).state is HandoverState.OFFERED
    assert case.collect_events() == []


def test_original_sender_cannot_withdraw_the_forwarded_handover() -> None:
    case, first_id = offered_case()
    second_id = forward(case, first_id, by=RECEIVER, to=NEXT, days=1, policy=ANY_ROLES)

    with raises_domain(NotSender, "not_sender"):
        case.withdraw_handover(act(SENDER, 2), handover_id=second_id, reason="x")


# ---- rule 2: § 14 SGB IX forwarding ---------------------------------------------------


def rehab_case() -> tuple[Case, UUID]:
    case = open_case(JOBCENTER)
    return case, offer(
        case,
        sender=JOBCENTER,
        receiver=EMPLOYMENT_AGENCY,
        kind=HandoverKind.REHAB_APPLICATION,
    )


def test_rehab_application_may_be_forwarded_once() -> None:
    case, first_id = rehab_case()

    second_id = forward(case, first_id, by=EMPLOYMENT_AGENCY, to=DRV, days=9)

    assert case.handover(first_id).state is HandoverState.FORWARDED
    assert case.handover(second_id).state is HandoverState.OFFERED
    assert case.handover(second_id).to_agency == DRV


def test_forwarding_a_forwarded_rehab_application_is_refused() -> None:
    case, first_id = rehab_case()
    second_id = forward(case, first_id, by=EMPLOYMENT_AGENCY, to=DRV, days=9)
    case.collect_events()

    with raises_domain(ForwardLimitReached, "forward_limit_reached"):
        forward(case, second_id, by=DRV, to=CHAMBER, days=12)

    assert case.handover(second_id).state is HandoverState.OFFERED
    assert case.handover(second_id).forwarded_to is None
    assert len(case.handovers) == 2
    assert case.collect_events() == []


@pytest.mark.parametrize("kind", NON_REHAB_KINDS)
def test_other_kinds_may_be_forwarded_twice(kind: HandoverKind) -> None:
    case, first_id = offered_case(kind)
    second_id = forward(case, first_id, by=RECEIVER, to=NEXT, days=1, policy=ANY_ROLES)

    third_id = forward(case, second_id, by=NEXT, to=INTEGRATION_OFFICE, days=2, policy=ANY_ROLES)

    chain = [case.handover(h) for h in (first_id, second_id, third_id)]
    assert [h.state for h in chain] == [
        HandoverState.FORWARDED,
        HandoverState.FORWARDED,
        HandoverState.OFFERED,
    ]
    assert chain[1].forwarded_to == third_id
    assert chain[2].forwarded_from == second_id
    assert chain[2].chain_origin_agency == SENDER
    assert_replays_equal(case)


def test_second_rehab_agency_deadlines_run_from_its_own_receipt() -> None:
    case, first_id = rehab_case()
    first = case.handover(first_id)
    assert first.due_at == at(0) + timedelta(days=14)
    assert first.decide_due_at == at(0) + timedelta(days=21)

    second_id = forward(case, first_id, by=EMPLOYMENT_AGENCY, to=DRV, days=9)

    second = case.handover(second_id)
    assert second.due_at == at(9) + timedelta(days=14)
    assert second.decide_due_at == at(9) + timedelta(days=21)
    # the first handover's deadlines are left as they were
    assert case.handover(first_id).due_at == at(14)


def test_scenario_rehabilitation_ping_pong_stopped() -> None:
    """DOMAIN scenario 2: forwarded on day 9, refused again, decided on day 20."""
    case, first_id = rehab_case()
    second_id = forward(case, first_id, by=EMPLOYMENT_AGENCY, to=DRV, days=9)
    with raises_domain(ForwardLimitReached, "forward_limit_reached"):
        forward(case, second_id, by=DRV, to=EMPLOYMENT_AGENCY, days=15)

    with raises_domain(DecisionRequired, "decision_required"):
        case.decline_handover(act(DRV, 15), handover_id=second_id, reason="not ours either")

    case.accept_handover(act(DRV, 20), POLICY, handover_id=second_id)

    second = case.handover(second_id)
    assert second.state is HandoverState.ACCEPTED
    assert second.decide_due_at is not None
    assert second.decided_at is not None
    assert second.decided_at <= second.decide_due_at
    # ... and the second agency records its decision, within three weeks of day 9
    case.decide_rehab(act(DRV, 20), POLICY, handover_id=second_id, outcome=RehabOutcome.GRANTED)
    decided = case.handover(second_id)
    assert decided.state is HandoverState.COMPLETED
    assert decided.decision == "granted"
    events = case.collect_events()
    assert type(events[-1]).__name__ == "RehabDecided"
    assert events[-1].counted_at == at(20) <= second.decide_due_at
    assert events[-1].late_entry is False
    assert_replays_equal(case, events)


@pytest.mark.parametrize("target", [RECEIVER, SENDER], ids=["to-itself", "back-to-sender"])
def test_forward_to_itself_or_back_to_the_sender_is_refused(target: str) -> None:
    case, handover_id = offered_case()

    with raises_domain(InvalidRecipient, "invalid_recipient"):
        forward(case, handover_id, by=RECEIVER, to=target, days=1, policy=ANY_ROLES)

    assert case.handover(handover_id).state is HandoverState.OFFERED


def test_offer_to_itself_is_refused() -> None:
    case = open_case(JOBCENTER)

    with raises_domain(InvalidRecipient, "invalid_recipient"):
        offer(case, sender=JOBCENTER, receiver=JOBCENTER)

    assert case.handovers == {}


# ---- duplicate and unknown handover ids -------------------------------------------------


def test_reusing_a_handover_id_on_offer_is_refused() -> None:
    case, handover_id = offered_case()

    with raises_domain(HandoverExists, "handover_exists"):
        offer(case, sender=SENDER, receiver=CLINIC, handover_id=handover_id, policy=ANY_ROLES)

    assert case.handover(handover_id).to_agency == RECEIVER


@pytest.mark.parametrize("reuse", ["same", "other"])
def test_reusing_a_handover_id_on_forward_is_refused(reuse: str) -> None:
    case, handover_id = offered_case()
    other_id = offer(case, sender=SENDER, receiver=CLINIC, policy=ANY_ROLES)
    existing = handover_id if reuse == "same" else other_id

    with raises_domain(HandoverExists, "handover_exists"):
        case.forward_handover(
            act(RECEIVER, 1),
            ANY_ROLES,
            handover_id=handover_id,
            new_handover_id=existing,
            to_agency=NEXT,
            reason="x",
        )

    assert case.handover(handover_id).state is HandoverState.OFFERED


@pytest.mark.parametrize("command", list(COMMANDS))
def test_unknown_handover_id_is_refused(command: str) -> None:
    case, _ = offered_case()

    with raises_domain(HandoverUnknown, "handover_unknown"):
        COMMANDS[command](case, uuid4())


def test_handover_lookup_of_unknown_id_is_refused() -> None:
    case, _ = offered_case()

    with raises_domain(HandoverUnknown, "handover_unknown"):
        case.handover(uuid4())


# ---- property: random command sequences follow the state machine --------------------

AGENCIES = [SENDER, RECEIVER, CLINIC]


def _expected_error(state: HandoverState, command: str, agency: str) -> type | None:
    """The reference model: the table in DOMAIN.md plus rule 1."""
    if command == "withdraw":
        if agency != SENDER:
            return NotSender
    elif agency != RECEIVER:
        return NotReceiver
    if (state, command) not in VALID:
        return InvalidTransition
    return None


@settings(max_examples=75, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(list(COMMANDS)), st.sampled_from(AGENCIES)), max_size=8
    )
)
def test_random_command_sequences_follow_the_state_machine(
    steps: list[tuple[str, str]],
) -> None:
    case = open_case(SENDER)
    offer(case, sender=SENDER, receiver=CLINIC, kind=HandoverKind.RETURN, policy=ANY_ROLES)
    handover_id = offer(case, sender=SENDER, receiver=RECEIVER, policy=ANY_ROLES)
    state = HandoverState.OFFERED
    for day, (command, agency) in enumerate(steps, start=1):
        expected = _expected_error(state, command, agency)
        a = act(agency, day)
        attempt: dict[str, Callable[[], None]] = {
            "accept": lambda a=a: case.accept_handover(a, ANY_ROLES, handover_id=handover_id),
            "decline": lambda a=a: case.decline_handover(a, handover_id=handover_id, reason="r"),
            "forward": lambda a=a: case.forward_handover(
                a, ANY_ROLES, handover_id=handover_id, new_handover_id=uuid4(),
                to_agency=INTEGRATION_OFFICE, reason="r",
            ),
            "withdraw": lambda a=a: case.withdraw_handover(
                a, handover_id=handover_id, reason="r"
            ),
            "complete": lambda a=a: case.complete_handover(a, handover_id=handover_id),
        }  # fmt: skip
        if expected is None:
            attempt[command]()
            state = VALID[(state, command)]
        else:
            with pytest.raises(expected):
                attempt[command]()
        assert case.handover(handover_id).state is state
    assert_replays_equal(case)
