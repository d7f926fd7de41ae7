"""Shared helpers for the pure-domain unit tests of the ``Case`` aggregate.

Everything here goes through the public interface of ``domain.case``: ``Case.open``,
the command methods, the state attributes and the pending events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.case import Act, Case
from domain.errors import DomainError
from domain.policy import DeadlinePolicy, HandoverRoles, RolePolicy
from domain.values import AgencyKind, DataCategory, HandoverKind

T0 = datetime(2026, 3, 2, 9, tzinfo=UTC)
POLICY = DeadlinePolicy()
# For tests of the state machine alone (rules 1, 2): every kind may send and receive
# every handover kind, so parties can stay fixed. Roles (rule 6) are tested with
# POLICY, DOMAIN.md's defaults.
_EVERY_KIND = frozenset(AgencyKind)
ANY_ROLES = DeadlinePolicy(
    roles=RolePolicy(
        may_open=_EVERY_KIND,
        may_lead=_EVERY_KIND,
        handovers={k: HandoverRoles(_EVERY_KIND, _EVERY_KIND) for k in HandoverKind},
        forward_to=_EVERY_KIND,
    )
)

# Agencies by role. The domain only knows ids; the names say what they stand for.
JOBCENTER = "jc-trier"
COACHING = "coach-trier"
CLINIC = "clinic-oder-spree"
EMPLOYMENT_AGENCY = "ba-trier"
DRV = "drv-bund"
CHAMBER = "hwk-trier"
INTEGRATION_OFFICE = "inklusionsamt"
OUTSIDER = "somebody-else"

PROGRAMME = "inklusionsinitiative-trier"

# What the registry says of each agency: roles follow kinds (rule 6).
KINDS: dict[str, AgencyKind] = {
    JOBCENTER: AgencyKind.JOBCENTER,
    COACHING: AgencyKind.COACHING_PROVIDER,
    CLINIC: AgencyKind.PSYCHIATRIC_CLINIC,
    EMPLOYMENT_AGENCY: AgencyKind.EMPLOYMENT_AGENCY,
    DRV: AgencyKind.REHABILITATION_AGENCY,
    CHAMBER: AgencyKind.CHAMBER,
    INTEGRATION_OFFICE: AgencyKind.INTEGRATION_OFFICE,
    OUTSIDER: AgencyKind.COACHING_PROVIDER,
}


def at(days: float = 0, hours: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours)


def act(
    agency: str,
    days: float = 0,
    *,
    actor: str | None = None,
    recorded_days: float | None = None,
) -> Act:
    """An act as the service builds it: both clocks (recorded when it happened unless
    ``recorded_days`` says otherwise) and the registry's kinds."""
    recorded = at(days if recorded_days is None else recorded_days)
    return Act(agency, actor or f"user@{agency}", at(days), recorded_at=recorded, kinds=KINDS)


def open_case(
    agency: str = JOBCENTER,
    *,
    programme: str = PROGRAMME,
    days: float = 0,
    **kwargs: Any,
) -> Case:
    kwargs.setdefault("participant", {"pseudonym": "P-0001"})
    return Case.open(uuid4(), act(agency, days), POLICY, programme=programme, **kwargs)


def offer(
    case: Case,
    *,
    sender: str = JOBCENTER,
    receiver: str = COACHING,
    kind: HandoverKind = HandoverKind.ASSIGNMENT,
    categories: Sequence[DataCategory] = (),
    days: float = 0,
    policy: DeadlinePolicy = POLICY,
    handover_id: UUID | None = None,
    **kwargs: Any,
) -> UUID:
    handover_id = handover_id or uuid4()
    case.offer_handover(
        act(sender, days),
        policy,
        handover_id=handover_id,
        kind=kind,
        to_agency=receiver,
        data_categories=list(categories),
        **kwargs,
    )
    return handover_id


def forward(
    case: Case,
    handover_id: UUID,
    *,
    by: str,
    to: str,
    days: float = 0,
    policy: DeadlinePolicy = POLICY,
    reason: str = "not competent",
) -> UUID:
    new_id = uuid4()
    case.forward_handover(
        act(by, days),
        policy,
        handover_id=handover_id,
        new_handover_id=new_id,
        to_agency=to,
        reason=reason,
    )
    return new_id


