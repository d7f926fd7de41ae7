"""One page of the notification log, read once and decoded once for every group.

Both groups need each case event decoded (the case views fold it, the audit trail
takes its agency, actor and times), so the runner decodes the page before handing
it to them rather than each group decoding it again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from projections.events import CASE_TOPIC_PREFIX, EventRecord, decode
from services.store import NotificationRow


@dataclass(slots=True)
class Page:
    """``rows`` in global order; ``records[i]`` is ``rows[i]`` decoded when it is a
    case event, else None (other aggregates' events are only chained)."""

    rows: list[NotificationRow]
    records: list[EventRecord | None]

    @property
    def last(self) -> int:
        return self.rows[-1][0]


def read_rows(recorder: Any, start: int, limit: int) -> list[NotificationRow]:
    """The notification log from ``start`` as plain tuples (the hub's recorders read
    them without building UUIDs; any other recorder is adapted)."""
    read = getattr(recorder, "select_notification_rows", None)
    if read is not None:
        return read(start, limit)
    return [
        (n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
        for n in recorder.select_notifications(start, limit)
    ]


def decode_page(rows: list[NotificationRow]) -> Page:
    # A row is (position, originator id as text, version, topic, state): ``decode``'s
    # arguments in order.
    return Page(
        rows,
        [decode(*row) if row[3].startswith(CASE_TOPIC_PREFIX) else None for row in rows],
    )
