"""The ``Case`` aggregate: one participant in one programme.

The case is the consistency boundary: its handovers, consents, plan, appointments,
measures and lifecycle live here, so the consent rule and the § 14 SGB IX rules
are checked in one place. Public methods are commands (they check the rules and
raise ``DomainError``); each event class is a fact they record, and its
``apply_to`` says how it changes the state on replay. Every fact carries agency,
actor and ``occurred_at`` and moves ``last_activity_at`` (``Case.Event``).

``Case`` is composed here from mixins by theme, each with the events it records:
``consent_commands``, ``handover_commands``, ``rehab_commands`` (§ 14 SGB IX),
``record_commands`` and ``lifecycle_commands``; the state and guards they share are
``state.CaseState``. The rules themselves live in ``act``, ``consent``, ``handover``,
``lifecycle`` and ``records``. Stored events name their class by topic
``domain.case:Case.<EventName>``, so every event class is an attribute of ``Case``
and keeps that topic wherever it is written (``_keep_stored_topics`` below).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, CanMutateAggregate, event

from domain import errors
from domain.case import (
    consent_commands,
    handover_commands,
    lifecycle_commands,
    record_commands,
    rehab_commands,
    state,
)
from domain.case.act import Act
from domain.case.consent import STATUTORY_TASK, Consent, consent_valid
from domain.case.consent_commands import ConsentCommands
from domain.case.handover import Handover
from domain.case.handover_commands import PRIORITIES, HandoverCommands
from domain.case.lifecycle_commands import LifecycleCommands
from domain.case.record_commands import RecordCommands
from domain.case.records import Employment, Measure
from domain.case.rehab_commands import RehabCommands
from domain.case.snapshot import CaseSnapshot
from domain.policy import DeadlinePolicy
from domain.values import AppointmentState, Stage

__all__ = [
    "PRIORITIES",
    "STATUTORY_TASK",
    "Act",
    "Case",
    "Consent",
    "Employment",
    "Handover",
    "Measure",
    "consent_valid",
]


class Case(
    HandoverCommands,
    RehabCommands,
    ConsentCommands,
    RecordCommands,
    LifecycleCommands,
    Aggregate,
):
    """A participant's case in one programme."""

    Event = state.Event

    # Every fact the case records, by the name its stored topic gives it.
    # consent_commands.py
    ConsentGranted = consent_commands.ConsentGranted
    ConsentRevoked = consent_commands.ConsentRevoked
    # handover_commands.py
    HandoverOffered = handover_commands.HandoverOffered
    HandoverAccepted = handover_commands.HandoverAccepted
    HandoverDeclined = handover_commands.HandoverDeclined
    HandoverForwarded = handover_commands.HandoverForwarded
    HandoverWithdrawn = handover_commands.HandoverWithdrawn
    HandoverCompleted = handover_commands.HandoverCompleted
    # rehab_commands.py
    RehabDecided = rehab_commands.RehabDecided
    ExpertOpinionRequested = rehab_commands.ExpertOpinionRequested
    ExpertOpinionReceived = rehab_commands.ExpertOpinionReceived
    # record_commands.py
    CoachAssigned = record_commands.CoachAssigned
    AppointmentScheduled = record_commands.AppointmentScheduled
    AppointmentHeld = record_commands.AppointmentHeld
    AppointmentMissed = record_commands.AppointmentMissed
    AgreementSigned = record_commands.AgreementSigned
    PlanAgreed = record_commands.PlanAgreed
    PlanUpdated = record_commands.PlanUpdated
    MeasureStarted = record_commands.MeasureStarted
    MeasureEnded = record_commands.MeasureEnded
    AssignmentExtended = record_commands.AssignmentExtended
    EmploymentStarted = record_commands.EmploymentStarted
    AftercareStarted = record_commands.AftercareStarted
    AftercareEnded = record_commands.AftercareEnded
    NoteAdded = record_commands.NoteAdded
    # lifecycle_commands.py
    LeadTransferred = lifecycle_commands.LeadTransferred
    CaseClosed = lifecycle_commands.CaseClosed
    CaseRead = lifecycle_commands.CaseRead
    ParticipantErased = lifecycle_commands.ParticipantErased

    # How the library snapshots a case (``domain/case/snapshot.py``). The class
    # version is the shape of the state a snapshot stores: raise it, with
    # ``upcast_v<n>_v<n+1>(state)`` beside it, when that shape changes.
    Snapshot = CaseSnapshot
    class_version = 2

    @staticmethod
    def upcast_v1_v2(state: dict[str, Any]) -> None:
        """Version 2 keeps no notes and of each appointment only what the rules read.

        ``state`` is a stored v1 snapshot's state as plain JSON values (the library
        calls this before ``CaseSnapshot`` decodes it): ``notes`` (a list of records)
        goes; ``appointments``, hex id -> record (``appointment_id``, ``kind``, ``at``,
        ``scheduled_at``, ``state``), becomes hex id -> state, and the scheduling time
        of each one still scheduled moves to ``appointments_scheduled_at``. The rest
        is unchanged. Values are replaced, never changed in place: the dicts inside
        are the stored snapshot's own. A state without these is no v1 state: the
        ``KeyError`` makes the snapshot unusable, and the load reads the events.
        """
        del state["notes"]
        appointments = state.pop("appointments")
        state["appointments"] = {key: a["state"] for key, a in appointments.items()}
        state["appointments_scheduled_at"] = {
            key: a["scheduled_at"]
            for key, a in appointments.items()
            if a["state"] == AppointmentState.SCHEDULED.value and a.get("scheduled_at") is not None
        }

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
        self.outcome = None
        self.closed_at = None
        self.handovers = {}
        self.consents = {}
        self.appointments = {}
        self.appointments_scheduled_at = {}
        self.measures = {}
        self.coach = None
        self.coach_agency = None
        self.agreement_signed_at = None
        self.plan_goals = None
        self.plan_modules = ()
        self.assignment_started_at = None
        self.extensions = []
        self.employment = None
        self.aftercare_until = None
        self.aftercare_ended_at = None
        self.erased_at = None
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


def _keep_stored_topics(aggregate: type[Aggregate]) -> None:
    """Give every event class of ``aggregate`` the topic stored events name it by.

    The library's topic of a class is ``f"{cls.__module__}:{cls.__qualname__}"``
    (computed on first use, then cached), and a topic resolves by importing the module
    and walking the qualname. The event classes are written in the modules beside this
    one but are attributes of ``Case``; here, at import of ``domain.case`` and so before
    any topic is computed, they are named as if nested in ``Case``, as they were and as
    every stored event (``domain.case:Case.<EventName>``) and the projections' prefix
    ``domain.case:Case.`` name them. ``tests/unit/test_case_topics.py`` pins the list.
    """
    for name, value in vars(aggregate).items():
        if isinstance(value, type) and issubclass(value, CanMutateAggregate):
            if value.__name__ != name:
                raise TypeError(f"{aggregate.__name__}.{name} is the event {value.__name__}")
            value.__module__ = aggregate.__module__
            value.__qualname__ = f"{aggregate.__qualname__}.{name}"


_keep_stored_topics(Case)
