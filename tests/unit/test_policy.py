"""Deadline policy: DOMAIN.md's defaults, per-programme overrides, message-level due_at."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from domain.policy import DeadlinePolicy, HandoverDeadlines, PolicyBook
from domain.values import HandoverKind
from tests.unit.case_builders import (
    COACHING,
    EMPLOYMENT_AGENCY,
    JOBCENTER,
    POLICY,
    T0,
    act,
    at,
    forward,
    offer,
    open_case,
    rightful_offer,
)

DRV = "drv-bund"

# DOMAIN.md, "Kinds of handover": (accept days, decide days)
DOMAIN_DEFAULTS = {
    HandoverKind.ASSIGNMENT: (7, None),
    HandoverKind.DISCHARGE: (7, None),
    HandoverKind.REHAB_APPLICATION: (14, 21),
    HandoverKind.PLACEMENT_SUPPORT: (14, None),
    HandoverKind.RETURN: (7, None),
}


def test_every_kind_has_a_default() -> None:
    assert set(DeadlinePolicy().handovers) == set(HandoverKind) == set(DOMAIN_DEFAULTS)


@pytest.mark.parametrize(("kind", "days"), DOMAIN_DEFAULTS.items(), ids=str)
def test_default_deadlines_follow_domain_md(
    kind: HandoverKind, days: tuple[int, int | None]
) -> None:
    accept_days, decide_days = days
    policy = DeadlinePolicy()

    assert policy.handovers[kind] == HandoverDeadlines(accept_days, decide_days)
    assert policy.accept_due(kind, T0) == T0 + timedelta(days=accept_days)
    expected_decide = None if decide_days is None else T0 + timedelta(days=decide_days)
    assert policy.decide_due(kind, T0) == expected_decide


def test_default_information_meeting_within_a_week() -> None:
    assert DeadlinePolicy().information_meeting_days == 7


@pytest.mark.parametrize(("kind", "days"), DOMAIN_DEFAULTS.items(), ids=str)
def test_offered_handover_gets_the_default_deadlines(
    kind: HandoverKind, days: tuple[int, int | None]
) -> None:
    case, handover_id = rightful_offer(kind, days=2)

    handover = case.handover(handover_id)
    assert handover.due_at == at(2 + days[0])
    assert handover.decide_due_at == (None if days[1] is None else at(2 + days[1]))


BOOK = PolicyBook.from_mapping(
    {
        "programmes": {
            "kopra": {
                "handovers": {"assignment": {"accept_days": 3}},
                "information_meeting_days": 5,
            },
            "gal": {"handovers": {"rehab_application": {"accept_days": 10, "decide_days": 18}}},
        }
    }
)


def test_programme_override_changes_only_that_programme() -> None:
    kopra = BOOK.for_programme("kopra")
    other = BOOK.for_programme("trier")

    assert kopra.accept_due(HandoverKind.ASSIGNMENT, T0) == T0 + timedelta(days=3)
    assert kopra.information_meeting_days == 5
    assert other.accept_due(HandoverKind.ASSIGNMENT, T0) == T0 + timedelta(days=7)
    assert other.information_meeting_days == 7
    assert other == DeadlinePolicy()
    # untouched kinds keep their defaults inside the overridden programme
    assert kopra.accept_due(HandoverKind.DISCHARGE, T0) == T0 + timedelta(days=7)
    assert kopra.handovers[HandoverKind.REHAB_APPLICATION] == HandoverDeadlines(14, 21)


def test_override_may_change_accept_and_decide_days() -> None:
    gal = BOOK.for_programme("gal")

    assert gal.handovers[HandoverKind.REHAB_APPLICATION] == HandoverDeadlines(10, 18)
    assert BOOK.for_programme("kopra").handovers[HandoverKind.REHAB_APPLICATION] == (
        HandoverDeadlines(14, 21)
    )


def test_programme_override_changes_the_due_date_in_that_programme_only() -> None:
    kopra_case = open_case(programme="kopra")
    trier_case = open_case(programme="trier")

    kopra_id = offer(kopra_case, receiver=COACHING, policy=BOOK.for_programme(kopra_case.programme))
    trier_id = offer(trier_case, receiver=COACHING, policy=BOOK.for_programme(trier_case.programme))

    assert kopra_case.handover(kopra_id).due_at == at(3)
    assert trier_case.handover(trier_id).due_at == at(7)


def test_forward_uses_the_programme_policy_from_the_forward() -> None:
    case = open_case(programme="gal")
    policy = BOOK.for_programme("gal")
    first = offer(
        case,
        receiver=EMPLOYMENT_AGENCY,
        kind=HandoverKind.REHAB_APPLICATION,
        policy=policy,
    )

    second = forward(case, first, by=EMPLOYMENT_AGENCY, to=DRV, days=9, policy=policy)

    assert case.handover(second).due_at == at(19)
    assert case.handover(second).decide_due_at == at(27)


def test_default_section_applies_to_every_programme() -> None:
    book = PolicyBook.from_mapping(
        {
            "default": {"handovers": {"return": {"accept_days": 5}}},
            "programmes": {"miar": {"handovers": {"assignment": {"accept_days": 10}}}},
        }
    )

    assert book.default.handovers[HandoverKind.RETURN].accept_days == 5
    assert book.for_programme("unknown").handovers[HandoverKind.RETURN].accept_days == 5
    miar = book.for_programme("miar")
    assert miar.handovers[HandoverKind.RETURN].accept_days == 5
    assert miar.handovers[HandoverKind.ASSIGNMENT].accept_days == 10


def test_empty_mapping_gives_the_defaults() -> None:
    book = PolicyBook.from_mapping({})

    assert book.default == DeadlinePolicy()
    assert book.for_programme("anything") == DeadlinePolicy()


def test_overrides_do_not_leak_into_the_defaults() -> None:
    PolicyBook.from_mapping({"default": {"handovers": {"assignment": {"accept_days": 1}}}})

    assert DeadlinePolicy().handovers[HandoverKind.ASSIGNMENT].accept_days == 7


def test_unknown_handover_kind_in_settings_is_refused() -> None:
    with pytest.raises(ValueError, match="bogus"):
        PolicyBook.from_mapping({"default": {"handovers": {"bogus": {"accept_days": 1}}}})


def test_message_due_at_overrides_the_policy() -> None:
    case = open_case()
    agreed = at(4)

    handover_id = offer(case, receiver=COACHING, due_at=agreed, days=1)

    handover = case.handover(handover_id)
    assert handover.due_at == agreed
    assert case.collect_events()[-1].due_at == agreed


def test_message_due_at_overrides_the_accept_due_but_not_the_decide_due() -> None:
    case = open_case()

    handover_id = offer(
        case, receiver=EMPLOYMENT_AGENCY, kind=HandoverKind.REHAB_APPLICATION, due_at=at(30)
    )

    assert case.handover(handover_id).due_at == at(30)
    assert case.handover(handover_id).decide_due_at == at(21)


def test_due_dates_are_counted_from_occurred_at_not_from_recording() -> None:
    case = open_case(days=-10)
    handover_id = uuid4()

    # happened at the agency on day -3, recorded by the hub on day 0 (a late entry)
    case.offer_handover(
        act(JOBCENTER, -3, recorded_days=0),
        POLICY,
        handover_id=handover_id,
        kind=HandoverKind.ASSIGNMENT,
        to_agency=COACHING,
    )

    assert case.handover(handover_id).due_at == act("x", -3).occurred_at + timedelta(days=7)
    assert case.handover(handover_id).due_at == at(4)
