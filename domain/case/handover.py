"""The handover state machine (DOMAIN rules 1, 2, 6): who may do what to a handover.

Pure functions over ``Handover`` values; the aggregate calls them before it
records a fact, and the projections read the same states.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from uuid import UUID

from domain import errors
from domain.case.act import Act
from domain.policy import DeadlinePolicy
from domain.values import AgencyKind, DataCategory, HandoverKind, HandoverState

OPEN_STATES = frozenset({HandoverState.OFFERED, HandoverState.ACCEPTED})
# A receiver whose handover ended this way took no part in the case (rule 7).
ENDED_WITHOUT_PART = frozenset({HandoverState.DECLINED, HandoverState.WITHDRAWN})


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
    decision: str | None = None  # § 14: granted, refused, partly_granted
    opinion_requested_at: datetime | None = None
    opinion_received_at: datetime | None = None

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    @property
    def is_rehab(self) -> bool:
        return self.kind is HandoverKind.REHAB_APPLICATION

    @property
    def was_forwarded_to_receiver(self) -> bool:
        """The second agency of a § 14 chain: it must decide."""
        return self.is_rehab and self.forwarded_from is not None

    @property
    def awaits_decision(self) -> bool:
        """A § 14 application not yet decided, declined or withdrawn."""
        return self.is_rehab and self.is_open


def require_receiver(handover: Handover, act: Act, verb: str) -> None:
    if handover.to_agency != act.agency:
        raise errors.NotReceiver(
            f"only the receiving agency {handover.to_agency} may {verb} "
            f"handover {handover.handover_id}"
        )


def require_state(handover: Handover, verb: str, *states: HandoverState) -> None:
    if handover.state not in states:
        raise errors.InvalidTransition(
            f"cannot {verb} handover {handover.handover_id}: it is {handover.state.value}"
        )


def require_roles(
    policy: DeadlinePolicy,
    kind: HandoverKind,
    act: Act,
    to_agency: str,
    lead: str,
    *,
    check_sender: bool = True,
) -> None:
    """Rule 6: which agency kinds may send and receive this kind of handover. A
    handover that goes to the lead only (a ``return``) needs no receiver kind: the
    lead is whoever policy let lead."""
    roles = policy.roles.handovers[kind]
    sender_kind, receiver_kind = act.kind_of(act.agency), act.kind_of(to_agency)
    if check_sender and sender_kind not in roles.senders:
        raise errors.KindNotAllowed(
            f"a {_kind_name(sender_kind)} may not send a {kind.value} handover",
            sender_kind=_kind_name(sender_kind),
        )
    if roles.to_lead_only:
        if to_agency != lead:
            raise errors.InvalidRecipient(f"a {kind.value} handover goes to the lead agency {lead}")
        return
    if receiver_kind not in roles.receivers:
        raise errors.KindNotAllowed(
            f"a {kind.value} handover may not go to a {_kind_name(receiver_kind)}",
            receiver_kind=_kind_name(receiver_kind),
        )


def require_forwardable(
    handover: Handover, act: Act, policy: DeadlinePolicy, to_agency: str, lead: str
) -> None:
    """Rule 2 (§ 14 Abs. 1 SGB IX): once, by the first agency, within its competence
    period, to a rehabilitation agency, and only an open application."""
    if handover.was_forwarded_to_receiver and handover.to_agency == act.agency:
        # Checked before the state, so the receiver hears the rule, not a state.
        raise errors.ForwardLimitReached(
            "a rehabilitation application may be forwarded only once; "
            "the second agency must decide (§ 14 SGB IX)"
        )
    require_receiver(handover, act, "forward")
    require_state(handover, "forward", HandoverState.OFFERED)
    if to_agency in (act.agency, handover.from_agency):
        raise errors.InvalidRecipient(
            "a handover is forwarded to an agency other than its sender and receiver"
        )
    if handover.is_rehab:
        due = policy.forward_due(handover.offered_at)
        if act.occurred_at > due:
            raise errors.ForwardPeriodOver(
                f"the competence period of {policy.forward_days} days from receipt is over; "
                "the application must be decided (§ 14 Abs. 1 SGB IX)",
                forward_due_at=due.isoformat(),
            )
        to_kind = act.kind_of(to_agency)
        if to_kind not in policy.roles.forward_to:
            raise errors.KindNotAllowed(
                f"an application is forwarded only to a rehabilitation agency, "
                f"not to a {_kind_name(to_kind)}",
                receiver_kind=_kind_name(to_kind),
            )
    else:
        # The forwarder passes the handover on: only the next receiver's kind counts.
        require_roles(policy, handover.kind, act, to_agency, lead, check_sender=False)


def require_no_open_rehab_chain(handovers: Iterable[Handover]) -> None:
    """Rule 2: while a chain is open, no new rehabilitation application."""
    open_ids = [str(h.handover_id) for h in handovers if h.awaits_decision]
    if open_ids:
        raise errors.RehabApplicationOpen(
            "a rehabilitation application of this case awaits its decision",
            handover_ids=open_ids,
        )


def require_not_bound_to_decide(handover: Handover, verb: str) -> None:
    """The second agency of a § 14 chain decides; the chain cannot be undone."""
    if handover.was_forwarded_to_receiver:
        raise errors.DecisionRequired(
            f"a forwarded rehabilitation application cannot be {verb}; "
            "the receiving agency decides it (§ 14 Abs. 2 SGB IX)"
        )


def involved_in(opener: str, lead: str, parties: Iterable[tuple[str, str, str]]) -> set[str]:
    """Rule 7, the one definition (the aggregate and the case document call it): the
    opener, the lead, every sender, and every receiver whose handover did not end
    declined or withdrawn. ``parties``: (from agency, to agency, state value)."""
    involved = {opener, lead}
    for from_agency, to_agency, state in parties:
        involved.add(from_agency)
        if state not in _ENDED_WITHOUT_PART:
            involved.add(to_agency)
    return involved


_ENDED_WITHOUT_PART = frozenset(state.value for state in ENDED_WITHOUT_PART)


def _kind_name(kind: AgencyKind | None) -> str:
    return kind.value if kind is not None else "agency of unknown kind"
