"""A stateful property test of the ``Case`` aggregate under DOMAIN.md's default roles.

Agencies of every kind send each other random commands in random orders, on two
random clocks: the hub's clock moves forward, and each act names an ``occurred_at``
somewhat before it (late entries, days late), at it, or after it (within the allowed
skew, or beyond it and so refused). After every step the invariants of issue 11 must
hold:

* the lead changes only by an allowed path: acceptance of a lead-moving handover sent
  by the lead to an agency of a lead kind, or an explicit transfer by the lead;
* every handover offered or forwarded with data categories rests on consents issued
  by their source agency (the sender; for a forward the forwarder or the chain's
  origin), covering each category for the recipient, valid at both ``occurred_at``
  and ``recorded_at``; handovers go only between kinds the roles allow;
* a rehabilitation chain is forwarded at most once, within its competence period, to
  a rehabilitation agency, and the second agency only decides; at most one
  application awaits its decision; a late decision counts on the hub's clock unless
  a document supports it;
* a closed case has no open handover;
* replaying the recorded events gives an equal state.

A command refused with ``DomainError`` must change nothing (same version, nothing
pending).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from domain.case import STATUTORY_TASK, Act, Case, consent_valid
from domain.errors import DomainError
from domain.values import DataCategory, HandoverKind, HandoverState, Outcome, RehabOutcome
from projections.case_doc import reduce_case
from projections.caseload import involved_agencies
from services.replay import as_record, event_to_dict
from tests.unit.case_builders import (
    CHAMBER,
    CLINIC,
    COACHING,
    DRV,
    EMPLOYMENT_AGENCY,
    INTEGRATION_OFFICE,
    JOBCENTER,
    KINDS,
    OUTSIDER,
    POLICY,
    PROGRAMME,
    T0,
    assert_replays_equal,
)

ROLES = POLICY.roles
AGENCIES = [
    JOBCENTER,
    EMPLOYMENT_AGENCY,
    CLINIC,
    DRV,
    COACHING,
    CHAMBER,
    INTEGRATION_OFFICE,
    OUTSIDER,
]
CATEGORIES = [DataCategory.HEALTH, DataCategory.CONTACT, DataCategory.BENEFITS]
RIGHTFUL = "rightful"  # the party the rules name for this command

# Someone to act: mostly the rightful party, often anyone at all.
who = st.sampled_from([RIGHTFUL] * 12 + AGENCIES)
anyone = st.sampled_from(AGENCIES)
pick = st.integers(min_value=0, max_value=10_000)
# The hub's clock moves forward by this many hours before the act is received...
advance = st.sampled_from([0, 0, 1, 5, 24, 72, 24 * 8])
# ... and the act happened this many hours before reception (negative: after it, by
# the agency's clock; three minutes are within the skew, twelve are not).
lag = st.sampled_from([0] * 6 + [0.5, 3, 30, 30, 24 * 3, 24 * 6, -0.05, -0.2])
categories = st.one_of(
    st.just([]), st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=2, unique=True)
)


class CaseMachine(RuleBasedStateMachine):
    case: Case

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Any] = []
        self.hub = T0
        self.refusals = 0

    # ---- helpers -------------------------------------------------------------------

    def act(self, agency: str, hours_ahead: float, hours_late: float) -> Act:
        self.hub += timedelta(hours=hours_ahead)
        occurred = self.hub - timedelta(hours=hours_late)
        return Act(agency, f"user@{agency}", occurred, recorded_at=self.hub, kinds=KINDS)

    def attempt(self, command: Callable[[], Act]) -> None:
        """Run a command (it builds its own act); a refusal must change nothing,
        a success is checked event by event."""
        version = self.case.version
        lead = self.case.lead_agency
        consents = {cid: (c.revoked_at, c.granted_by) for cid, c in self.case.consents.items()}
        try:
            used = command()
        except DomainError:
            self.refusals += 1
            assert self.case.version == version
            assert list(self.case.pending_events) == []
            assert self.case.lead_agency == lead
            return
        new = list(self.case.collect_events())
        assert new, "a command that succeeds records at least one fact"
        self.events.extend(new)
        self._check_lead_path(lead, new)
        for event in new:
            name = type(event).__name__
            if name in ("HandoverOffered", "HandoverForwarded"):
                self._check_disclosure(event, used, consents)
            if name == "RehabDecided":
                self._check_decision(event, used)

    def _handover(self, index: int) -> Any:
        handovers = list(self.case.handovers.values())
        return handovers[index % len(handovers)]

    def _party(self, choice: str, rightful: str) -> str:
        return rightful if choice == RIGHTFUL else choice

    # ---- per-event checks -------------------------------------------------------------

    def _check_lead_path(self, lead: str, new: list[Any]) -> None:
        for event in new:
            name = type(event).__name__
            if name == "HandoverAccepted":
                handover = self.case.handovers[event.handover_id]
                if event.moves_lead:
                    assert handover.kind in ROLES.lead_moving
                    assert KINDS.get(handover.to_agency) in ROLES.may_lead
                if event.moves_lead and handover.from_agency == lead:
                    lead = handover.to_agency
            elif name == "LeadTransferred":
                assert event.agency == lead, "only the lead transfers the lead"
                assert KINDS.get(event.to_agency) in ROLES.may_lead
                assert event.to_agency != lead
                lead = event.to_agency
        assert self.case.lead_agency == lead, "the lead moved by no allowed path"

    def _check_disclosure(
        self, event: Any, used: Act, consents: dict[str, tuple[datetime | None, str]]
    ) -> None:
        offered = type(event).__name__ == "HandoverOffered"
        handover = self.case.handovers[event.handover_id if offered else event.new_handover_id]
        # roles: who may send and receive this kind (rule 6, § 14 for forwards)
        roles = ROLES.handovers[handover.kind]
        if handover.forwarded_from is not None and handover.is_rehab:
            assert KINDS.get(handover.to_agency) in ROLES.forward_to
        elif handover.forwarded_from is not None:
            # a forwarder passes the handover on: only the next receiver's kind counts
            assert roles.to_lead_only or KINDS.get(handover.to_agency) in roles.receivers
        else:
            assert KINDS.get(handover.from_agency) in roles.senders
            assert roles.to_lead_only or KINDS.get(handover.to_agency) in roles.receivers
        if not handover.data_categories:
            assert list(event.legal_basis) == [STATUTORY_TASK]
            return
        sources = {handover.from_agency, handover.chain_origin_agency}
        moments = {used.occurred_at, used.hub_time}
        covered: set[DataCategory] = set()
        for consent_id in event.legal_basis:
            consent = self.case.consents[consent_id]
            revoked_before, granted_by = consents[consent_id]
            assert revoked_before is None, "a revoked consent carried data"
            assert granted_by == consent.source_agency, "consent not issued by its source"
            assert consent.source_agency in sources
            assert handover.to_agency in consent.recipients
            for moment in moments:
                assert consent_valid(consent.valid_from, consent.valid_until, None, moment)
            covered |= consent.categories
        assert set(handover.data_categories) <= covered

    def _check_decision(self, event: Any, used: Act) -> None:
        late = used.hub_time - used.occurred_at > POLICY.clock.late_after
        assert event.late_entry is late
        expected = used.hub_time if late and not event.document_ref else used.occurred_at
        assert event.counted_at == expected

    # ---- the case --------------------------------------------------------------------

    @initialize(
        opener=st.sampled_from([JOBCENTER, EMPLOYMENT_AGENCY, CLINIC]),
        consent_days=st.one_of(st.none(), st.integers(1, 12)),
    )
    def open(self, opener: str, consent_days: int | None = None) -> None:
        """The opener opens the case and, mostly, records a broad consent of its own
        (every category, to everyone) for a while, so data can flow and expire."""
        opened = Act(opener, f"user@{opener}", T0, recorded_at=T0, kinds=KINDS)
        self.case = Case.open(
            uuid4(), opened, POLICY, programme=PROGRAMME, participant={"pseudonym": "P-0001"}
        )
        if consent_days is not None:
            self.case.grant_consent(
                opened,
                consent_id="c-opener",
                categories=CATEGORIES,
                source_agency=opener,
                recipients=AGENCIES,
                valid_from=T0,
                valid_until=T0 + timedelta(days=consent_days),
            )
        self.events.extend(self.case.collect_events())

    # ---- consents --------------------------------------------------------------------

    @rule(
        agency=who,
        index=pick,
        source=who,
        cats=st.one_of(st.just(CATEGORIES), categories),
        recipients=st.one_of(
            st.just(AGENCIES), st.lists(anyone, min_size=1, max_size=3, unique=True)
        ),
        start=st.integers(-10, 5),
        length=st.one_of(st.none(), st.integers(1, 20)),
        ahead=advance,
        late=lag,
    )
    def grant(
        self,
        agency: str,
        index: int,
        source: str,
        cats: list[DataCategory],
        recipients: list[str],
        start: int,
        length: int | None,
        ahead: float,
        late: float,
    ) -> None:
        involved = sorted(self.case.involved_agencies)
        agency = self._party(agency, involved[index % len(involved)])

        def run() -> Act:
            a = self.act(agency, ahead, late)
            valid_from = self.hub + timedelta(days=start)
            self.case.grant_consent(
                a,
                consent_id=f"c-{uuid4().hex[:6]}",
                categories=cats or [DataCategory.HEALTH],
                source_agency=self._party(source, agency),
                recipients=recipients,
                valid_from=valid_from,
                valid_until=None if length is None else valid_from + timedelta(days=length),
            )
            return a

        self.attempt(run)

    @precondition(lambda self: self.case.consents and len(self.events) % 3 == 0)
    @rule(index=pick, agency=who, ahead=advance, late=lag)
    def revoke(self, index: int, agency: str, ahead: float, late: float) -> None:
        consents = list(self.case.consents.values())
        consent = consents[index % len(consents)]

        def run() -> Act:
            a = self.act(self._party(agency, consent.source_agency), ahead, late)
            self.case.revoke_consent(a, consent_id=consent.consent_id)
            return a

        self.attempt(run)

    # ---- handovers -------------------------------------------------------------------

    @rule(
        kind=st.sampled_from([RIGHTFUL, RIGHTFUL, *HandoverKind]),
        sender=who,
        receiver=who,
        index=pick,
        cats=categories,
        ahead=advance,
        late=lag,
    )
    def offer(
        self,
        kind: HandoverKind | str,
        sender: str,
        receiver: str,
        index: int,
        cats: list[DataCategory],
        ahead: float,
        late: float,
    ) -> None:
        involved = sorted(self.case.involved_agencies)
        if kind == RIGHTFUL:  # a kind some involved agency may send
            sendable = [
                k
                for k in HandoverKind
                if any(KINDS.get(a) in ROLES.handovers[k].senders for a in involved)
            ]
            kind = sendable[index % len(sendable)] if sendable else HandoverKind.RETURN
        kind = HandoverKind(kind)
        roles = ROLES.handovers[kind]
        senders = [a for a in involved if KINDS.get(a) in roles.senders] or involved
        sender = self._party(sender, senders[index % len(senders)])
        receivers = [a for a in AGENCIES if KINDS[a] in roles.receivers and a != sender]
        if roles.to_lead_only or not receivers:
            receivers = [self.case.lead_agency]

        def run() -> Act:
            a = self.act(sender, ahead, late)
            self.case.offer_handover(
                a,
                POLICY,
                handover_id=uuid4(),
                kind=kind,
                to_agency=self._party(receiver, receivers[index // 7 % len(receivers)]),
                data_categories=cats,
            )
            return a

        self.attempt(run)

    def _answer(
        self, index: int, agency: str, ahead: float, late: float, command: Callable[..., None]
    ) -> None:
        handover = self._handover(index)

        def run() -> Act:
            a = self.act(self._party(agency, handover.to_agency), ahead, late)
            command(a, handover.handover_id)
            return a

        self.attempt(run)

    @precondition(lambda self: self.case.handovers)
    @rule(index=pick, agency=who, ahead=advance, late=lag)
    def accept(self, index: int, agency: str, ahead: float, late: float) -> None:
        self._answer(
            index,
            agency,
            ahead,
            late,
            lambda a, h: self.case.accept_handover(a, POLICY, handover_id=h),
        )

    @precondition(lambda self: self.case.handovers)
    @rule(index=pick, agency=who, ahead=advance, late=lag)
    def decline(self, index: int, agency: str, ahead: float, late: float) -> None:
        self._answer(
            index,
            agency,
            ahead,
            late,
            lambda a, h: self.case.decline_handover(a, handover_id=h, reason="no"),
        )

    @precondition(lambda self: self.case.handovers)
    @rule(index=pick, agency=who, ahead=advance, late=lag)
    def complete(self, index: int, agency: str, ahead: float, late: float) -> None:
        self._answer(
            index, agency, ahead, late, lambda a, h: self.case.complete_handover(a, handover_id=h)
        )

    @precondition(lambda self: self.case.handovers)
    @rule(
        index=pick,
        agency=who,
        outcome=st.sampled_from(list(RehabOutcome)),
        document=st.booleans(),
        ahead=advance,
        late=lag,
    )
    def decide(
        self,
        index: int,
        agency: str,
        outcome: RehabOutcome,
        document: bool,
        ahead: float,
        late: float,
    ) -> None:
        self._answer(
            index,
            agency,
            ahead,
            late,
            lambda a, h: self.case.decide_rehab(
                a,
                POLICY,
                handover_id=h,
                outcome=outcome,
                document_ref="notice-1" if document else None,
            ),
        )

    @precondition(lambda self: self.case.handovers)
    @rule(index=pick, agency=who, receive=st.booleans(), ahead=advance, late=lag)
    def expert_opinion(
        self, index: int, agency: str, receive: bool, ahead: float, late: float
    ) -> None:
        if receive:
            command = lambda a, h: self.case.receive_expert_opinion(a, POLICY, handover_id=h)  # noqa: E731
        else:
            command = lambda a, h: self.case.request_expert_opinion(a, handover_id=h)  # noqa: E731
        self._answer(index, agency, ahead, late, command)

    @precondition(lambda self: self.case.handovers)
    @rule(index=pick, agency=who, to=who, ahead=advance, late=lag)
    def forward(self, index: int, agency: str, to: str, ahead: float, late: float) -> None:
        handover = self._handover(index)
        targets = [
            a
            for a in AGENCIES
            if KINDS[a] in ROLES.forward_to and a not in (handover.from_agency, handover.to_agency)
        ]
        to = self._party(to, targets[index % len(targets)] if targets else DRV)
        self._answer(
            index,
            agency,
            ahead,
            late,
            lambda a, h: self.case.forward_handover(
                a, POLICY, handover_id=h, new_handover_id=uuid4(), to_agency=to, reason="r"
            ),
        )

    @precondition(lambda self: self.case.handovers)
    @rule(index=pick, agency=who, ahead=advance, late=lag)
    def withdraw(self, index: int, agency: str, ahead: float, late: float) -> None:
        handover = self._handover(index)

        def run() -> Act:
            a = self.act(self._party(agency, handover.from_agency), ahead, late)
            self.case.withdraw_handover(a, handover_id=handover.handover_id, reason="r")
            return a

        self.attempt(run)

    # ---- lead and closure ------------------------------------------------------------

    @precondition(lambda self: len(self.events) % 4 == 3)  # now and then
    @rule(agency=who, to=who, ahead=advance, late=lag)
    def transfer_lead(self, agency: str, to: str, ahead: float, late: float) -> None:
        leads = sorted(
            a
            for a in self.case.involved_agencies
            if KINDS.get(a) in ROLES.may_lead and a != self.case.lead_agency
        )
        to = self._party(to, leads[0] if leads else EMPLOYMENT_AGENCY)

        def run() -> Act:
            a = self.act(self._party(agency, self.case.lead_agency), ahead, late)
            self.case.transfer_lead(a, POLICY, to_agency=to, reason="r")
            return a

        self.attempt(run)

    @precondition(lambda self: len(self.events) >= 6)  # let the case live a while
    @rule(
        agency=who,
        withdraw_open=st.booleans(),
        outcome=st.sampled_from([o for o in Outcome if o is not Outcome.TRANSFERRED]),
        ahead=advance,
        late=lag,
    )
    def close(
        self, agency: str, withdraw_open: bool, outcome: Outcome, ahead: float, late: float
    ) -> None:
        was_open = [h.handover_id for h in self.case.handovers.values() if h.is_open]

        def run() -> Act:
            a = self.act(self._party(agency, self.case.lead_agency), ahead, late)
            self.case.close(a, outcome=outcome, withdraw_open=withdraw_open)
            return a

        self.attempt(run)
        if self.case.is_closed and was_open:
            assert withdraw_open, "a case with open handovers closed without withdrawing them"

    # ---- invariants ------------------------------------------------------------------

    @invariant()
    def rehab_chains_are_forwarded_once_and_decided_by_the_second_agency(self) -> None:
        handovers = self.case.handovers
        for handover in handovers.values():
            if not handover.is_rehab:
                continue
            if handover.forwarded_to is not None:
                assert handover.forwarded_from is None, "forwarded twice"
                assert handover.decided_at is not None
                assert handover.decided_at <= POLICY.forward_due(handover.offered_at)
            if handover.forwarded_from is not None:
                assert handovers[handover.forwarded_from].forwarded_from is None
                assert handover.forwarded_to is None
                assert handover.state in (
                    HandoverState.OFFERED,
                    HandoverState.ACCEPTED,
                    HandoverState.COMPLETED,
                ), f"the second agency did not decide: {handover.state}"
            if handover.state is HandoverState.COMPLETED:
                assert handover.decision is not None, "completed without a decision"
        assert len([h for h in handovers.values() if h.awaits_decision]) <= 1

    @invariant()
    def closed_case_has_no_open_handover(self) -> None:
        if self.case.is_closed:
            assert not any(h.is_open for h in self.case.handovers.values())
            assert not any(h.awaits_decision for h in self.case.handovers.values())

    @invariant()
    def nothing_is_dated_before_the_opening(self) -> None:
        assert all(e.occurred_at >= self.case.opened_at for e in self.events)

    @invariant()
    def replaying_the_events_gives_an_equal_state(self) -> None:
        assert_replays_equal(self.case, self.events)

    @invariant()
    def the_case_document_the_views_fold_agrees_with_the_aggregate(self) -> None:
        """One rule, two sides: the reducer the views and ``hub replay`` fold decides
        stage, lead, involvement, handover states and consent validity as the
        aggregate does."""
        doc = None
        for position, event in enumerate(self.events, start=1):
            doc = reduce_case(doc, as_record(str(self.case.id), event_to_dict(event, position)))
        assert doc is not None
        assert doc["stage"] == self.case.stage.value
        assert doc["lead_agency"] == self.case.lead_agency
        assert set(involved_agencies(doc)) == self.case.involved_agencies
        assert {h: d["state"] for h, d in doc["handovers"].items()} == {
            str(h): x.state.value for h, x in self.case.handovers.items()
        }
        moments = [self.hub, self.case.opened_at, *(e.occurred_at for e in self.events[-3:])]
        for consent in self.case.consents.values():
            stored = doc["consents"][consent.consent_id]
            for at in moments:
                assert consent_valid(
                    datetime.fromisoformat(stored["valid_from"]),
                    _moment(stored["valid_until"]),
                    _moment(stored["revoked_at"]),
                    at,
                ) == consent_valid(consent.valid_from, consent.valid_until, consent.revoked_at, at)


def _moment(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


CaseMachine.TestCase.settings = settings(
    max_examples=200,
    stateful_step_count=30,
    deadline=timedelta(seconds=2),
    suppress_health_check=[HealthCheck.too_slow],
)
test_case_state_machine = CaseMachine.TestCase


def test_the_machine_reaches_the_interesting_states() -> None:
    """The generator is not vacuous: a scripted run through it forwards, decides,
    moves the lead and closes."""
    machine = CaseMachine()
    machine.open(CLINIC)
    machine.offer(HandoverKind.DISCHARGE, RIGHTFUL, JOBCENTER, 0, [], 1, 0)
    discharge: UUID = next(iter(machine.case.handovers))
    machine.accept(0, RIGHTFUL, 1, 0)
    assert machine.case.lead_agency == JOBCENTER
    assert machine.case.handover(discharge).state is HandoverState.ACCEPTED
    machine.complete(0, RIGHTFUL, 1, 0)
    machine.offer(HandoverKind.REHAB_APPLICATION, RIGHTFUL, EMPLOYMENT_AGENCY, 0, [], 1, 0)
    machine.forward(1, RIGHTFUL, DRV, 24, 0)
    machine.decide(2, RIGHTFUL, RehabOutcome.GRANTED, False, 24 * 8, 30)
    machine.close(RIGHTFUL, False, Outcome.EMPLOYED, 1, 0)
    assert machine.case.is_closed
    assert machine.refusals == 0
    machine.rehab_chains_are_forwarded_once_and_decided_by_the_second_agency()
    machine.replaying_the_events_gives_an_equal_state()
