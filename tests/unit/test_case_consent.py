"""Rule 3: a handover carrying data needs a covering, valid consent at that moment."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from domain.case import STATUTORY_TASK, Case
from domain.errors import (
    ConsentExists,
    ConsentMissing,
    ConsentUnknown,
    InvalidTransition,
    InvalidValue,
)
from domain.values import DataCategory, HandoverKind, HandoverState
from tests.unit.case_builders import (
    CHAMBER,
    COACHING,
    DRV,
    EMPLOYMENT_AGENCY,
    JOBCENTER,
    act,
    assert_replays_equal,
    at,
    forward,
    grant,
    offer,
    open_case,
    raises_domain,
)

HEALTH = DataCategory.HEALTH
CONTACT = DataCategory.CONTACT


def offer_health(case: Case, *, days: float = 5, receiver: str = COACHING) -> Any:
    return offer(case, sender=JOBCENTER, receiver=receiver, categories=[HEALTH], days=days)


# ---- refused without a covering consent --------------------------------------------------


@pytest.mark.parametrize("category", list(DataCategory))
def test_handover_with_data_but_no_consent_is_refused_and_nothing_recorded(
    category: DataCategory,
) -> None:
    case = open_case(JOBCENTER)
    case.collect_events()

    with raises_domain(ConsentMissing, "consent_missing") as info:
        offer(case, sender=JOBCENTER, receiver=COACHING, categories=[category])

    assert info.value.details == {"categories": [category.value], "recipient": COACHING}
    assert case.handovers == {}
    assert case.collect_events() == []
    assert list(case.pending_events) == []


def _another_category(case: Case) -> None:
    grant(case, categories=[CONTACT])


def _another_recipient(case: Case) -> None:
    grant(case, recipients=[CHAMBER])


def _different_source(case: Case) -> None:
    # The employment agency takes part through a rehabilitation application and
    # records a consent naming itself as source: it does not cover the Jobcenter's data.
    offer(case, sender=JOBCENTER, receiver=EMPLOYMENT_AGENCY, kind=HandoverKind.REHAB_APPLICATION)
    grant(case, source=EMPLOYMENT_AGENCY)


def _not_yet_valid(case: Case) -> None:
    grant(case, valid_from=at(10))


def _expired(case: Case) -> None:
    grant(case, valid_from=at(-30), valid_until=at(1))


def _expires_exactly_then(case: Case) -> None:
    grant(case, valid_from=at(-30), valid_until=at(5))


def _revoked(case: Case) -> None:
    consent_id = grant(case)
    case.revoke_consent(act(JOBCENTER, 2), consent_id=consent_id)


NOT_COVERING: dict[str, Callable[[Case], None]] = {
    "another-category": _another_category,
    "another-recipient": _another_recipient,
    "different-source-agency": _different_source,
    "not-yet-valid": _not_yet_valid,
    "expired": _expired,
    "valid-until-is-exclusive": _expires_exactly_then,
    "revoked": _revoked,
}


@pytest.mark.parametrize("setup", list(NOT_COVERING.values()), ids=list(NOT_COVERING))
def test_consent_that_does_not_cover_the_handover_is_refused(
    setup: Callable[[Case], None],
) -> None:
    case = open_case(JOBCENTER)
    setup(case)
    handovers_before = dict(case.handovers)
    case.collect_events()

    with raises_domain(ConsentMissing, "consent_missing"):
        offer_health(case, days=5)

    assert case.handovers == handovers_before
    assert all(h.to_agency != COACHING for h in case.handovers.values())
    assert case.collect_events() == []


# ---- accepted with a covering consent ------------------------------------------------------


def test_valid_consent_allows_the_handover_and_is_its_legal_basis() -> None:
    case = open_case(JOBCENTER)
    consent_id = grant(case, valid_from=at(0), valid_until=at(365))

    handover_id = offer_health(case, days=5)

    handover = case.handover(handover_id)
    assert handover.legal_basis == (consent_id,)
    assert handover.data_categories == (HEALTH,)
    events = case.collect_events()
    assert events[-1].legal_basis == [consent_id]
    assert events[-1].data_categories == ["health"]
    assert_replays_equal(case, events)


def test_consent_is_valid_from_its_first_moment() -> None:
    case = open_case(JOBCENTER)
    consent_id = grant(case, valid_from=at(5))

    handover_id = offer_health(case, days=5)

    assert case.handover(handover_id).legal_basis == (consent_id,)


def test_each_category_needs_its_own_cover_and_every_consent_used_is_listed() -> None:
    case = open_case(JOBCENTER)
    health = grant(case, categories=[HEALTH], consent_id="c-health")
    contact = grant(case, categories=[CONTACT], consent_id="c-contact")

    handover_id = offer(case, receiver=COACHING, categories=[HEALTH, CONTACT], days=1)

    assert case.handover(handover_id).legal_basis == tuple(sorted([health, contact]))


def test_partly_covered_handover_is_refused_naming_only_the_missing_category() -> None:
    case = open_case(JOBCENTER)
    grant(case, categories=[CONTACT])

    with raises_domain(ConsentMissing, "consent_missing") as info:
        offer(case, receiver=COACHING, categories=[HEALTH, CONTACT], days=1)

    assert info.value.details["categories"] == ["health"]
    assert case.handovers == {}


def test_handover_without_data_rests_on_the_statutory_task() -> None:
    case = open_case(JOBCENTER)

    handover_id = offer(case, receiver=COACHING, categories=[])

    assert case.handover(handover_id).legal_basis == (STATUTORY_TASK,)
    assert case.collect_events()[-1].legal_basis == ["statutory_task"]


def test_scenario_consent_revoked_refuses_the_next_health_handover() -> None:
    """DOMAIN scenario 4: what was handed over before stays; the next one is refused."""
    case = open_case(JOBCENTER)
    consent_id = grant(case)
    first = offer_health(case, days=1)
    case.revoke_consent(act(JOBCENTER, 3), consent_id=consent_id)

    with raises_domain(ConsentMissing, "consent_missing"):
        offer_health(case, days=4)

    assert case.consents[consent_id].revoked_at == at(3)
    assert case.handover(first).legal_basis == (consent_id,)
    assert case.handover(first).state is HandoverState.OFFERED
    assert_replays_equal(case)


# ---- forwarding data to a new recipient --------------------------------------------------


def _rehab_with_health(case: Case) -> Any:
    grant(case, source=JOBCENTER, recipients=[EMPLOYMENT_AGENCY], consent_id="c-to-ba")
    return offer(
        case,
        sender=JOBCENTER,
        receiver=EMPLOYMENT_AGENCY,
        kind=HandoverKind.REHAB_APPLICATION,
        categories=[HEALTH],
    )


def test_forward_with_health_to_a_new_recipient_without_consent_is_refused() -> None:
    case = open_case(JOBCENTER)
    handover_id = _rehab_with_health(case)
    case.collect_events()

    with raises_domain(ConsentMissing, "consent_missing") as info:
        forward(case, handover_id, by=EMPLOYMENT_AGENCY, to=DRV, days=9)

    assert info.value.details["recipient"] == DRV
    assert case.handover(handover_id).state is HandoverState.OFFERED
    assert len(case.handovers) == 1
    assert case.collect_events() == []


@pytest.mark.parametrize("source", [EMPLOYMENT_AGENCY, JOBCENTER], ids=["forwarder", "origin"])
def test_forward_with_health_is_covered_by_consent_from_forwarder_or_origin(
    source: str,
) -> None:
    case = open_case(JOBCENTER)
    handover_id = _rehab_with_health(case)
    consent_id = grant(case, source=source, recipients=[DRV], consent_id="c-to-drv")

    new_id = forward(case, handover_id, by=EMPLOYMENT_AGENCY, to=DRV, days=9)

    assert case.handover(new_id).legal_basis == (consent_id,)
    assert case.handover(new_id).data_categories == (HEALTH,)
    assert case.collect_events()[-1].legal_basis == [consent_id]


def test_forward_with_health_is_not_covered_by_a_consent_from_an_unrelated_source() -> None:
    case = open_case(JOBCENTER)
    handover_id = _rehab_with_health(case)
    # The coaching provider takes part in the case but is neither forwarder nor origin.
    offer(case, sender=JOBCENTER, receiver=COACHING)
    grant(case, source=COACHING, recipients=[DRV])

    with raises_domain(ConsentMissing, "consent_missing"):
        forward(case, handover_id, by=EMPLOYMENT_AGENCY, to=DRV, days=9)


def test_forward_without_data_rests_on_the_statutory_task() -> None:
    case = open_case(JOBCENTER)
    handover_id = offer(case, receiver=EMPLOYMENT_AGENCY, kind=HandoverKind.REHAB_APPLICATION)

    new_id = forward(case, handover_id, by=EMPLOYMENT_AGENCY, to=DRV, days=9)

    assert case.handover(new_id).legal_basis == (STATUTORY_TASK,)


# ---- granting and revoking consent ----------------------------------------------------------


def test_granted_consent_is_recorded_and_replays() -> None:
    case = open_case(JOBCENTER)

    consent_id = grant(
        case,
        categories=[HEALTH, CONTACT, HEALTH],
        recipients=[COACHING, CHAMBER, COACHING],
        valid_from=at(0),
        valid_until=at(90),
        days=1,
    )

    consent = case.consents[consent_id]
    assert consent.categories == frozenset({HEALTH, CONTACT})
    assert consent.recipients == frozenset({COACHING, CHAMBER})
    assert consent.source_agency == JOBCENTER
    assert (consent.valid_from, consent.valid_until) == (at(0), at(90))
    assert consent.granted_by == JOBCENTER
    assert consent.revoked_at is None
    events = case.collect_events()
    assert type(events[-1]).__name__ == "ConsentGranted"
    assert events[-1].categories == ["contact", "health"]
    assert_replays_equal(case, events)


def test_reusing_a_consent_id_is_refused() -> None:
    case = open_case(JOBCENTER)
    consent_id = grant(case, consent_id="c-1")

    with raises_domain(ConsentExists, "consent_exists"):
        grant(case, consent_id=consent_id, categories=[CONTACT])

    assert case.consents[consent_id].categories == frozenset({HEALTH})


def test_revoking_an_unknown_consent_is_refused() -> None:
    case = open_case(JOBCENTER)

    with raises_domain(ConsentUnknown, "consent_unknown"):
        case.revoke_consent(act(JOBCENTER, 1), consent_id="nope")


def test_revoking_twice_is_refused() -> None:
    case = open_case(JOBCENTER)
    consent_id = grant(case)
    case.revoke_consent(act(JOBCENTER, 1), consent_id=consent_id)

    with raises_domain(InvalidTransition, "invalid_transition"):
        case.revoke_consent(act(JOBCENTER, 2), consent_id=consent_id)

    assert case.consents[consent_id].revoked_at == at(1)


@pytest.mark.parametrize(
    "overrides",
    [
        {"categories": []},
        {"recipients": []},
        {"valid_from": at(10), "valid_until": at(10)},
        {"valid_from": at(10), "valid_until": at(9)},
    ],
    ids=["no-categories", "no-recipients", "empty-period", "inverted-period"],
)
def test_malformed_consent_is_refused(overrides: dict[str, Any]) -> None:
    case = open_case(JOBCENTER)

    with raises_domain(InvalidValue, "invalid_value"):
        grant(case, **overrides)

    assert case.consents == {}


def test_valid_until_after_revocation_does_not_revive_the_consent() -> None:
    case = open_case(JOBCENTER)
    consent_id = grant(case, valid_until=at(365))
    case.revoke_consent(act(JOBCENTER, 1), consent_id=consent_id)

    with raises_domain(ConsentMissing, "consent_missing"):
        offer_health(case, days=2)

    assert case.consents[consent_id].valid_until == at(365)


def test_naive_valid_from_is_refused() -> None:
    case = open_case(JOBCENTER)

    with raises_domain(InvalidValue, "invalid_value"):
        grant(case, valid_from=datetime(2026, 3, 1))


def test_naive_valid_until_is_refused() -> None:
    case = open_case(JOBCENTER)

    with raises_domain(InvalidValue, "invalid_value"):
        grant(case, valid_from=at(-1), valid_until=datetime(2027, 3, 1))
