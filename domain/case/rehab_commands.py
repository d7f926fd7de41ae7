"""§ 14 SGB IX on a case: the decision on a rehabilitation application and the expert
opinion, and the facts they record.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

from domain import errors
from domain.case import handover as rules
from domain.case.act import Act
from domain.case.handover import Handover
from domain.case.state import CaseState, Event, who
from domain.policy import DeadlinePolicy
from domain.values import HandoverState, RehabOutcome

if TYPE_CHECKING:
    from domain.case import Case


class RehabCommands(CaseState):
    """The deciding agency's steps on a rehabilitation application."""

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
            RehabDecided,
            handover_id=handover_id,
            outcome=RehabOutcome(outcome).value,
            reason=reason,
            document_ref=document_ref,
            late_entry=late,
            counted_at=counted_at,
            **who(act),
        )

    def request_expert_opinion(self, act: Act, *, handover_id: UUID) -> None:
        handover = self._rehab_received(act, handover_id, "request an opinion on")
        if handover.opinion_requested_at is not None:
            raise errors.AlreadyDone("an expert opinion is already requested")
        self.trigger_event(ExpertOpinionRequested, handover_id=handover_id, **who(act))

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
            ExpertOpinionReceived,
            handover_id=handover_id,
            decide_due_at=policy.decide_due_after_opinion(act.occurred_at),
            **who(act),
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


class ExpertOpinionRequested(Event):
    handover_id: UUID

    def apply_to(self, case: Case) -> None:
        case.handovers[self.handover_id].opinion_requested_at = self.occurred_at


class ExpertOpinionReceived(Event):
    handover_id: UUID
    decide_due_at: datetime

    def apply_to(self, case: Case) -> None:
        handover = case.handovers[self.handover_id]
        handover.opinion_received_at = self.occurred_at
        handover.decide_due_at = self.decide_due_at
