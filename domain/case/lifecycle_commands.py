"""The case's lead, closure, recorded reads and erasure, and the facts they record
(the rules: ``lifecycle.py``; the opening is ``Case.open``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from domain import errors
from domain.case.act import Act
from domain.case.handover_commands import HandoverWithdrawn
from domain.case.state import CaseState, Event, who
from domain.policy import DeadlinePolicy
from domain.values import Outcome, Stage

if TYPE_CHECKING:
    from domain.case import Case


class LifecycleCommands(CaseState):
    """Lead transfer, closure, reads and erasure."""

    # ---- lead ----------------------------------------------------------------

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
        self.trigger_event(LeadTransferred, to_agency=to_agency, reason=reason, **who(act))

    # ---- closure, reads, erasure ---------------------------------------------

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
                HandoverWithdrawn,
                handover_id=handover.handover_id,
                reason="case closed",
                **who(act),
            )
        self.trigger_event(CaseClosed, outcome=outcome.value, target=target, **who(act))

    def record_read(
        self, act: Act, *, role: str, scope: str, categories: Sequence[str] = ()
    ) -> None:
        """A read of this case by an auditor, or of health data by anyone, becomes part
        of its history (who, which agency, when, what). Allowed on closed cases."""
        self.trigger_event(
            CaseRead, role=role, scope=scope, categories=sorted(set(categories)), **who(act)
        )

    def erase_participant(
        self,
        act: Act,
        policy: DeadlinePolicy | None = None,
        *,
        reason: str,
        ground: str | None = None,
        as_auditor: bool = False,
    ) -> None:
        """Crypto-shredding ends retention (DOMAIN "Privacy and erasure"): after the
        case closed and the programme's retention period passed on the hub's clock,
        or earlier on a recorded Art. 17 GDPR ``ground``."""
        if not as_auditor and act.agency != self.lead_agency:
            raise errors.NotLeadAgency("only the lead agency or an auditor may erase")
        if self.erased_at is not None:
            raise errors.AlreadyDone("the participant's data is already erased")
        act.not_before(self.opened_at, "the opening of the case")
        if not ground:
            retention = (policy or DeadlinePolicy()).retention
            if self.closed_at is None:
                raise errors.RetentionRunning(
                    "erasure follows the closure and the retention period; "
                    "state an Art. 17 ground to erase an open case"
                )
            ends = self.closed_at + retention
            if act.hub_time < ends:
                raise errors.RetentionRunning(
                    "the retention period has not ended; state an Art. 17 ground to erase earlier",
                    retention_ends_at=ends.isoformat(),
                )
        self.trigger_event(ParticipantErased, reason=reason, ground=ground, **who(act))


class LeadTransferred(Event):
    to_agency: str
    reason: str

    def apply_to(self, case: Case) -> None:
        case.lead_agency = self.to_agency


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


class CaseRead(Event):
    role: str
    scope: str
    categories: list[str]

    passive = True  # a read changes nothing in the case, not even its last activity


class ParticipantErased(Event):
    """Schema v2 added ``ground`` (an Art. 17 request that ended retention early)."""

    class_version = 2
    reason: str
    ground: str | None

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        state["ground"] = None

    def apply_to(self, case: Case) -> None:
        case.erased_at = self.occurred_at
        case.participant = {"pseudonym": case.participant.get("pseudonym"), "erased": True}
