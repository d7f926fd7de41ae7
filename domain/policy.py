"""Programme policy as data: deadlines, roles and clock windows, never constants in code.

Defaults follow DOMAIN.md's tables and § 14 SGB IX. A programme may override any
entry; ``PolicyBook.from_mapping`` reads the JSON form used by settings
(``HUB_DEADLINE_POLICY_FILE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from domain.values import AgencyKind, HandoverKind

K = AgencyKind


@dataclass(frozen=True)
class HandoverDeadlines:
    """Days the receiver has to accept, and (where the law sets one) to decide."""

    accept_days: int
    decide_days: int | None = None


DEFAULT_HANDOVER_DEADLINES: Mapping[HandoverKind, HandoverDeadlines] = {
    HandoverKind.ASSIGNMENT: HandoverDeadlines(accept_days=7),
    HandoverKind.DISCHARGE: HandoverDeadlines(accept_days=7),
    # § 14 Abs. 1: competence within two weeks; Abs. 2: decision within three weeks
    # of receipt (also at the second agency, counted from its own receipt).
    HandoverKind.REHAB_APPLICATION: HandoverDeadlines(accept_days=14, decide_days=21),
    HandoverKind.PLACEMENT_SUPPORT: HandoverDeadlines(accept_days=14),
    HandoverKind.RETURN: HandoverDeadlines(accept_days=7),
}


@dataclass(frozen=True)
class HandoverRoles:
    """Which agency kinds may send and receive one handover kind. ``to_lead_only``:
    the receiver must be the case's current lead (a ``return``)."""

    senders: frozenset[AgencyKind]
    receivers: frozenset[AgencyKind]
    to_lead_only: bool = False


_ALL_KINDS = frozenset(AgencyKind)
_LEADS = frozenset({K.JOBCENTER, K.EMPLOYMENT_AGENCY})

DEFAULT_HANDOVER_ROLES: Mapping[HandoverKind, HandoverRoles] = {
    HandoverKind.ASSIGNMENT: HandoverRoles(_LEADS, frozenset({K.COACHING_PROVIDER})),
    # Entlassmanagement: to the Jobcenter (or the employment agency for SGB III
    # clients), or to a programme's coordination point (KoPrA).
    HandoverKind.DISCHARGE: HandoverRoles(
        frozenset({K.PSYCHIATRIC_CLINIC}), _LEADS | {K.COACHING_PROVIDER}
    ),
    HandoverKind.REHAB_APPLICATION: HandoverRoles(
        _LEADS | {K.PSYCHIATRIC_CLINIC}, frozenset({K.REHABILITATION_AGENCY, K.EMPLOYMENT_AGENCY})
    ),
    # The coach acquires placements; in G-A-L the Jobcenter asks the chamber itself.
    HandoverKind.PLACEMENT_SUPPORT: HandoverRoles(
        _LEADS | {K.COACHING_PROVIDER}, frozenset({K.CHAMBER, K.INTEGRATION_OFFICE})
    ),
    HandoverKind.RETURN: HandoverRoles(_ALL_KINDS, _LEADS, to_lead_only=True),
}


@dataclass(frozen=True)
class RolePolicy:
    """DOMAIN rule 6: roles follow agency kinds."""

    # Kinds that may open a case (and so lead it until a lead-moving handover).
    may_open: frozenset[AgencyKind] = _LEADS | {K.PSYCHIATRIC_CLINIC}
    # Kinds that may become lead by transfer or by a lead-moving handover.
    may_lead: frozenset[AgencyKind] = _LEADS
    handovers: Mapping[HandoverKind, HandoverRoles] = field(
        default_factory=lambda: dict(DEFAULT_HANDOVER_ROLES)
    )
    # Accepting these moves the lead to the receiver, when the sender is the lead
    # (G-A-L: the clinic that opened the case discharges to the Jobcenter).
    lead_moving: frozenset[HandoverKind] = frozenset({HandoverKind.DISCHARGE})
    # § 14 Abs. 1 S. 2 SGB IX: forwarded only to a rehabilitation agency.
    forward_to: frozenset[AgencyKind] = frozenset({K.REHABILITATION_AGENCY, K.EMPLOYMENT_AGENCY})

    def with_overrides(self, entry: Mapping[str, Any]) -> RolePolicy:
        handovers = dict(self.handovers)
        for kind_name, roles in (entry.get("handovers") or {}).items():
            kind = HandoverKind(kind_name)
            update: dict[str, Any] = {}
            for side in ("senders", "receivers"):
                if side in roles:
                    update[side] = _kinds(roles[side])
            if "to_lead_only" in roles:
                update["to_lead_only"] = bool(roles["to_lead_only"])
            handovers[kind] = replace(handovers[kind], **update)
        return RolePolicy(
            may_open=_kinds(entry["may_open"]) if "may_open" in entry else self.may_open,
            may_lead=_kinds(entry["may_lead"]) if "may_lead" in entry else self.may_lead,
            handovers=handovers,
            lead_moving=frozenset(HandoverKind(k) for k in entry["lead_moving"])
            if "lead_moving" in entry
            else self.lead_moving,
            forward_to=_kinds(entry["forward_to"]) if "forward_to" in entry else self.forward_to,
        )