def grant(
    case: Case,
    *,
    by: str | None = None,
    categories: Sequence[DataCategory] = (DataCategory.HEALTH,),
    source: str = JOBCENTER,
    recipients: Sequence[str] = (COACHING,),
    valid_from: datetime = T0,
    valid_until: datetime | None = None,
    days: float = 0,
    consent_id: str | None = None,
) -> str:
    """A consent recorded by its source agency (unless ``by`` names another, as a
    forgery would)."""
    consent_id = consent_id or f"consent-{uuid4().hex[:8]}"
    case.grant_consent(
        act(by or source, days),
        consent_id=consent_id,
        categories=list(categories),
        source_agency=source,
        recipients=list(recipients),
        valid_from=valid_from,
        valid_until=valid_until,
    )
    return consent_id


# Who sends and receives each handover kind under DOMAIN.md's default roles (POLICY).
RIGHTFUL: dict[HandoverKind, tuple[str, str]] = {
    HandoverKind.ASSIGNMENT: (JOBCENTER, COACHING),
    HandoverKind.DISCHARGE: (CLINIC, JOBCENTER),
    HandoverKind.REHAB_APPLICATION: (JOBCENTER, DRV),
    HandoverKind.PLACEMENT_SUPPORT: (JOBCENTER, CHAMBER),
    HandoverKind.RETURN: (COACHING, JOBCENTER),
}


def rightful_offer(
    kind: HandoverKind, *, days: float = 0, policy: DeadlinePolicy = POLICY, **kwargs: Any
) -> tuple[Case, UUID]:
    """A case with one handover of ``kind`` offered between the agencies of
    ``RIGHTFUL``: a discharge comes from the clinic that opened the case; a return
    from a coaching provider that takes part through an (offered) assignment."""
    sender, receiver = RIGHTFUL[kind]
    case = open_case(CLINIC if kind is HandoverKind.DISCHARGE else JOBCENTER)
    if kind is HandoverKind.RETURN:
        offer(case, sender=JOBCENTER, receiver=COACHING)
    handover_id = offer(
        case, sender=sender, receiver=receiver, kind=kind, days=days, policy=policy, **kwargs
    )
    return case, handover_id


def active_case() -> tuple[Case, UUID]:
    """A case whose assignment the coaching provider accepted and whose agreement is
    signed; returns the case and the assignment handover id."""
    case = open_case()
    assignment = offer(case)
    case.accept_handover(act(COACHING, 1), POLICY, handover_id=assignment)
    case.sign_agreement(act(COACHING, 2))
    return case, assignment


def replay(events: Iterable[Any]) -> Case:
    rebuilt: Any = None
    for event in events:
        rebuilt = event.mutate(rebuilt)
    assert isinstance(rebuilt, Case)
    return rebuilt


def assert_replays_equal(case: Case, events: Sequence[Any] | None = None) -> Case:
    """Replaying the case's (pending) events rebuilds an equal state."""
    events = list(case.collect_events()) if events is None else list(events)
    rebuilt = replay(events)
    assert rebuilt.id == case.id
    assert rebuilt.version == case.version
    assert rebuilt.stage == case.stage
    assert rebuilt.lead_agency == case.lead_agency
    assert rebuilt.outcome == case.outcome
    assert rebuilt.participant == case.participant
    assert rebuilt.handovers == case.handovers
    assert {h: x.state for h, x in rebuilt.handovers.items()} == {
        h: x.state for h, x in case.handovers.items()
    }
    assert rebuilt.consents == case.consents
    assert rebuilt.appointments == case.appointments
    assert rebuilt.appointments_scheduled_at == case.appointments_scheduled_at
    assert rebuilt.measures == case.measures
    assert rebuilt.coach == case.coach
    assert rebuilt.agreement_signed_at == case.agreement_signed_at
    assert rebuilt.assignment_ends_at == case.assignment_ends_at
    assert rebuilt.employment == case.employment
    assert rebuilt.erased_at == case.erased_at
    assert rebuilt.last_activity_at == case.last_activity_at
    return rebuilt


@contextmanager
def raises_domain(error: type[DomainError], code: str) -> Iterator[pytest.ExceptionInfo[Any]]:
    """``pytest.raises`` for exactly this domain error, also pinning its stable code.

    Use as ``with raises_domain(NotReceiver, "not_receiver"): ...``.
    """
    with pytest.raises(error) as info:
        yield info
    assert type(info.value) is error, f"expected {error.__name__}, got {info.value!r}"
    assert info.value.code == code
