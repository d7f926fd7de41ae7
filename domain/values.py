"""Vocabulary of the hub: the closed sets DOMAIN.md names, as string enums.

Values are stored in events as plain strings, so renaming a member's value would
break stored history: add members, never rename them.
"""

from __future__ import annotations

from enum import StrEnum


class AgencyKind(StrEnum):
    JOBCENTER = "jobcenter"
    EMPLOYMENT_AGENCY = "employment_agency"
    PSYCHIATRIC_CLINIC = "psychiatric_clinic"
    REHABILITATION_AGENCY = "rehabilitation_agency"
    COACHING_PROVIDER = "coaching_provider"
    INTEGRATION_OFFICE = "integration_office"
    CHAMBER = "chamber"


class Stage(StrEnum):
    OPENED = "opened"
    ACTIVE = "active"
    EMPLOYED = "employed"
    AFTERCARE = "aftercare"
    CLOSED = "closed"


class Outcome(StrEnum):
    EMPLOYED = "employed"
    TRAINING = "training"
    TRANSFERRED = "transferred"
    DROPPED_OUT = "dropped_out"
    MOVED_AWAY = "moved_away"
    INCAPACITY = "incapacity"
    DECEASED = "deceased"
    OTHER = "other"


class HandoverKind(StrEnum):
    ASSIGNMENT = "assignment"
    DISCHARGE = "discharge"
    REHAB_APPLICATION = "rehab_application"
    PLACEMENT_SUPPORT = "placement_support"
    RETURN = "return"


class HandoverState(StrEnum):
    OFFERED = "offered"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    FORWARDED = "forwarded"
    WITHDRAWN = "withdrawn"
    COMPLETED = "completed"


class DataCategory(StrEnum):
    IDENTITY = "identity"
    CONTACT = "contact"
    HEALTH = "health"
    BENEFITS = "benefits"
    EMPLOYMENT_HISTORY = "employment_history"
    ASSESSMENT = "assessment"
    PLAN = "plan"
    NOTES = "notes"


class AppointmentKind(StrEnum):
    INFORMATION = "information"
    FIRST_INTERVIEW = "first_interview"
    COACHING = "coaching"
    OTHER = "other"


class AppointmentState(StrEnum):
    SCHEDULED = "scheduled"
    HELD = "held"
    MISSED = "missed"


class EmploymentKind(StrEnum):
    EMPLOYMENT = "employment"
    TRAINING = "training"
    BUDGET_FOR_WORK = "budget_for_work"
    OTHER = "other"


class RehabOutcome(StrEnum):
    """A § 14 SGB IX decision."""

    GRANTED = "granted"
    REFUSED = "refused"
    PARTLY_GRANTED = "partly_granted"
