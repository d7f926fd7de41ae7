"""The view groups a runner hands each page to, on the shape of the
``eventsourcing`` library's ``Projection.process_event``: a group folds events
into row changes (``ViewWrites``) and names its new tracked positions; the runner
commits them, compared and set, in one transaction for every group.

``GROUPS`` names the tracked positions. The case views keep two of them, "cases"
and "dashboard", which always move together (the dashboard folds the case
documents); the audit trail keeps "audit".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from services.views.groups.audit import AuditTrail
from services.views.groups.cases import CaseViews
from services.views.page import Page
from services.views.sql.batch import ViewWrites
from services.views.sql.schema import GROUPS, LIVE, Tables


class ViewGroup(Protocol):
    # The tracked positions this group commits, together.
    tracks: tuple[str, ...]

    def folded_to(self, committed: dict[str, int]) -> int:
        """How far this group has folded events: its committed position, or further
        when it holds rows it has not written yet."""
        ...

    def holds_unwritten(self) -> bool: ...

    def process(self, page: Page, committed: dict[str, int], writes: ViewWrites) -> None:
        """Fold the page's events after ``folded_to`` into ``writes``."""
        ...

    def flush(self, writes: ViewWrites, *, drained: bool) -> None:
        """Add rows held back (``drained``: the log has nothing more to read)."""
        ...

    def committed(self) -> None:
        """``writes`` committed: the group's caches now stand where the tables do."""
        ...

    def forget(self) -> None:
        """Drop every cache; the next page reloads state from the view tables."""
        ...

    def begin_rebuild(self) -> None:
        """The group's (shadow) tables are empty; every event follows, in order."""
        ...

    def end_rebuild(self) -> None: ...


def view_groups(groups: Iterable[str]) -> tuple[str, ...]:
    """``groups`` in ``GROUPS`` order, with cases and dashboard always together: the
    dashboard folds the case documents, and both commit at one position."""
    wanted = set(groups)
    unknown = wanted - set(GROUPS)
    if unknown:
        raise ValueError(f"unknown view groups {sorted(unknown)}; one of {', '.join(GROUPS)}")
    if wanted & {"cases", "dashboard"}:
        wanted |= {"cases", "dashboard"}
    return tuple(g for g in GROUPS if g in wanted)


def groups_for(
    names: tuple[str, ...],
    views: object,
    *,
    checkpoint_every: int,
    tables: Tables = LIVE,
    cache_bytes: int | None = None,
) -> tuple[ViewGroup, ...]:
    """The groups keeping ``names`` (as ``view_groups`` returns them) over ``views``'
    ``tables``; ``cache_bytes`` bounds the case documents held in memory."""
    found: list[ViewGroup] = []
    if "cases" in names:
        found.append(CaseViews(views, tables=tables, cache_bytes=cache_bytes))
    if "audit" in names:
        found.append(AuditTrail(views, checkpoint_every=checkpoint_every, tables=tables))
    return tuple(found)