def _kinds(names: Iterable[str]) -> frozenset[AgencyKind]:
    return frozenset(AgencyKind(n) for n in names)


@dataclass(frozen=True)
class ClockPolicy:
    """DOMAIN rule 4: the hub's clock decides."""

    # How far an agency's clock may run ahead of the hub's.
    future_skew: timedelta = timedelta(minutes=5)
    # Recorded later than this after it happened: a late entry (marked in history;
    # a late § 14 decision counts on the hub's clock unless a document supports it).
    late_after: timedelta = timedelta(hours=24)


@dataclass(frozen=True)
class DeadlinePolicy:
    """One programme's policy. (The name is historic: it holds roles and clock
    windows beside the deadlines.)"""

    handovers: Mapping[HandoverKind, HandoverDeadlines] = field(
        default_factory=lambda: dict(DEFAULT_HANDOVER_DEADLINES)
    )
    information_meeting_days: int = 7
    # § 14 Abs. 1: the first agency forwards within two weeks of receipt.
    forward_days: int = 14
    # § 14 Abs. 2 S. 3: decision two weeks after an expert opinion is received.
    decide_after_opinion_days: int = 14
    roles: RolePolicy = field(default_factory=RolePolicy)
    clock: ClockPolicy = field(default_factory=ClockPolicy)
    # How long a closed case's personal data is kept before it may be erased
    # without an Art. 17 ground. One year by default: programmes set their own
    # (records schedules differ by agency), in ``retention_days``.
    retention_days: int = 365

    @property
    def retention(self) -> timedelta:
        return timedelta(days=self.retention_days)

    def accept_due(self, kind: HandoverKind, received_at: datetime) -> datetime:
        return received_at + timedelta(days=self.handovers[kind].accept_days)

    def decide_due(self, kind: HandoverKind, received_at: datetime) -> datetime | None:
        days = self.handovers[kind].decide_days
        return None if days is None else received_at + timedelta(days=days)

    def forward_due(self, received_at: datetime) -> datetime:
        return received_at + timedelta(days=self.forward_days)

    def decide_due_after_opinion(self, opinion_received_at: datetime) -> datetime:
        return opinion_received_at + timedelta(days=self.decide_after_opinion_days)

    def with_overrides(self, overrides: Mapping[str, Any]) -> DeadlinePolicy:
        handovers = dict(self.handovers)
        for kind_name, entry in (overrides.get("handovers") or {}).items():
            kind = HandoverKind(kind_name)
            handovers[kind] = replace(handovers[kind], **entry)
        clock = overrides.get("clock") or {}
        return DeadlinePolicy(
            handovers=handovers,
            information_meeting_days=int(
                overrides.get("information_meeting_days", self.information_meeting_days)
            ),
            forward_days=int(overrides.get("forward_days", self.forward_days)),
            decide_after_opinion_days=int(
                overrides.get("decide_after_opinion_days", self.decide_after_opinion_days)
            ),
            roles=self.roles.with_overrides(overrides.get("roles") or {}),
            retention_days=int(overrides.get("retention_days", self.retention_days)),
            clock=ClockPolicy(
                future_skew=timedelta(
                    seconds=float(
                        clock.get("future_skew_seconds", self.clock.future_skew.total_seconds())
                    )
                ),
                late_after=timedelta(
                    hours=float(
                        clock.get("late_after_hours", self.clock.late_after.total_seconds() / 3600)
                    )
                ),
            ),
        )


ProgrammePolicy = DeadlinePolicy


@dataclass(frozen=True)
class PolicyBook:
    """The default policy plus per-programme overrides."""

    default: DeadlinePolicy = field(default_factory=DeadlinePolicy)
    programmes: Mapping[str, DeadlinePolicy] = field(default_factory=dict)

    def for_programme(self, programme: str) -> DeadlinePolicy:
        return self.programmes.get(programme, self.default)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> PolicyBook:
        """``{"default": {...}, "programmes": {"name": {...}}}``, each entry of the
        form ``{"handovers": {"assignment": {"accept_days": 5}},
        "information_meeting_days": 7, "forward_days": 14,
        "roles": {"handovers": {"return": {"senders": ["chamber"]}}, "may_lead": [...]},
        "clock": {"future_skew_seconds": 300, "late_after_hours": 24}}``."""
        default = DeadlinePolicy().with_overrides(data.get("default") or {})
        programmes = {
            name: default.with_overrides(entry)
            for name, entry in (data.get("programmes") or {}).items()
        }
        return cls(default=default, programmes=programmes)
