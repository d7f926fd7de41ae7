"""Recorded reads, kept apart from what they read.

DOMAIN "Views": every read that shows personal data, and every auditor read, is
recorded. A read changes nothing in the case, so deciding a write never needs it:
reads go to a stream of their own per case (and, for reads of an inbox, caseload
or dashboard, one stream per UTC day), still in the global log and the hash chain,
still shown in the case's history and the subject report. The stream is append
only and never loaded as an aggregate: a read takes the stream's next version.

Older databases hold reads as ``Case.CaseRead`` inside the case; they stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import DomainEvent

_READS_NAMESPACE = uuid5(NAMESPACE_URL, "urn:hub:reads")


def case_reads_id(case_id: UUID) -> UUID:
    """The stream of the reads of one case."""
    return uuid5(_READS_NAMESPACE, f"case:{case_id}")


def daily_reads_id(day: date) -> UUID:
    """The stream of the reads that concern no single case, on one UTC day."""
    return uuid5(_READS_NAMESPACE, f"day:{day.isoformat()}")


@dataclass(frozen=True)
class ReadRecorded(DomainEvent):
    """Someone read something: which agency (``auditor`` for auditors), which user,
    in which role, what (``scope``: case, history, subject-report, inbox, caseload,
    dashboard; ``target``: the agency whose inbox or caseload was read) and which
    categories of personal data the answer showed. ``timestamp`` is the hub's clock."""

    case_id: UUID | None
    agency: str
    actor: str
    user: str | None
    role: str
    scope: str
    target: str | None
    categories: list[str]
    occurred_at: datetime


READ_TOPIC = f"{ReadRecorded.__module__}:{ReadRecorded.__qualname__}"
