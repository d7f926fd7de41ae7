"""The case's stages and lead (DOMAIN "The case", rule 6): one definition, used by the
aggregate and by the case document the views fold."""

from __future__ import annotations

from datetime import datetime

from domain.policy import DeadlinePolicy
from domain.values import AgencyKind, HandoverKind, Stage


def stage_after_activation_check(
    stage: Stage, assignment_started_at: object | None, agreement_signed_at: object | None
) -> Stage:
    """``active`` once a coaching provider accepted and the agreement is signed."""
    if stage is Stage.OPENED and assignment_started_at is not None and agreement_signed_at:
        return Stage.ACTIVE
    return stage


def lead_after_acceptance(
    lead: str, kind: str, from_agency: str, to_agency: str, moves_lead: bool | None
) -> str:
    """The lead after a handover is accepted. ``moves_lead`` is what policy said when
    it was accepted (recorded in the event); ``None`` in events stored before roles
    were policy, when every accepted discharge moved the lead."""
    if moves_lead is None:
        return to_agency if kind == HandoverKind.DISCHARGE.value else lead
    if moves_lead and from_agency == lead:
        return to_agency
    return lead


def moves_lead(
    policy: DeadlinePolicy, kind: HandoverKind, receiver_kind: AgencyKind | None
) -> bool:
    return kind in policy.roles.lead_moving and receiver_kind in policy.roles.may_lead


EMPLOYMENT_STAGES = frozenset({Stage.OPENED, Stage.ACTIVE})


def add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, _days_in_month(year, month))
    return moment.replace(year=year, month=month, day=day)


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days
