"""What a case records besides handovers and consents: coach, appointments, agreement,
plan, measures, assignment, employment, aftercare and notes (the values: ``records.py``;
of appointments the case keeps only their state, of notes nothing: ``state.CaseState``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING
from uuid import UUID

from domain import errors
from domain.case.act import Act, require_in_range, require_timezone
from domain.case.lifecycle import EMPLOYMENT_STAGES, stage_after_activation_check
from domain.case.records import Employment, Measure
from domain.case.state import CaseState, Event, who
from domain.values import (
    AppointmentKind,
    AppointmentState,
    DataCategory,
    EmploymentKind,
    HandoverKind,
    HandoverState,
    Stage,
)

if TYPE_CHECKING:
    from domain.case import Case


class RecordCommands(CaseState):
    """The casework commands of the involved agencies."""

    # ---- coaching ------------------------------------------------------------

    def assign_coach(self, act: Act, *, coach: str) -> None:
        self._check_involved(act)
        coaching_agencies = {
            h.to_agency
            for h in self.handovers.values()
            if h.kind is HandoverKind.ASSIGNMENT
            and h.state in (HandoverState.ACCEPTED, HandoverState.COMPLETED)
        }
        if act.agency != self.lead_agency and act.agency not in coaching_agencies:
            raise errors.NotLeadAgency(
                "a coach is assigned by the lead agency or the coaching provider "
                "that accepted the assignment"
            )
        self.trigger_event(CoachAssigned, coach=coach, **who(act))

    def schedule_appointment(
        self, act: Act, *, appointment_id: UUID, kind: AppointmentKind, at: datetime
    ) -> None:
        self._check_involved(act)
        require_timezone(at)
        require_in_range(at)
        if appointment_id.hex in self.appointments:
            raise errors.AppointmentExists(f"appointment {appointment_id} already exists")
        self.trigger_event(
            AppointmentScheduled,
            appointment_id=appointment_id,
            kind=AppointmentKind(kind).value,
            at=at,
            **who(act),
        )

    def _scheduled_appointment(self, act: Act, appointment_id: UUID) -> None:
        self._check_involved(act)
        state = self.appointments.get(appointment_id.hex)
        if state is None:
            raise errors.AppointmentUnknown(
                f"appointment {appointment_id} is not part of this case"
            )
        if state is not AppointmentState.SCHEDULED:
            raise errors.InvalidTransition(f"appointment {appointment_id} is already {state.value}")
        act.not_before(
            self.appointments_scheduled_at.get(appointment_id.hex),
            f"the scheduling of {appointment_id}",
        )

    def record_appointment_held(self, act: Act, *, appointment_id: UUID) -> None:
        self._scheduled_appointment(act, appointment_id)
        self.trigger_event(AppointmentHeld, appointment_id=appointment_id, **who(act))

    def record_appointment_missed(self, act: Act, *, appointment_id: UUID) -> None:
        self._scheduled_appointment(act, appointment_id)
        self.trigger_event(AppointmentMissed, appointment_id=appointment_id, **who(act))

    def sign_agreement(self, act: Act) -> None:
        self._check_involved(act)
        if self.agreement_signed_at is not None:
            raise errors.AlreadyDone("the participation agreement is already signed")
        self.trigger_event(AgreementSigned, **who(act))

    def agree_plan(self, act: Act, *, goals: Sequence[str], modules: Sequence[str]) -> None:
        self._check_involved(act)
        if self.plan_goals is not None:
            raise errors.AlreadyDone("a plan is already agreed; send plan.updated")
        self.trigger_event(PlanAgreed, goals=list(goals), modules=list(modules), **who(act))

    def update_plan(self, act: Act, *, goals: Sequence[str], modules: Sequence[str]) -> None:
        self._check_involved(act)
        if self.plan_goals is None:
            raise errors.PlanMissing("no plan is agreed yet; send plan.agreed first")
        self.trigger_event(PlanUpdated, goals=list(goals), modules=list(modules), **who(act))

    def start_measure(self, act: Act, *, measure_id: UUID, kind: str, title: str) -> None:
        self._check_involved(act)
        if measure_id in self.measures:
            raise errors.MeasureExists(f"measure {measure_id} already exists")
        self.trigger_event(
            MeasureStarted, measure_id=measure_id, kind=kind, title=title, **who(act)
        )

    def end_measure(self, act: Act, *, measure_id: UUID, result: str | None = None) -> None:
        self._check_involved(act)
        measure = self.measures.get(measure_id)
        if measure is None:
            raise errors.MeasureUnknown(f"measure {measure_id} is not part of this case")
        if measure.ended_at is not None:
            raise errors.InvalidTransition(f"measure {measure_id} has already ended")
        act.not_before(measure.started_at, f"the start of measure {measure_id}")
        self.trigger_event(MeasureEnded, measure_id=measure_id, result=result, **who(act))

    def extend_assignment(self, act: Act, *, months: int, reason: str) -> None:
        self._check_lead(act)
        if not 1 <= months <= 24:
            raise errors.InvalidValue("an extension is between 1 and 24 months")
        self.trigger_event(AssignmentExtended, months=months, reason=reason, **who(act))

    # ---- employment and aftercare --------------------------------------------

    def start_employment(
        self, act: Act, *, employer: str, kind: EmploymentKind, start_date: str
    ) -> None:
        self._check_involved(act)
        if self.stage not in EMPLOYMENT_STAGES:
            raise errors.InvalidTransition(f"employment cannot start in stage {self.stage.value}")
        if date.fromisoformat(start_date) < self.opened_at.date():
            raise errors.OccurredTooEarly("start_date lies before the opening of the case")
        self.trigger_event(
            EmploymentStarted,
            employer=employer,
            kind=EmploymentKind(kind).value,
            start_date=start_date,
            **who(act),
        )

    def start_aftercare(self, act: Act, *, until: datetime | None = None) -> None:
        self._check_involved(act)
        require_timezone(until)
        require_in_range(until)
        if self.stage is not Stage.EMPLOYED:
            raise errors.InvalidTransition(
                f"aftercare starts after employment, not in stage {self.stage.value}"
            )
        self.trigger_event(AftercareStarted, until=until, **who(act))

    def end_aftercare(self, act: Act) -> None:
        self._check_involved(act)
        if self.stage is not Stage.AFTERCARE or self.aftercare_ended_at is not None:
            raise errors.InvalidTransition("no aftercare is running")
        self.trigger_event(AftercareEnded, **who(act))

    # ---- notes ---------------------------------------------------------------

    def add_note(self, act: Act, *, text: str, category: DataCategory) -> None:
        self._check_involved(act)
        self.trigger_event(NoteAdded, text=text, category=DataCategory(category).value, **who(act))


class CoachAssigned(Event):
    coach: str

    def apply_to(self, case: Case) -> None:
        case.coach = self.coach
        case.coach_agency = self.agency


class AppointmentScheduled(Event):
    appointment_id: UUID
    kind: str
    at: datetime

    def apply_to(self, case: Case) -> None:
        key = self.appointment_id.hex
        case.appointments[key] = AppointmentState.SCHEDULED
        case.appointments_scheduled_at[key] = self.occurred_at


class AppointmentHeld(Event):
    appointment_id: UUID

    def apply_to(self, case: Case) -> None:
        _settle(case, self.appointment_id, AppointmentState.HELD)


class AppointmentMissed(Event):
    appointment_id: UUID

    def apply_to(self, case: Case) -> None:
        _settle(case, self.appointment_id, AppointmentState.MISSED)


def _settle(case: Case, appointment_id: UUID, state: AppointmentState) -> None:
    key = appointment_id.hex
    case.appointments[key] = state
    case.appointments_scheduled_at.pop(key, None)


class AgreementSigned(Event):
    def apply_to(self, case: Case) -> None:
        case.agreement_signed_at = self.occurred_at
        case.stage = stage_after_activation_check(
            case.stage, case.assignment_started_at, case.agreement_signed_at
        )


class PlanAgreed(Event):
    goals: list[str]
    modules: list[str]

    def apply_to(self, case: Case) -> None:
        case.plan_goals, case.plan_modules = tuple(self.goals), tuple(self.modules)


class PlanUpdated(Event):
    goals: list[str]
    modules: list[str]

    def apply_to(self, case: Case) -> None:
        case.plan_goals, case.plan_modules = tuple(self.goals), tuple(self.modules)


class MeasureStarted(Event):
    measure_id: UUID
    kind: str
    title: str

    def apply_to(self, case: Case) -> None:
        case.measures[self.measure_id] = Measure(
            measure_id=self.measure_id,
            kind=self.kind,
            title=self.title,
            started_at=self.occurred_at,
        )


class MeasureEnded(Event):
    measure_id: UUID
    result: str | None

    def apply_to(self, case: Case) -> None:
        measure = case.measures[self.measure_id]
        measure.ended_at = self.occurred_at
        measure.result = self.result


class AssignmentExtended(Event):
    months: int
    reason: str

    def apply_to(self, case: Case) -> None:
        case.extensions.append(self.months)


class EmploymentStarted(Event):
    employer: str
    kind: str
    start_date: str

    def apply_to(self, case: Case) -> None:
        case.employment = Employment(
            employer=self.employer, kind=EmploymentKind(self.kind), start_date=self.start_date
        )
        case.stage = Stage.EMPLOYED


class AftercareStarted(Event):
    until: datetime | None

    def apply_to(self, case: Case) -> None:
        case.aftercare_until = self.until
        case.stage = Stage.AFTERCARE


class AftercareEnded(Event):
    def apply_to(self, case: Case) -> None:
        case.aftercare_ended_at = self.occurred_at


class NoteAdded(Event):
    """Only moves the case's last activity: no rule reads a note, so the case does not
    keep them (the views do, from this event)."""

    text: str
    category: str
