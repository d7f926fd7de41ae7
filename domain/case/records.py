"""What a case records besides handovers and consents: appointments, measures,
notes and employment (plain values; their rules are the aggregate's guards)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain.values import AppointmentKind, AppointmentState, DataCategory, EmploymentKind


@dataclass
class Appointment:
    appointment_id: UUID
    kind: AppointmentKind
    at: datetime
    scheduled_at: datetime | None = None
    state: AppointmentState = AppointmentState.SCHEDULED


@dataclass
class Measure:
    measure_id: UUID
    kind: str
    title: str
    started_at: datetime
    ended_at: datetime | None = None
    result: str | None = None


@dataclass
class Note:
    category: DataCategory
    text: str
    agency: str
    at: datetime


@dataclass
class Employment:
    employer: str
    kind: EmploymentKind
    start_date: str
