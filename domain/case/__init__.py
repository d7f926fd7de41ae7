"""The ``Case`` aggregate: one participant in one programme.

The case is the consistency boundary: its handovers, consents, plan, appointments,
measures and lifecycle live here, so the consent rule and the § 14 SGB IX rules
are checked in one place. Public methods are commands (they check the rules and
raise ``DomainError``); each nested event class is a fact they record, and its
``apply_to`` says how it changes the state on replay. Every fact carries agency,
actor and ``occurred_at`` and moves ``last_activity_at`` (``Case.Event``); the rules
themselves live in the modules beside this one. The class stays in this module
because stored events name it by topic (``domain.case:Case.*``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from domain import errors
from domain.case import handover as rules
from domain.case.act import Act, require_in_range, require_timezone
from domain.case.consent import STATUTORY_TASK, Consent, consent_valid, legal_basis
from domain.case.handover import Handover
from domain.case.lifecycle import (
    EMPLOYMENT_STAGES,
    add_months,
    lead_after_acceptance,
    moves_lead,
    stage_after_activation_check,
)
from domain.case.records import Appointment, Employment, Measure, Note
from domain.policy import DeadlinePolicy
from domain.values import (
    AppointmentKind,
    AppointmentState,
    DataCategory,
    EmploymentKind,
    HandoverKind,
    HandoverState,
    Outcome,
    RehabOutcome,
    Stage,
)

__all__ = [
    "STATUTORY_TASK",
    "Act",
    "Appointment",
    "Case",
    "Consent",
    "Employment",
    "Handover",
    "Measure",
    "Note",
    "consent_valid",
]

PRIORITIES = ("normal", "urgent")


class Case(Aggregate):
    """A participant's case in one programme."""

    class Event(Aggregate.Event):
        """Every fact of a case: who (agency, actor) and when at the agency."""

        agency: str
        actor: str
        occurred_at: datetime
        # Passive facts (recorded reads) are history, not activity.
        passive: ClassVar[bool] = False

        def apply(self, aggregate: Any) -> None:
            self.apply_to(aggregate)
            if not self.passive:
                aggregate.last_activity_at = self.occurred_at

        def apply_to(self, case: Any) -> None:
            """How this fact changes the case (each event class says)."""

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
        policy: DeadlinePolicy | None = None,
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
        may_open = (policy or DeadlinePolicy()).roles.may_open
        if act.kind_of(act.agency) not in may_open:
            raise errors.KindNotAllowed(
                "this kind of agency may not open a case as its lead",
                allowed=sorted(k.value for k in may_open),
            )
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
        """Rule 7: an agency whose only part was a declined or withdrawn handover
        is no longer involved."""
        return {self.opened_by, self.lead_agency} | rules.involved_by_handovers(
            self.handovers.values()
        )

    @property
    def is_closed(self) -> bool:
        return self.stage is Stage.CLOSED

    @property
    def assignment_ends_at(self) -> datetime | None:
        if self.assignment_started_at is None:
            return None
        return add_months(self.assignment_started_at, self.assignment_months + sum(self.extensions))

    def handover(self, handover_id: UUID) -> Handover:
        try:
            return self.handovers[handover_id]
        except KeyError:
            raise errors.HandoverUnknown(
                f"handover {handover_id} is not part of this case"
            ) from None

    # ---- guards --------------------------------------------------------------

    def _check_open(self, act: Act) -> None:
        if self.is_closed:
            raise errors.CaseClosed("the case is closed and accepts no further events")
        act.not_before(self.opened_at, "the opening of the case")

    def _check_involved(self, act: Act) -> None:
        self._check_open(act)
        if act.agency not in self.involved_agencies:
            raise errors.NotInvolved(f"agency {act.agency} is not involved in this case")

    def _check_lead(self, act: Act) -> None:
        self._check_open(act)
        if act.agency != self.lead_agency:
            raise errors.NotLeadAgency(f"only the lead agency {self.lead_agency} may do this")

    def _received(self, act: Act, handover_id: UUID, verb: str) -> Handover:
        """A handover this agency received, dated no earlier than its offer."""
        self._check_open(act)
        handover = self.handover(handover_id)
        rules.require_receiver(handover, act, verb)
        act.not_before(handover.offered_at, f"the offer of handover {handover_id}")
        return handover

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
        purpose: str | None = None,
        document_ref: str | None = None,
    ) -> None:
        self._check_involved(act)
        require_timezone(valid_from, valid_until)
        require_in_range(valid_from, valid_until)
        if source_agency != act.agency:
            # The source is released from confidentiality and holds the signed form.
            raise errors.NotConsentSource(
                f"a consent is recorded by its source agency {source_agency}, not by {act.agency}"
            )
        if consent_id in self.consents:
            raise errors.ConsentExists(f"consent {consent_id} is already recorded")
        if not categories or not recipients:
            raise errors.InvalidValue("a consent names categories and recipients")
        if valid_until is not None and valid_until <= valid_from:
            raise errors.InvalidValue("valid_until must be after valid_from")
        self.trigger_event(
            self.ConsentGranted,
            consent_id=consent_id,
            categories=sorted(DataCategory(c).value for c in set(categories)),
            source_agency=source_agency,
            recipients=sorted(set(recipients)),
            valid_from=valid_from,
            valid_until=valid_until,
            purpose=purpose,
            document_ref=document_ref,
            **_who(act),
        )

    class ConsentGranted(Event):
        """Schema v2 added ``purpose`` and ``document_ref``."""

        class_version = 2
        consent_id: str
        categories: list[str]
        source_agency: str
        recipients: list[str]
        valid_from: datetime
        valid_until: datetime | None
        purpose: str | None
        document_ref: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["purpose"] = None
            state["document_ref"] = None

        def apply_to(self, case: Case) -> None:
            case.consents[self.consent_id] = Consent(
                consent_id=self.consent_id,
                categories=frozenset(DataCategory(c) for c in self.categories),
                source_agency=self.source_agency,
                recipients=frozenset(self.recipients),
                valid_from=self.valid_from,
                valid_until=self.valid_until,
                granted_by=self.agency,
                purpose=self.purpose,
                document_ref=self.document_ref,
            )

    def revoke_consent(self, act: Act, *, consent_id: str) -> None:
        """The participant revokes through the source or the lead."""
        self._check_involved(act)
        consent = self.consents.get(consent_id)
        if consent is None:
            raise errors.ConsentUnknown(f"consent {consent_id} is not part of this case")
        if act.agency not in (consent.source_agency, self.lead_agency):
            raise errors.NotConsentSource(
                "a consent is revoked through its source agency or the lead agency"
            )
        if consent.revoked_at is not None:
            raise errors.InvalidTransition(f"consent {consent_id} is already revoked")
        self.trigger_event(self.ConsentRevoked, consent_id=consent_id, **_who(act))

    class ConsentRevoked(Event):
        consent_id: str

        def apply_to(self, case: Case) -> None:
            case.consents[self.consent_id].revoked_at = self.occurred_at

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
        require_timezone(due_at)
        require_in_range(due_at)
        if priority not in PRIORITIES:
            raise errors.InvalidValue(f"priority is one of {', '.join(PRIORITIES)}")
        if handover_id in self.handovers:
            raise errors.HandoverExists(f"handover {handover_id} already exists")
        if to_agency == act.agency:
            raise errors.InvalidRecipient("an agency cannot hand over to itself")
        kind = HandoverKind(kind)
        rules.require_roles(policy, kind, act, to_agency, self.lead_agency)
        if kind is HandoverKind.REHAB_APPLICATION:
            rules.require_no_open_rehab_chain(self.handovers.values())
        categories = sorted({DataCategory(c) for c in data_categories})
        basis = legal_basis(
            self.consents.values(), categories, {act.agency}, to_agency, act.moments
        )
        self.trigger_event(
            self.HandoverOffered,
            handover_id=handover_id,
            kind=kind.value,
            to_agency=to_agency,
            data_categories=[c.value for c in categories],
            reason=reason,
            due_at=due_at or policy.accept_due(kind, act.occurred_at),
            decide_due_at=policy.decide_due(kind, act.occurred_at),
            legal_basis=list(basis),
            priority=priority,
            **_who(act),
        )

    class HandoverOffered(Event):
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

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["priority"] = "normal"

        def apply_to(self, case: Case) -> None:
            case.handovers[self.handover_id] = Handover(
                handover_id=self.handover_id,
                kind=HandoverKind(self.kind),
                from_agency=self.agency,
                to_agency=self.to_agency,
                data_categories=tuple(DataCategory(c) for c in self.data_categories),
                offered_at=self.occurred_at,
                due_at=self.due_at,
                decide_due_at=self.decide_due_at,
                legal_basis=tuple(self.legal_basis),
                reason=self.reason,
                chain_origin_agency=self.agency,
                priority=self.priority,
            )

    def accept_handover(
        self, act: Act, policy: DeadlinePolicy | None = None, *, handover_id: UUID
    ) -> None:
        handover = self._received(act, handover_id, "accept")
        rules.require_state(handover, "accept", HandoverState.OFFERED)
        policy = policy or DeadlinePolicy()
        self.trigger_event(
            self.HandoverAccepted,
            handover_id=handover_id,
            moves_lead=moves_lead(policy, handover.kind, act.kind_of(act.agency)),
            **_who(act),
        )

    class HandoverAccepted(Event):
        """Schema v2 records whether policy moved the lead (roles as policy); v1
        events follow the rule of their time (every discharge moved it)."""

        class_version = 2
        handover_id: UUID
        moves_lead: bool | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["moves_lead"] = None

        def apply_to(self, case: Case) -> None:
            handover = case.handovers[self.handover_id]
            handover.state = HandoverState.ACCEPTED
            handover.decided_at = self.occurred_at
            case.lead_agency = lead_after_acceptance(
                case.lead_agency,
                handover.kind.value,
                handover.from_agency,
                handover.to_agency,
                self.moves_lead,
            )
            if handover.kind is HandoverKind.ASSIGNMENT and case.assignment_started_at is None:
                case.assignment_started_at = self.occurred_at
            case.stage = stage_after_activation_check(
                case.stage, case.assignment_started_at, case.agreement_signed_at
            )

    def decline_handover(self, act: Act, *, handover_id: UUID, reason: str) -> None:
        handover = self._received(act, handover_id, "decline")
        rules.require_not_bound_to_decide(handover, "declined")
        rules.require_state(handover, "decline", HandoverState.OFFERED)
        self.trigger_event(
            self.HandoverDeclined, handover_id=handover_id, reason=reason, **_who(act)
        )

    class HandoverDeclined(Event):
        handover_id: UUID
        reason: str

        def apply_to(self, case: Case) -> None:
            case._end(self.handover_id, HandoverState.DECLINED, self.occurred_at, self.reason)

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
        self._check_open(act)
        handover = self.handover(handover_id)
        rules.require_forwardable(handover, act, policy, to_agency, self.lead_agency)
        act.not_before(handover.offered_at, f"the offer of handover {handover_id}")
        if new_handover_id in self.handovers:
            raise errors.HandoverExists(f"handover {new_handover_id} already exists")
        # The forwarder passes on what it received: consents from it or from the
        # agency that started the chain both cover the forwarded data.
        basis = legal_basis(
            self.consents.values(),
            handover.data_categories,
            {act.agency, handover.chain_origin_agency},
            to_agency,
            act.moments,
        )
        # § 14 Abs. 2: the next agency's deadlines run from its own receipt.
        self.trigger_event(
            self.HandoverForwarded,
            handover_id=handover_id,
            new_handover_id=new_handover_id,
            to_agency=to_agency,
            reason=reason,
            due_at=policy.accept_due(handover.kind, act.occurred_at),
            decide_due_at=policy.decide_due(handover.kind, act.occurred_at),
            legal_basis=list(basis),
            **_who(act),
        )

    class HandoverForwarded(Event):
        handover_id: UUID
        new_handover_id: UUID
        to_agency: str
        reason: str
        due_at: datetime
        decide_due_at: datetime | None
        legal_basis: list[str]

        def apply_to(self, case: Case) -> None:
            previous = case.handovers[self.handover_id]
            previous.state = HandoverState.FORWARDED
            previous.decided_at = self.occurred_at
            previous.forwarded_to = self.new_handover_id
            case.handovers[self.new_handover_id] = Handover(
                handover_id=self.new_handover_id,
                kind=previous.kind,
                from_agency=self.agency,
                to_agency=self.to_agency,
                data_categories=previous.data_categories,
                offered_at=self.occurred_at,
                due_at=self.due_at,
                decide_due_at=self.decide_due_at,
                legal_basis=tuple(self.legal_basis),
                reason=self.reason,
                forwarded_from=self.handover_id,
                chain_origin_agency=previous.chain_origin_agency,
                priority=previous.priority,
            )

    def withdraw_handover(self, act: Act, *, handover_id: UUID, reason: str) -> None:
        self._check_open(act)
        handover = self.handover(handover_id)
        if handover.from_agency != act.agency:
            raise errors.NotSender(
                f"only the sending agency {handover.from_agency} may withdraw "
                f"handover {handover_id}"
            )
        act.not_before(handover.offered_at, f"the offer of handover {handover_id}")
        rules.require_not_bound_to_decide(handover, "withdrawn")
        if handover.state is not HandoverState.OFFERED:
            raise errors.InvalidTransition(
                f"handover {handover_id} is {handover.state.value} and cannot be withdrawn"
            )
        self.trigger_event(
            self.HandoverWithdrawn, handover_id=handover_id, reason=reason, **_who(act)
        )

    class HandoverWithdrawn(Event):
        handover_id: UUID
        reason: str

        def apply_to(self, case: Case) -> None:
            case._end(self.handover_id, HandoverState.WITHDRAWN, self.occurred_at, self.reason)

    def _end(self, handover_id: UUID, state: HandoverState, at: datetime, reason: str) -> None:
        handover = self.handovers[handover_id]
        handover.state = state
        handover.decided_at = at
        handover.reason = reason

    def complete_handover(self, act: Act, *, handover_id: UUID) -> None:
        handover = self._received(act, handover_id, "report completion of")
        if handover.awaits_decision:
            raise errors.DecisionRequired(
                "a rehabilitation application is completed by its decision (rehab.decided)"
            )
        rules.require_state(handover, "complete", HandoverState.ACCEPTED)
        act.not_before(handover.decided_at, f"the acceptance of handover {handover_id}")
        self.trigger_event(self.HandoverCompleted, handover_id=handover_id, **_who(act))

    class HandoverCompleted(Event):
        handover_id: UUID

        def apply_to(self, case: Case) -> None:
            handover = case.handovers[self.handover_id]
            handover.state = HandoverState.COMPLETED
            handover.completed_at = self.occurred_at

    # ---- § 14 SGB IX: decision and expert opinion --------------------------------

    def _rehab_received(self, act: Act, handover_id: UUID, verb: str) -> Handover:
        handover = self._received(act, handover_id, verb)
        if not handover.is_rehab:
            raise errors.InvalidTransition(
                f"handover {handover_id} is no rehabilitation application"
            )
        rules.require_state(handover, verb, HandoverState.OFFERED, HandoverState.ACCEPTED)
        return handover

    def decide_rehab(
        self,
        act: Act,
        policy: DeadlinePolicy,
        *,
        handover_id: UUID,
        outcome: RehabOutcome,
        reason: str | None = None,
        document_ref: str | None = None,
    ) -> None:
        """The deciding agency's decision. A decision entered late counts on the
        hub's clock unless a document (the notice) supports its date."""
        handover = self._rehab_received(act, handover_id, "decide")
        act.not_before(handover.opinion_received_at, "the expert opinion's receipt")
        late = act.is_late(policy.clock.late_after)
        counted_at = act.hub_time if late and not document_ref else act.occurred_at
        self.trigger_event(
            self.RehabDecided,
            handover_id=handover_id,
            outcome=RehabOutcome(outcome).value,
            reason=reason,
            document_ref=document_ref,
            late_entry=late,
            counted_at=counted_at,
            **_who(act),
        )

    class RehabDecided(Event):
        handover_id: UUID
        outcome: str
        counted_at: datetime
        reason: str | None
        document_ref: str | None
        late_entry: bool

        def apply_to(self, case: Case) -> None:
            handover = case.handovers[self.handover_id]
            handover.state = HandoverState.COMPLETED
            handover.decision = self.outcome
            handover.completed_at = self.occurred_at
            if handover.decided_at is None:
                handover.decided_at = self.occurred_at

    def request_expert_opinion(self, act: Act, *, handover_id: UUID) -> None:
        handover = self._rehab_received(act, handover_id, "request an opinion on")
        if handover.opinion_requested_at is not None:
            raise errors.AlreadyDone("an expert opinion is already requested")
        self.trigger_event(self.ExpertOpinionRequested, handover_id=handover_id, **_who(act))

    class ExpertOpinionRequested(Event):
        handover_id: UUID

        def apply_to(self, case: Case) -> None:
            case.handovers[self.handover_id].opinion_requested_at = self.occurred_at

    def receive_expert_opinion(
        self, act: Act, policy: DeadlinePolicy, *, handover_id: UUID
    ) -> None:
        """§ 14 Abs. 2 S. 3: the decision is due two weeks after the opinion arrives."""
        handover = self._rehab_received(act, handover_id, "receive an opinion on")
        if handover.opinion_requested_at is None:
            raise errors.InvalidTransition("no expert opinion was requested")
        if handover.opinion_received_at is not None:
            raise errors.AlreadyDone("the expert opinion is already received")
        act.not_before(handover.opinion_requested_at, "the opinion's request")
        self.trigger_event(
            self.ExpertOpinionReceived,
            handover_id=handover_id,
            decide_due_at=policy.decide_due_after_opinion(act.occurred_at),
            **_who(act),
        )

    class ExpertOpinionReceived(Event):
        handover_id: UUID
        decide_due_at: datetime

        def apply_to(self, case: Case) -> None:
            handover = case.handovers[self.handover_id]
            handover.opinion_received_at = self.occurred_at
            handover.decide_due_at = self.decide_due_at

    # ---- lead -----------------------------------------------------------------

    def transfer_lead(
        self, act: Act, policy: DeadlinePolicy, *, to_agency: str, reason: str
    ) -> None:
        """Rule 6: the lead changes only by the current lead's explicit transfer."""
        self._check_lead(act)
        if to_agency == act.agency:
            raise errors.InvalidRecipient("the lead cannot transfer the case to itself")
        if to_agency not in self.involved_agencies:
            raise errors.NotInvolved(f"agency {to_agency} is not involved in this case")
        if act.kind_of(to_agency) not in policy.roles.may_lead:
            raise errors.KindNotAllowed(
                "this kind of agency may not lead a case",
                allowed=sorted(k.value for k in policy.roles.may_lead),
            )
        self.trigger_event(self.LeadTransferred, to_agency=to_agency, reason=reason, **_who(act))

    class LeadTransferred(Event):
        to_agency: str
        reason: str

        def apply_to(self, case: Case) -> None:
            case.lead_agency = self.to_agency

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
        self.trigger_event(self.CoachAssigned, coach=coach, **_who(act))

    class CoachAssigned(Event):
        coach: str

        def apply_to(self, case: Case) -> None:
            case.coach = self.coach
            case.coach_agency = self.agency

    def schedule_appointment(
        self, act: Act, *, appointment_id: UUID, kind: AppointmentKind, at: datetime
    ) -> None:
        self._check_involved(act)
        require_timezone(at)
        require_in_range(at)
        if appointment_id in self.appointments:
            raise errors.AppointmentExists(f"appointment {appointment_id} already exists")
        self.trigger_event(
            self.AppointmentScheduled,
            appointment_id=appointment_id,
            kind=AppointmentKind(kind).value,
            at=at,
            **_who(act),
        )

    class AppointmentScheduled(Event):
        appointment_id: UUID
        kind: str
        at: datetime

        def apply_to(self, case: Case) -> None:
            case.appointments[self.appointment_id] = Appointment(
                appointment_id=self.appointment_id,
                kind=AppointmentKind(self.kind),
                at=self.at,
                scheduled_at=self.occurred_at,
            )

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
        act.not_before(appointment.scheduled_at, f"the scheduling of {appointment_id}")

    def record_appointment_held(self, act: Act, *, appointment_id: UUID) -> None:
        self._scheduled_appointment(act, appointment_id)
        self.trigger_event(self.AppointmentHeld, appointment_id=appointment_id, **_who(act))

    class AppointmentHeld(Event):
        appointment_id: UUID

        def apply_to(self, case: Case) -> None:
            case.appointments[self.appointment_id].state = AppointmentState.HELD

    def record_appointment_missed(self, act: Act, *, appointment_id: UUID) -> None:
        self._scheduled_appointment(act, appointment_id)
        self.trigger_event(self.AppointmentMissed, appointment_id=appointment_id, **_who(act))

    class AppointmentMissed(Event):
        appointment_id: UUID

        def apply_to(self, case: Case) -> None:
            case.appointments[self.appointment_id].state = AppointmentState.MISSED

    def sign_agreement(self, act: Act) -> None:
        self._check_involved(act)
        if self.agreement_signed_at is not None:
            raise errors.AlreadyDone("the participation agreement is already signed")
        self.trigger_event(self.AgreementSigned, **_who(act))

    class AgreementSigned(Event):
        def apply_to(self, case: Case) -> None:
            case.agreement_signed_at = self.occurred_at
            case.stage = stage_after_activation_check(
                case.stage, case.assignment_started_at, case.agreement_signed_at
            )

    def agree_plan(self, act: Act, *, goals: Sequence[str], modules: Sequence[str]) -> None:
        self._check_involved(act)
        if self.plan_goals is not None:
            raise errors.AlreadyDone("a plan is already agreed; send plan.updated")
        self.trigger_event(self.PlanAgreed, goals=list(goals), modules=list(modules), **_who(act))

    def update_plan(self, act: Act, *, goals: Sequence[str], modules: Sequence[str]) -> None:
        self._check_involved(act)
        if self.plan_goals is None:
            raise errors.PlanMissing("no plan is agreed yet; send plan.agreed first")
        self.trigger_event(self.PlanUpdated, goals=list(goals), modules=list(modules), **_who(act))

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

    def start_measure(self, act: Act, *, measure_id: UUID, kind: str, title: str) -> None:
        self._check_involved(act)
        if measure_id in self.measures:
            raise errors.MeasureExists(f"measure {measure_id} already exists")
        self.trigger_event(
            self.MeasureStarted, measure_id=measure_id, kind=kind, title=title, **_who(act)
        )

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

    def end_measure(self, act: Act, *, measure_id: UUID, result: str | None = None) -> None:
        self._check_involved(act)
        measure = self.measures.get(measure_id)
        if measure is None:
            raise errors.MeasureUnknown(f"measure {measure_id} is not part of this case")
        if measure.ended_at is not None:
            raise errors.InvalidTransition(f"measure {measure_id} has already ended")
        act.not_before(measure.started_at, f"the start of measure {measure_id}")
        self.trigger_event(self.MeasureEnded, measure_id=measure_id, result=result, **_who(act))

    class MeasureEnded(Event):
        measure_id: UUID
        result: str | None

        def apply_to(self, case: Case) -> None:
            measure = case.measures[self.measure_id]
            measure.ended_at = self.occurred_at
            measure.result = self.result

    def extend_assignment(self, act: Act, *, months: int, reason: str) -> None:
        self._check_lead(act)
        if not 1 <= months <= 24:
            raise errors.InvalidValue("an extension is between 1 and 24 months")
        self.trigger_event(self.AssignmentExtended, months=months, reason=reason, **_who(act))

    class AssignmentExtended(Event):
        months: int
        reason: str

        def apply_to(self, case: Case) -> None:
            case.extensions.append(self.months)

    # ---- employment and aftercare ------------------------------------------------

    def start_employment(
        self, act: Act, *, employer: str, kind: EmploymentKind, start_date: str
    ) -> None:
        self._check_involved(act)
        if self.stage not in EMPLOYMENT_STAGES:
            raise errors.InvalidTransition(f"employment cannot start in stage {self.stage.value}")
        if date.fromisoformat(start_date) < self.opened_at.date():
            raise errors.OccurredTooEarly("start_date lies before the opening of the case")
        self.trigger_event(
            self.EmploymentStarted,
            employer=employer,
            kind=EmploymentKind(kind).value,
            start_date=start_date,
            **_who(act),
        )

    class EmploymentStarted(Event):
        employer: str
        kind: str
        start_date: str

        def apply_to(self, case: Case) -> None:
            case.employment = Employment(
                employer=self.employer, kind=EmploymentKind(self.kind), start_date=self.start_date
            )
            case.stage = Stage.EMPLOYED

    def start_aftercare(self, act: Act, *, until: datetime | None = None) -> None:
        self._check_involved(act)
        require_timezone(until)
        require_in_range(until)
        if self.stage is not Stage.EMPLOYED:
            raise errors.InvalidTransition(
                f"aftercare starts after employment, not in stage {self.stage.value}"
            )
        self.trigger_event(self.AftercareStarted, until=until, **_who(act))

    class AftercareStarted(Event):
        until: datetime | None

        def apply_to(self, case: Case) -> None:
            case.aftercare_until = self.until
            case.stage = Stage.AFTERCARE

    def end_aftercare(self, act: Act) -> None:
        self._check_involved(act)
        if self.stage is not Stage.AFTERCARE or self.aftercare_ended_at is not None:
            raise errors.InvalidTransition("no aftercare is running")
        self.trigger_event(self.AftercareEnded, **_who(act))

    class AftercareEnded(Event):
        def apply_to(self, case: Case) -> None:
            case.aftercare_ended_at = self.occurred_at

    # ---- notes, closure, erasure ----------------------------------------------------

    def add_note(self, act: Act, *, text: str, category: DataCategory) -> None:
        self._check_involved(act)
        self.trigger_event(
            self.NoteAdded, text=text, category=DataCategory(category).value, **_who(act)
        )

    class NoteAdded(Event):
        text: str
        category: str

        def apply_to(self, case: Case) -> None:
            case.notes.append(
                Note(
                    category=DataCategory(self.category),
                    text=self.text,
                    agency=self.agency,
                    at=self.occurred_at,
                )
            )

    def close(
        self,
        act: Act,
        *,
        outcome: Outcome,
        withdraw_open: bool = False,
        target: str | None = None,
    ) -> None:
        """Rule 7: no open handover (unless the closure withdraws them, recorded one by
        one) and no pending § 14 decision."""
        self._check_lead(act)
        outcome = Outcome(outcome)
        if outcome is Outcome.TRANSFERRED and not target:
            raise errors.InvalidValue("a transfer names its target agency or programme")
        open_handovers = [h for h in self.handovers.values() if h.is_open]
        pending = [str(h.handover_id) for h in open_handovers if h.awaits_decision]
        if pending:
            raise errors.DecisionPending(
                "a rehabilitation application awaits its decision (§ 14 SGB IX)",
                handover_ids=pending,
            )
        if open_handovers and not withdraw_open:
            raise errors.OpenHandovers(
                "the case has open handovers; complete or withdraw them, "
                "or close with withdraw_open",
                handover_ids=[str(h.handover_id) for h in open_handovers],
            )
        for handover in open_handovers:
            self.trigger_event(
                self.HandoverWithdrawn,
                handover_id=handover.handover_id,
                reason="case closed",
                **_who(act),
            )
        self.trigger_event(self.CaseClosed, outcome=outcome.value, target=target, **_who(act))

    class CaseClosed(Event):
        """Schema v2 added ``target`` (where a ``transferred`` case went)."""

        class_version = 2
        outcome: str
        target: str | None

        @staticmethod
        def upcast_v1_v2(state: dict[str, Any]) -> None:
            state["target"] = None

        def apply_to(self, case: Case) -> None:
            case.stage = Stage.CLOSED
            case.outcome = Outcome(self.outcome)
            case.closed_at = self.occurred_at

    def record_read(
        self, act: Act, *, role: str, scope: str, categories: Sequence[str] = ()
    ) -> None:
        """A read of this case by an auditor, or of health data by anyone, becomes part
        of its history (who, which agency, when, what). Allowed on closed cases."""
        self.trigger_event(
            self.CaseRead, role=role, scope=scope, categories=sorted(set(categories)), **_who(act)
        )

    class CaseRead(Event):
        role: str
        scope: str
        categories: list[str]

        passive = True  # a read changes nothing in the case, not even its last activity

    def erase_participant(self, act: Act, *, reason: str, as_auditor: bool = False) -> None:
        """Erasure is allowed on a closed case too: it is what retention ends in."""
        if not as_auditor and act.agency != self.lead_agency:
            raise errors.NotLeadAgency("only the lead agency or an auditor may erase")
        if self.erased_at is not None:
            raise errors.AlreadyDone("the participant's data is already erased")
        self.trigger_event(self.ParticipantErased, reason=reason, **_who(act))

    class ParticipantErased(Event):
        reason: str

        def apply_to(self, case: Case) -> None:
            case.erased_at = self.occurred_at
            case.participant = {"pseudonym": case.participant.get("pseudonym"), "erased": True}
            for note in case.notes:
                note.text = ""


def _who(act: Act) -> dict[str, Any]:
    """The fields every ``Case.Event`` carries."""
    return {"agency": act.agency, "actor": act.actor, "occurred_at": act.occurred_at}
