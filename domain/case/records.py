"""What a case holds of its records besides handovers and consents: measures and
employment (plain values; their rules are the aggregate's guards).

Appointments are held as their state alone and notes not at all (``state.CaseState``):
their details are the events', which the views read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.values import EmploymentKind


@dataclass
class Measure:
    measure_id: UUID
    kind: str
    title: str
    started_at: datetime
    ended_at: datetime | None = None
    result: str | None = None


@dataclass
class Employment:
    employer: str
    kind: EmploymentKind
    start_date: str
