"""What every part of the ``Case`` aggregate shares: the base of its facts
(``Event``, which is ``Case.Event``), the state the commands read, and the
guards they check first.

The commands live in mixins by theme (``*_commands.py``), each a plain class over
``CaseState``; ``Case`` in ``domain/case/__init__.py`` is composed from them.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

from eventsourcing.domain import Aggregate, CanMutateAggregate

from domain import errors
from domain.case import handover as rules
from domain.case.act import Act
from domain.case.consent import Consent
from domain.case.handover import Handover
from domain.case.lifecycle import add_months
from domain.case.records import Employment, Measure
from domain.values import AppointmentState, Outcome, Stage


class Event(Aggregate.Event):
    """Every fact of a case: who (agency, actor) and when at the agency.

    ``Case.Event``: its topic and those of its subclasses are kept as
    ``domain.case:Case.<Name>`` (see ``_keep_stored_topics`` in ``domain.case``).
    """

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


def who(act: Act) -> dict[str, Any]:
    """The fields every ``Case.Event`` carries."""
    return {"agency": act.agency, "actor": act.actor, "occurred_at": act.occurred_at}


class CaseState:
    """The state of a case (set by ``Case.__init__`` and the events), the facts derived
    from it and the guards every command starts with."""

    programme: str
    site: str | None
    assignment_months: int
    participant: dict[str, Any]
    opened_by: str
    lead_agency: str
    opened_at: datetime
    stage: Stage
    outcome: Outcome | None
    closed_at: datetime | None
    handovers: dict[UUID, Handover]
    consents: dict[str, Consent]
    # What the appointment rules read, and no more (the views take kind, time and the
    # rest from the events): each appointment's state, keyed by the 32 hex digits of
    # its id (``UUID.hex``), and when each one still scheduled was scheduled (an
    # outcome may not predate it; a held or missed one drops out). Hex keys because a
    # case of thousands of appointments decodes them from its snapshot on every write:
    # as UUIDs that took 2.8 ms per 3,333, as strings 0.16 ms. No notes: no rule reads
    # them (class version 2, ``Case.upcast_v1_v2``).
    appointments: dict[str, AppointmentState]
    appointments_scheduled_at: dict[str, datetime]
    measures: dict[UUID, Measure]
    coach: str | None
    coach_agency: str | None
    agreement_signed_at: datetime | None
    plan_goals: tuple[str, ...] | None
    plan_modules: tuple[str, ...]
    assignment_started_at: datetime | None
    extensions: list[int]
    employment: Employment | None
    aftercare_until: datetime | None
    aftercare_ended_at: datetime | None
    erased_at: datetime | None
    last_activity_at: datetime

    if TYPE_CHECKING:
        # ``Aggregate`` implements it; ``Case`` inherits both.
        def trigger_event(
            self, event_class: type[CanMutateAggregate[UUID]], **kwargs: Any
        ) -> None: ...

    # ---- derived facts -------------------------------------------------------

    @property
    def involved_agencies(self) -> set[str]:
        """Rule 7: an agency whose only part was a declined or withdrawn handover
        is no longer involved."""
        return rules.involved_in(
            self.opened_by,
            self.lead_agency,
            ((h.from_agency, h.to_agency, h.state.value) for h in self.handovers.values()),
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
