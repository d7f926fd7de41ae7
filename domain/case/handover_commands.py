"""The case's handover commands and the facts they record (the rules: ``handover.py``)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

from domain import errors
from domain.case import handover as rules
from domain.case.act import Act, require_in_range, require_timezone
from domain.case.consent import legal_basis
from domain.case.handover import Handover
from domain.case.lifecycle import lead_after_acceptance, moves_lead, stage_after_activation_check
from domain.case.state import CaseState, Event, who
from domain.policy import DeadlinePolicy
from domain.values import DataCategory, HandoverKind, HandoverState

if TYPE_CHECKING:
    from domain.case import Case

PRIORITIES = ("normal", "urgent")


class HandoverCommands(CaseState):
    """Offer, accept, decline, forward, withdraw and complete a handover."""

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
            HandoverOffered,
            handover_id=handover_id,
            kind=kind.value,
            to_agency=to_agency,
            data_categories=[c.value for c in categories],
            reason=reason,
            due_at=due_at or policy.accept_due(kind, act.occurred_at),
            decide_due_at=policy.decide_due(kind, act.occurred_at),
            legal_basis=list(basis),
            priority=priority,
            **who(act),
        )

    def accept_handover(
        self, act: Act, policy: DeadlinePolicy | None = None, *, handover_id: UUID
    ) -> None:
        handover = self._received(act, handover_id, "accept")
        rules.require_state(handover, "accept", HandoverState.OFFERED)
        policy = policy or DeadlinePolicy()
        self.trigger_event(
            HandoverAccepted,
            handover_id=handover_id,
            moves_lead=moves_lead(policy, handover.kind, act.kind_of(act.agency)),
            **who(act),
        )

    def decline_handover(self, act: Act, *, handover_id: UUID, reason: str) -> None:
        handover = self._received(act, handover_id, "decline")
        rules.require_not_bound_to_decide(handover, "declined")
        rules.require_state(handover, "decline", HandoverState.OFFERED)
        self.trigger_event(HandoverDeclined, handover_id=handover_id, reason=reason, **who(act))

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
            HandoverForwarded,
            handover_id=handover_id,
            new_handover_id=new_handover_id,
            to_agency=to_agency,
            reason=reason,
            due_at=policy.accept_due(handover.kind, act.occurred_at),
            decide_due_at=policy.decide_due(handover.kind, act.occurred_at),
            legal_basis=list(basis),
            **who(act),
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
        self.trigger_event(HandoverWithdrawn, handover_id=handover_id, reason=reason, **who(act))

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
        self.trigger_event(HandoverCompleted, handover_id=handover_id, **who(act))


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


class HandoverDeclined(Event):
    handover_id: UUID
    reason: str

    def apply_to(self, case: Case) -> None:
        case._end(self.handover_id, HandoverState.DECLINED, self.occurred_at, self.reason)


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


class HandoverWithdrawn(Event):
    handover_id: UUID
    reason: str

    def apply_to(self, case: Case) -> None:
        case._end(self.handover_id, HandoverState.WITHDRAWN, self.occurred_at, self.reason)


class HandoverCompleted(Event):
    handover_id: UUID

    def apply_to(self, case: Case) -> None:
        handover = case.handovers[self.handover_id]
        handover.state = HandoverState.COMPLETED
        handover.completed_at = self.occurred_at
