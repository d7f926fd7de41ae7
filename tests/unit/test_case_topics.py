"""Stored events name their class by topic, ``domain.case:Case.<EventName>``.

Every database (and ``tests/fixtures/hub-v1.db``) holds these strings and the
projections filter on the prefix ``domain.case:Case.``: wherever the event classes
are written, their topics must not change. The list below is literal, so renaming,
moving or dropping an event class fails here first.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.domain import CanMutateAggregate
from eventsourcing.utils import get_topic, resolve_topic

from domain.case import Case

ROOT = Path(__file__).resolve().parents[2]

TOPICS = [
    "domain.case:Case.AftercareEnded",
    "domain.case:Case.AftercareStarted",
    "domain.case:Case.AgreementSigned",
    "domain.case:Case.AppointmentHeld",
    "domain.case:Case.AppointmentMissed",
    "domain.case:Case.AppointmentScheduled",
    "domain.case:Case.AssignmentExtended",
    "domain.case:Case.CaseClosed",
    "domain.case:Case.CaseOpened",
    "domain.case:Case.CaseRead",
    "domain.case:Case.CoachAssigned",
    "domain.case:Case.ConsentGranted",
    "domain.case:Case.ConsentRevoked",
    "domain.case:Case.Created",
    "domain.case:Case.EmploymentStarted",
    "domain.case:Case.Event",
    "domain.case:Case.ExpertOpinionReceived",
    "domain.case:Case.ExpertOpinionRequested",
    "domain.case:Case.HandoverAccepted",
    "domain.case:Case.HandoverCompleted",
    "domain.case:Case.HandoverDeclined",
    "domain.case:Case.HandoverForwarded",
    "domain.case:Case.HandoverOffered",
    "domain.case:Case.HandoverWithdrawn",
    "domain.case:Case.LeadTransferred",
    "domain.case:Case.MeasureEnded",
    "domain.case:Case.MeasureStarted",
    "domain.case:Case.NoteAdded",
    "domain.case:Case.ParticipantErased",
    "domain.case:Case.PlanAgreed",
    "domain.case:Case.PlanUpdated",
    "domain.case:Case.RehabDecided",
]

# Schema versions and what each upcaster adds to a state stored at the old version.
UPCASTS: dict[str, dict[str, Any]] = {
    "ConsentGranted": {"purpose": None, "document_ref": None},
    "HandoverOffered": {"priority": "normal"},
    "HandoverAccepted": {"moves_lead": None},
    "CaseClosed": {"target": None},
    "ParticipantErased": {"ground": None},
}


def event_classes() -> dict[str, type[CanMutateAggregate[Any]]]:
    """Every event class of ``Case``, by its attribute name."""
    return {
        name: value
        for name, value in vars(Case).items()
        if isinstance(value, type) and issubclass(value, CanMutateAggregate)
    }


def test_the_topics_of_case_events_are_pinned() -> None:
    assert sorted(get_topic(cls) for cls in event_classes().values()) == TOPICS


def test_the_aggregate_topic_is_pinned() -> None:
    assert get_topic(Case) == "domain.case:Case"
    assert resolve_topic("domain.case:Case") is Case


@pytest.mark.parametrize("name", sorted(event_classes()))
def test_each_topic_round_trips(name: str) -> None:
    cls = event_classes()[name]
    assert cls.__name__ == name
    assert issubclass(cls, Case.Event)
    topic = get_topic(cls)
    assert topic == f"domain.case:Case.{name}"
    assert resolve_topic(topic) is cls
    assert getattr(Case, name) is cls


def test_schema_versions_and_upcasters_are_kept() -> None:
    versions = {
        name: getattr(cls, "class_version", 1)
        for name, cls in event_classes().items()
        if getattr(cls, "class_version", 1) != 1
    }
    assert versions == dict.fromkeys(UPCASTS, 2)
    for name, added in UPCASTS.items():
        state: dict[str, Any] = {}
        getattr(Case, name).upcast_v1_v2(state)
        assert state == added


def test_every_topic_stored_in_the_v1_fixture_resolves() -> None:
    with sqlite3.connect(ROOT / "tests" / "fixtures" / "hub-v1.db") as conn:
        stored = {row[0] for row in conn.execute("SELECT DISTINCT topic FROM stored_events")}
    case_topics = {t for t in stored if t.startswith("domain.case:")}
    assert case_topics
    assert case_topics <= set(TOPICS)
    for topic in case_topics:
        assert get_topic(resolve_topic(topic)) == topic
