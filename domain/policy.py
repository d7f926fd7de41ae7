"""Deadline policy as data: per programme and handover kind, never constants in code.

Defaults follow DOMAIN.md's handover table and § 14 SGB IX. A programme may
override any entry; ``PolicyBook.from_mapping`` reads the JSON/TOML-shaped form
used by settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from domain.values import HandoverKind


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
class DeadlinePolicy:
    handovers: Mapping[HandoverKind, HandoverDeadlines] = field(
        default_factory=lambda: dict(DEFAULT_HANDOVER_DEADLINES)
    )
    information_meeting_days: int = 7

    def accept_due(self, kind: HandoverKind, received_at: datetime) -> datetime:
        return received_at + timedelta(days=self.handovers[kind].accept_days)

    def decide_due(self, kind: HandoverKind, received_at: datetime) -> datetime | None:
        days = self.handovers[kind].decide_days
        return None if days is None else received_at + timedelta(days=days)

    def with_overrides(self, overrides: Mapping[str, Any]) -> DeadlinePolicy:
        handovers = dict(self.handovers)
        for kind_name, entry in (overrides.get("handovers") or {}).items():
            kind = HandoverKind(kind_name)
            handovers[kind] = replace(handovers[kind], **entry)
        days = overrides.get("information_meeting_days", self.information_meeting_days)
        return DeadlinePolicy(handovers=handovers, information_meeting_days=int(days))


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
        "information_meeting_days": 7}``."""
        default = DeadlinePolicy().with_overrides(data.get("default") or {})
        programmes = {
            name: default.with_overrides(entry)
            for name, entry in (data.get("programmes") or {}).items()
        }
        return cls(default=default, programmes=programmes)
