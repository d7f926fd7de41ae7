"""The ``Case`` aggregate: one participant in one programme.

The case is the consistency boundary: its handovers, consents, plan,
appointments, measures and lifecycle live here, so the consent rule and the
§ 14 SGB IX forwarding rule are checked in one place. Public methods are
commands (they check the rules and raise ``DomainError``); the ``_``-prefixed
methods decorated with ``@event`` are the facts they record and how each fact
changes the state on replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import errors
from domain.policy import DeadlinePolicy
from domain.values import (
    AppointmentKind,
    AppointmentState,
    DataCategory,
    EmploymentKind,
    HandoverKind,
    HandoverState,
    Outcome,
    Stage,
)

STATUTORY_TASK = "statutory_task"
PRIORITIES = ("normal", "urgent")


@dataclass(frozen=True)
class Act:
    """Who did something and when it happened at their agency (DOMAIN rule 4)."""

    agency: str
    actor: str
    occurred_at: datetime

    def __post_init__(self) -> None:
        if self.occurred_at.tzinfo is None:
            raise errors.InvalidValue("occurred_at must carry a timezone")


@dataclass
class Handover:
    handover_id: UUID
    kind: HandoverKind
    from_agency: str
    to_agency: str
    data_categories: tuple[DataCategory, ...]
    offered_at: datetime
    due_at: datetime
    decide_due_at: datetime | None
    legal_basis: tuple[str, ...]
    reason: str | None = None
    state: HandoverState = HandoverState.OFFERED
    forwarded_from: UUID | None = None
    forwarded_to: UUID | None = None
    chain_origin_agency: str = ""
    decided_at: datetime | None = None
    completed_at: datetime | None = None
    priority: str = "normal"

    @property
    def is_open(self) -> bool:
        return self.state in (HandoverState.OFFERED, HandoverState.ACCEPTED)


@dataclass
class Consent:
    consent_id: str
    categories: frozenset[DataCategory]
    source_agency: str
    recipients: frozenset[str]
    valid_from: datetime
    valid_until: datetime | None
    granted_by: str
    revoked_at: datetime | None = None

    def covers(
        self, category: DataCategory, sources: Iterable[str], recipient: str, at: datetime
    ) -> bool:
        return (
            self.revoked_at is None
            and category in self.categories
            and self.source_agency in sources
            and recipient in self.recipients
            and self.valid_from <= at
            and (self.valid_until is None or at < self.valid_until)
        )


@dataclass
class Appointment:
    appointment_id: UUID
    kind: AppointmentKind
    at: datetime
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


class Case(Aggregate):
    """A participant's case in one programme."""

    @event("CaseOpened")
    def __init__(
        self,
        id: UUID,  # noqa: A002 - the library takes the aggregate id by this name
        programme: str,
        site: str | None,
        assignment_months: int,
        participant: dict[str, Any],
        agency: str,
        actor: str,
        occurred_at: datetime,
    ) -> None:
        self.programme = programme
        self.site = site
        self.assignment_months = assignment_months
        self.participant = dict(participant)  # never share the event's dict
        self.opened_by = agency
        self.lead_agency = agency
        self.opened_at = occurred_at
        self.stage = Stage.OPENED
        self.outcome: Outcome | None = None
        self.closed_at: datetime | None = None
        self.handovers: dict[UUID, Handover] = {}
        self.consents: dict[str, Consent] = {}
        self.appointments: dict[UUID, Appointment] = {}
        self.measures: dict[UUID, Measure] = {}
        self.notes: list[Note] = []
        self.coach: str | None = None
        self.coach_agency: str | None = None
        self.agreement_signed_at: datetime | None = None
        self.plan_goals: tuple[str, ...] | None = None
        self.plan_modules: tuple[str, ...] = ()
        self.assignment_started_at: datetime | None = None
        self.extensions: list[int] = []
        self.employment: Employment | None = None
        self.aftercare_until: datetime | None = None
        self.aftercare_ended_at: datetime | None = None
        self.erased_at: datetime | None = None
        self.last_activity_at = occurred_at

    @classmethod
    def open(
        cls,
        case_id: UUID,
        act: Act,
        *,
        programme: str,
        site: str | None = None,
        assignment_months: int = 12,
        participant: dict[str, Any],
    ) -> Case:
        if not 1 <= assignment_months <= 36:
            raise errors.InvalidValue("assignment_months must be between 1 and 36")
        if not participant.get("pseudonym"):
            raise errors.InvalidValue("participant.pseudonym is required")
        return cls(
            id=case_id,
            programme=programme,
            site=site,
            assignment_months=assignment_months,
            participant=dict(participant),
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    # ---- derived facts -------------------------------------------------------

    @property
    def involved_agencies(self) -> set[str]:
        involved = {self.opened_by, self.lead_agency}
        for handover in self.handovers.values():
            involved.update((handover.from_agency, handover.to_agency))
        return involved

    @property
    def is_closed(self) -> bool:
        return self.stage is Stage.CLOSED

    @property
    def assignment_ends_at(self) -> datetime | None:
        if self.assignment_started_at is None:
            return None
        months = self.assignment_months + sum(self.extensions)
        return _add_months(self.assignment_started_at, months)

    def handover(self, handover_id: UUID) -> Handover:
        try:
            return self.handovers[handover_id]
        except KeyError:
            raise errors.HandoverUnknown(
                f"handover {handover_id} is not part of this case"
            ) from None

    # ---- guards --------------------------------------------------------------

    def _check_open(self) -> None:
        if self.is_closed:
            raise errors.CaseClosed("the case is closed and accepts no further events")

    def _check_involved(self, act: Act) -> None:
        self._check_open()
        if act.agency not in self.involved_agencies:
            raise errors.NotInvolved(f"agency {act.agency} is not involved in this case")

    def _check_lead(self, act: Act) -> None:
        self._check_open()
        if act.agency != self.lead_agency:
            raise errors.NotLeadAgency(f"only the lead agency {self.lead_agency} may do this")

    def _legal_basis(
        self,
        categories: Sequence[DataCategory],
        sources: Iterable[str],
        recipient: str,
        at: datetime,
    ) -> tuple[str, ...]:
        """DOMAIN rule 3: every carried category needs a covering, valid consent."""
        if not categories:
            return (STATUTORY_TASK,)
        sources = set(sources)
        basis: set[str] = set()
        missing: list[str] = []
        for category in categories:
            covering = next(
                (
                    c.consent_id
                    for c in self.consents.values()
                    if c.covers(category, sources, recipient, at)
                ),
                None,
            )
            if covering is None:
                missing.append(category.value)
            else:
                basis.add(covering)
        if missing:
            raise errors.ConsentMissing(
                f"no valid consent covers {', '.join(missing)} for agency {recipient}",
                categories=missing,
                recipient=recipient,
            )
        return tuple(sorted(basis))

    # ---- consent ---------------------------------------------------------------

    def grant_consent(
        self,
        act: Act,
        *,
        consent_id: str,
        categories: Sequence[DataCategory],
        source_agency: str,
        recipients: Sequence[str],
        valid_from: datetime,
        valid_until: datetime | None = None,
    ) -> None:
        self._check_involved(act)
        _require_timezone(valid_from, valid_until)
        if consent_id in self.consents:
            raise errors.ConsentExists(f"consent {consent_id} is already recorded")
        if not categories or not recipients:
            raise errors.InvalidValue("a consent names categories and recipients")
        if valid_until is not None and valid_until <= valid_from:
            raise errors.InvalidValue("valid_until must be after valid_from")
        self._consent_granted(
            consent_id=consent_id,
            categories=sorted(DataCategory(c).value for c in set(categories)),
            source_agency=source_agency,
            recipients=sorted(set(recipients)),
            valid_from=valid_from,
            valid_until=valid_until,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("ConsentGranted")
    def _consent_granted(
        self,
        consent_id: str,
        categories: list[str],
        source_agency: str,
        recipients: list[str],
        valid_from: datetime,
        valid_until: datetime | None,
        agency: str,
        actor: str,
        occurred_at: datetime,
    ) -> None:
        self.consents[consent_id] = Consent(
            consent_id=consent_id,
            categories=frozenset(DataCategory(c) for c in categories),
            source_agency=source_agency,
            recipients=frozenset(recipients),
            valid_from=valid_from,
            valid_until=valid_until,
            granted_by=agency,
        )
        self.last_activity_at = occurred_at

    def revoke_consent(self, act: Act, *, consent_id: str) -> None:
        self._check_involved(act)
        consent = self.consents.get(consent_id)
        if consent is None:
            raise errors.ConsentUnknown(f"consent {consent_id} is not part of this case")
        if consent.revoked_at is not None:
            raise errors.InvalidTransition(f"consent {consent_id} is already revoked")
        self._consent_revoked(
            consent_id=consent_id,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("ConsentRevoked")
    def _consent_revoked(
        self, consent_id: str, agency: str, actor: str, occurred_at: datetime
    ) -> None:
        self.consents[consent_id].revoked_at = occurred_at
        self.last_activity_at = occurred_at

    # ---- handovers -------------------------------------------------------------

    def offer_handover(
        self,
        act: Act,
        policy: DeadlinePolicy,
        *,
        handover_id: UUID,
        kind: HandoverKind,
        to_agency: str,
        data_categories: Sequence[DataCategory] = (),
        reason: str | None = None,
        due_at: datetime | None = None,
        priority: str = "normal",
    ) -> None:
        self._check_involved(act)
        _require_timezone(due_at)
        if priority not in PRIORITIES:
            raise errors.InvalidValue(f"priority is one of {', '.join(PRIORITIES)}")
        if handover_id in self.handovers:
            raise errors.HandoverExists(f"handover {handover_id} already exists")
        if to_agency == act.agency:
            raise errors.InvalidRecipient("an agency cannot hand over to itself")
        kind = HandoverKind(kind)
        categories = sorted({DataCategory(c) for c in data_categories})
        basis = self._legal_basis(categories, {act.agency}, to_agency, act.occurred_at)
        self._handover_offered(
            handover_id=handover_id,
            kind=kind.value,
            to_agency=to_agency,
            data_categories=[c.value for c in categories],
            reason=reason,
            due_at=due_at or policy.accept_due(kind, act.occurred_at),
            decide_due_at=policy.decide_due(kind, act.occurred_at),
            legal_basis=list(basis),
            priority=priority,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    class HandoverOffered(Aggregate.Event):
        """Schema v2 added ``priority``; events stored as v1 are read as "normal"."""

        class_version = 2
        handover_id: UUID
        kind: str
        to_agency: str
        data_categories: list[str]
        reason: str | None
        due_at: datetime
        decide_due_at: datetime | None
        legal_basis: list[str]
        priority: str
        agency: str
        actor: str
        occurred_at: datetime

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["priority"] = "normal"

    @event(HandoverOffered)
    def _handover_offered(
        self,
        handover_id: UUID,
        kind: str,
        to_agency: str,
        data_categories: list[str],
        reason: str | None,
        due_at: datetime,
        decide_due_at: datetime | None,
        legal_basis: list[str],
        priority: str,
        agency: str,
        actor: str,
        occurred_at: datetime,
    ) -> None:
        self.handovers[handover_id] = Handover(
            handover_id=handover_id,
            kind=HandoverKind(kind),
            from_agency=agency,
            to_agency=to_agency,
            data_categories=tuple(DataCategory(c) for c in data_categories),
            offered_at=occurred_at,
            due_at=due_at,
            decide_due_at=decide_due_at,
            legal_basis=tuple(legal_basis),
            reason=reason,
            chain_origin_agency=agency,
            priority=priority,
        )
        self.last_activity_at = occurred_at

    def _offered_to_me(self, act: Act, handover_id: UUID, verb: str) -> Handover:
        self._check_open()
        handover = self.handover(handover_id)
        if handover.to_agency != act.agency:
            raise errors.NotReceiver(
                f"only the receiving agency {handover.to_agency} may {verb} handover {handover_id}"
            )
        if handover.state is not HandoverState.OFFERED:
            raise errors.InvalidTransition(
                f"cannot {verb} handover {handover_id}: it is {handover.state.value}"
            )
        return handover

    def accept_handover(self, act: Act, *, handover_id: UUID) -> None:
        self._offered_to_me(act, handover_id, "accept")
        self._handover_accepted(
            handover_id=handover_id,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("HandoverAccepted")
    def _handover_accepted(
        self, handover_id: UUID, agency: str, actor: str, occurred_at: datetime
    ) -> None:
        handover = self.handovers[handover_id]
        handover.state = HandoverState.ACCEPTED
        handover.decided_at = occurred_at
        if handover.kind is HandoverKind.DISCHARGE:
            # The receiving Jobcenter takes the case over as lead (scenario 1).
            self.lead_agency = handover.to_agency
        if handover.kind is HandoverKind.ASSIGNMENT and self.assignment_started_at is None:
            self.assignment_started_at = occurred_at
        self._activate_when_ready()
        self.last_activity_at = occurred_at

    def decline_handover(self, act: Act, *, handover_id: UUID, reason: str) -> None:
        self._offered_to_me(act, handover_id, "decline")
        self._handover_declined(
            handover_id=handover_id,
            reason=reason,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("HandoverDeclined")
    def _handover_declined(
        self, handover_id: UUID, reason: str, agency: str, actor: str, occurred_at: datetime
    ) -> None:
        handover = self.handovers[handover_id]
        handover.state = HandoverState.DECLINED
        handover.decided_at = occurred_at
        handover.reason = reason
        self.last_activity_at = occurred_at

    def forward_handover(
        self,
        act: Act,
        policy: DeadlinePolicy,
        *,
        handover_id: UUID,
        new_handover_id: UUID,
        to_agency: str,
        reason: str,
    ) -> None:
        self._check_open()
        received = self.handover(handover_id)
        # Checked before the state, so the receiver hears the rule, not a state.
        if (
            received.to_agency == act.agency
            and received.kind is HandoverKind.REHAB_APPLICATION
            and received.forwarded_from is not None
        ):
            raise errors.ForwardLimitReached(
                "a rehabilitation application may be forwarded only once; "
                "the second agency must decide (§ 14 SGB IX)"
            )
        handover = self._offered_to_me(act, handover_id, "forward")
        if new_handover_id in self.handovers:
            raise errors.HandoverExists(f"handover {new_handover_id} already exists")
        if to_agency in (act.agency, handover.from_agency):
            raise errors.InvalidRecipient(
                "a handover is forwarded to an agency other than its sender and receiver"
            )
        # The forwarder passes on what it received: consents from it or from the
        # agency that started the chain both cover the forwarded data.
        basis = self._legal_basis(
            handover.data_categories,
            {act.agency, handover.chain_origin_agency},
            to_agency,
            act.occurred_at,
        )
        # § 14 Abs. 2: the next agency's deadlines run from its own receipt.
        self._handover_forwarded(
            handover_id=handover_id,
            new_handover_id=new_handover_id,
            to_agency=to_agency,
            reason=reason,
            due_at=policy.accept_due(handover.kind, act.occurred_at),
            decide_due_at=policy.decide_due(handover.kind, act.occurred_at),
            legal_basis=list(basis),
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("HandoverForwarded")
    def _handover_forwarded(
        self,
        handover_id: UUID,
        new_handover_id: UUID,
        to_agency: str,
        reason: str,
        due_at: datetime,
        decide_due_at: datetime | None,
        legal_basis: list[str],
        agency: str,
        actor: str,
        occurred_at: datetime,
    ) -> None:
        previous = self.handovers[handover_id]
        previous.state = HandoverState.FORWARDED
        previous.decided_at = occurred_at
        previous.forwarded_to = new_handover_id
        self.handovers[new_handover_id] = Handover(
            handover_id=new_handover_id,
            kind=previous.kind,
            from_agency=agency,
            to_agency=to_agency,
            data_categories=previous.data_categories,
            offered_at=occurred_at,
            due_at=due_at,
            decide_due_at=decide_due_at,
            legal_basis=tuple(legal_basis),
            reason=reason,
            forwarded_from=handover_id,
            chain_origin_agency=previous.chain_origin_agency,
            priority=previous.priority,
        )
        self.last_activity_at = occurred_at

    def withdraw_handover(self, act: Act, *, handover_id: UUID, reason: str) -> None:
        self._check_open()
        handover = self.handover(handover_id)
        if handover.from_agency != act.agency:
            raise errors.NotSender(
                f"only the sending agency {handover.from_agency} may withdraw "
                f"handover {handover_id}"
            )
        if handover.state is not HandoverState.OFFERED:
            raise errors.InvalidTransition(
                f"handover {handover_id} is {handover.state.value} and cannot be withdrawn"
            )
        self._handover_withdrawn(
            handover_id=handover_id,
            reason=reason,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("HandoverWithdrawn")
    def _handover_withdrawn(
        self, handover_id: UUID, reason: str, agency: str, actor: str, occurred_at: datetime
    ) -> None:
        handover = self.handovers[handover_id]
        handover.state = HandoverState.WITHDRAWN
        handover.decided_at = occurred_at
        handover.reason = reason
        self.last_activity_at = occurred_at

    def complete_handover(self, act: Act, *, handover_id: UUID) -> None:
        self._check_open()
        handover = self.handover(handover_id)
        if handover.to_agency != act.agency:
            raise errors.NotReceiver(
                f"only the receiving agency {handover.to_agency} reports completion "
                f"of handover {handover_id}"
            )
        if handover.state is not HandoverState.ACCEPTED:
            raise errors.InvalidTransition(
                f"handover {handover_id} is {handover.state.value} and cannot be completed"
            )
        self._handover_completed(
            handover_id=handover_id,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("HandoverCompleted")
    def _handover_completed(
        self, handover_id: UUID, agency: str, actor: str, occurred_at: datetime
    ) -> None:
        handover = self.handovers[handover_id]
        handover.state = HandoverState.COMPLETED
        handover.completed_at = occurred_at
        self.last_activity_at = occurred_at

    # ---- coaching --------------------------------------------------------------

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
        self._coach_assigned(
            coach=coach, agency=act.agency, actor=act.actor, occurred_at=act.occurred_at
        )

    @event("CoachAssigned")
    def _coach_assigned(self, coach: str, agency: str, actor: str, occurred_at: datetime) -> None:
        self.coach = coach
        self.coach_agency = agency
        self.last_activity_at = occurred_at

    def schedule_appointment(
        self, act: Act, *, appointment_id: UUID, kind: AppointmentKind, at: datetime
    ) -> None:
        self._check_involved(act)
        _require_timezone(at)
        if appointment_id in self.appointments:
            raise errors.AppointmentExists(f"appointment {appointment_id} already exists")
        self._appointment_scheduled(
            appointment_id=appointment_id,
            kind=AppointmentKind(kind).value,
            at=at,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("AppointmentScheduled")
    def _appointment_scheduled(
        self,
        appointment_id: UUID,
        kind: str,
        at: datetime,
        agency: str,
        actor: str,
        occurred_at: datetime,
    ) -> None:
        self.appointments[appointment_id] = Appointment(
            appointment_id=appointment_id, kind=AppointmentKind(kind), at=at
        )
        self.last_activity_at = occurred_at

    def _scheduled_appointment(self, act: Act, appointment_id: UUID) -> None:
        self._check_involved(act)
        appointment = self.appointments.get(appointment_id)
        if appointment is None:
            raise errors.AppointmentUnknown(
                f"appointment {appointment_id} is not part of this case"
            )
        if appointment.state is not AppointmentState.SCHEDULED:
            raise errors.InvalidTransition(
                f"appointment {appointment_id} is already {appointment.state.value}"
            )

    def record_appointment_held(self, act: Act, *, appointment_id: UUID) -> None:
        self._scheduled_appointment(act, appointment_id)
        self._appointment_held(
            appointment_id=appointment_id,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("AppointmentHeld")
    def _appointment_held(
        self, appointment_id: UUID, agency: str, actor: str, occurred_at: datetime
    ) -> None:
        self.appointments[appointment_id].state = AppointmentState.HELD
        self.last_activity_at = occurred_at

    def record_appointment_missed(self, act: Act, *, appointment_id: UUID) -> None:
        self._scheduled_appointment(act, appointment_id)
        self._appointment_missed(
            appointment_id=appointment_id,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("AppointmentMissed")
    def _appointment_missed(
        self, appointment_id: UUID, agency: str, actor: str, occurred_at: datetime
    ) -> None:
        self.appointments[appointment_id].state = AppointmentState.MISSED
        self.last_activity_at = occurred_at

    def sign_agreement(self, act: Act) -> None:
        self._check_involved(act)
        if self.agreement_signed_at is not None:
            raise errors.AlreadyDone("the participation agreement is already signed")
        self._agreement_signed(agency=act.agency, actor=act.actor, occurred_at=act.occurred_at)

    @event("AgreementSigned")
    def _agreement_signed(self, agency: str, actor: str, occurred_at: datetime) -> None:
        self.agreement_signed_at = occurred_at
        self._activate_when_ready()
        self.last_activity_at = occurred_at

    def _activate_when_ready(self) -> None:
        """``active`` once a coaching provider accepted and the agreement is signed."""
        if (
            self.stage is Stage.OPENED
            and self.assignment_started_at is not None
            and self.agreement_signed_at is not None
        ):
            self.stage = Stage.ACTIVE

    def agree_plan(self, act: Act, *, goals: Sequence[str], modules: Sequence[str]) -> None:
        self._check_involved(act)
        if self.plan_goals is not None:
            raise errors.AlreadyDone("a plan is already agreed; send plan.updated")
        self._plan_agreed(
            goals=list(goals),
            modules=list(modules),
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    def update_plan(self, act: Act, *, goals: Sequence[str], modules: Sequence[str]) -> None:
        self._check_involved(act)
        if self.plan_goals is None:
            raise errors.PlanMissing("no plan is agreed yet; send plan.agreed first")
        self._plan_updated(
            goals=list(goals),
            modules=list(modules),
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("PlanAgreed")
    def _plan_agreed(
        self,
        goals: list[str],
        modules: list[str],
        agency: str,
        actor: str,
        occurred_at: datetime,
    ) -> None:
        self.plan_goals = tuple(goals)
        self.plan_modules = tuple(modules)
        self.last_activity_at = occurred_at

    @event("PlanUpdated")
    def _plan_updated(
        self,
        goals: list[str],
        modules: list[str],
        agency: str,
        actor: str,
        occurred_at: datetime,
    ) -> None:
        self.plan_goals = tuple(goals)
        self.plan_modules = tuple(modules)
        self.last_activity_at = occurred_at

    def start_measure(self, act: Act, *, measure_id: UUID, kind: str, title: str) -> None:
        self._check_involved(act)
        if measure_id in self.measures:
            raise errors.MeasureExists(f"measure {measure_id} already exists")
        self._measure_started(
            measure_id=measure_id,
            kind=kind,
            title=title,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("MeasureStarted")
    def _measure_started(
        self,
        measure_id: UUID,
        kind: str,
        title: str,
        agency: str,
        actor: str,
        occurred_at: datetime,
    ) -> None:
        self.measures[measure_id] = Measure(
            measure_id=measure_id, kind=kind, title=title, started_at=occurred_at
        )
        self.last_activity_at = occurred_at

    def end_measure(self, act: Act, *, measure_id: UUID, result: str | None = None) -> None:
        self._check_involved(act)
        measure = self.measures.get(measure_id)
        if measure is None:
            raise errors.MeasureUnknown(f"measure {measure_id} is not part of this case")
        if measure.ended_at is not None:
            raise errors.InvalidTransition(f"measure {measure_id} has already ended")
        self._measure_ended(
            measure_id=measure_id,
            result=result,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("MeasureEnded")
    def _measure_ended(
        self,
        measure_id: UUID,
        result: str | None,
        agency: str,
        actor: str,
        occurred_at: datetime,
    ) -> None:
        measure = self.measures[measure_id]
        measure.ended_at = occurred_at
        measure.result = result
        self.last_activity_at = occurred_at

    def extend_assignment(self, act: Act, *, months: int, reason: str) -> None:
        self._check_lead(act)
        if not 1 <= months <= 24:
            raise errors.InvalidValue("an extension is between 1 and 24 months")
        self._assignment_extended(
            months=months,
            reason=reason,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("AssignmentExtended")
    def _assignment_extended(
        self, months: int, reason: str, agency: str, actor: str, occurred_at: datetime
    ) -> None:
        self.extensions.append(months)
        self.last_activity_at = occurred_at

    # ---- employment and aftercare ------------------------------------------------

    def start_employment(
        self, act: Act, *, employer: str, kind: EmploymentKind, start_date: str
    ) -> None:
        self._check_involved(act)
        if self.stage not in (Stage.OPENED, Stage.ACTIVE):
            raise errors.InvalidTransition(f"employment cannot start in stage {self.stage.value}")
        self._employment_started(
            employer=employer,
            kind=EmploymentKind(kind).value,
            start_date=start_date,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("EmploymentStarted")
    def _employment_started(
        self,
        employer: str,
        kind: str,
        start_date: str,
        agency: str,
        actor: str,
        occurred_at: datetime,
    ) -> None:
        self.employment = Employment(
            employer=employer, kind=EmploymentKind(kind), start_date=start_date
        )
        self.stage = Stage.EMPLOYED
        self.last_activity_at = occurred_at

    def start_aftercare(self, act: Act, *, until: datetime | None = None) -> None:
        self._check_involved(act)
        _require_timezone(until)
        if self.stage is not Stage.EMPLOYED:
            raise errors.InvalidTransition(
                f"aftercare starts after employment, not in stage {self.stage.value}"
            )
        self._aftercare_started(
            until=until, agency=act.agency, actor=act.actor, occurred_at=act.occurred_at
        )

    @event("AftercareStarted")
    def _aftercare_started(
        self, until: datetime | None, agency: str, actor: str, occurred_at: datetime
    ) -> None:
        self.aftercare_until = until
        self.stage = Stage.AFTERCARE
        self.last_activity_at = occurred_at

    def end_aftercare(self, act: Act) -> None:
        self._check_involved(act)
        if self.stage is not Stage.AFTERCARE or self.aftercare_ended_at is not None:
            raise errors.InvalidTransition("no aftercare is running")
        self._aftercare_ended(agency=act.agency, actor=act.actor, occurred_at=act.occurred_at)

    @event("AftercareEnded")
    def _aftercare_ended(self, agency: str, actor: str, occurred_at: datetime) -> None:
        self.aftercare_ended_at = occurred_at
        self.last_activity_at = occurred_at

    # ---- notes, closure, erasure ----------------------------------------------------

    def add_note(self, act: Act, *, text: str, category: DataCategory) -> None:
        self._check_involved(act)
        self._note_added(
            text=text,
            category=DataCategory(category).value,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("NoteAdded")
    def _note_added(
        self, text: str, category: str, agency: str, actor: str, occurred_at: datetime
    ) -> None:
        self.notes.append(
            Note(category=DataCategory(category), text=text, agency=agency, at=occurred_at)
        )
        self.last_activity_at = occurred_at

    def close(self, act: Act, *, outcome: Outcome) -> None:
        self._check_lead(act)
        self._case_closed(
            outcome=Outcome(outcome).value,
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("CaseClosed")
    def _case_closed(self, outcome: str, agency: str, actor: str, occurred_at: datetime) -> None:
        self.stage = Stage.CLOSED
        self.outcome = Outcome(outcome)
        self.closed_at = occurred_at
        self.last_activity_at = occurred_at

    def record_read(
        self, act: Act, *, role: str, scope: str, categories: Sequence[str] = ()
    ) -> None:
        """A read of this case by an auditor, or of health data by anyone, becomes part
        of its history (who, which agency, when, what). Allowed on closed cases."""
        self._case_read(
            role=role,
            scope=scope,
            categories=sorted(set(categories)),
            agency=act.agency,
            actor=act.actor,
            occurred_at=act.occurred_at,
        )

    @event("CaseRead")
    def _case_read(
        self,
        role: str,
        scope: str,
        categories: list[str],
        agency: str,
        actor: str,
        occurred_at: datetime,
    ) -> None:
        """A read changes nothing in the case."""

    def erase_participant(self, act: Act, *, reason: str, as_auditor: bool = False) -> None:
        """Erasure is allowed on a closed case too: it is what retention ends in."""
        if not as_auditor and act.agency != self.lead_agency:
            raise errors.NotLeadAgency("only the lead agency or an auditor may erase")
        if self.erased_at is not None:
            raise errors.AlreadyDone("the participant's data is already erased")
        self._participant_erased(
            reason=reason, agency=act.agency, actor=act.actor, occurred_at=act.occurred_at
        )

    @event("ParticipantErased")
    def _participant_erased(
        self, reason: str, agency: str, actor: str, occurred_at: datetime
    ) -> None:
        self.erased_at = occurred_at
        self.participant = {"pseudonym": self.participant.get("pseudonym"), "erased": True}
        for note in self.notes:
            note.text = ""


def _require_timezone(*moments: datetime | None) -> None:
    if any(m is not None and m.tzinfo is None for m in moments):
        raise errors.InvalidValue("times must carry a timezone")


def _add_months(moment: datetime, months: int) -> datetime:
    month_index = moment.month - 1 + months
    year = moment.year + month_index // 12
    month = month_index % 12 + 1
    day = min(moment.day, _days_in_month(year, month))
    return moment.replace(year=year, month=month, day=day)


def _days_in_month(year: int, month: int) -> int:
    if month == 12:
        return 31
    return (datetime(year, month + 1, 1) - datetime(year, month, 1)).days
