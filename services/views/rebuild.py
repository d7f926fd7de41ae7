"""Rebuilding views, the audit trail in a second process beside the case views.

The audit trail and the case views share nothing but the notification log they
read: each process reads it and commits its own rows with its own positions, so
on two or more cores a rebuild takes about as long as the slower of the two.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import TYPE_CHECKING

from services.views.groups import view_groups
from services.views.sql.schema import GROUPS

if TYPE_CHECKING:
    from services.bootstrap import Hub
    from services.settings import Settings

# Below this many events a second process's start-up (about a second) costs more
# than it saves.
PARALLEL_FROM = 50_000


def rebuild_views(
    hub: Hub,
    groups: Iterable[str] = GROUPS,
    progress: Callable[[int, int], None] | None = None,
    *,
    parallel: bool | None = None,
) -> int:
    """Drop and rebuild ``groups``; returns the number of events applied.

    ``parallel``: rebuild the audit trail in a second process (default: when there
    are at least ``PARALLEL_FROM`` events and more than one core). ``progress``
    follows the case views."""
    groups = view_groups(groups)
    if parallel is None:
        events = hub.app.recorder.max_notification_id() or 0
        parallel = events >= PARALLEL_FROM and (os.cpu_count() or 1) > 1
    if not (parallel and "audit" in groups and "cases" in groups):
        return hub.views.rebuild(groups, progress)
    # spawn, not fork: the parent holds database connections and may run threads.
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        audit = pool.submit(rebuild_in_own_process, hub.settings, ("audit",))
        cases = hub.views.sibling(tuple(g for g in groups if g != "audit"))
        applied = cases.rebuild(progress=progress)
        return max(applied, audit.result())


def rebuild_in_own_process(settings: Settings, groups: tuple[str, ...]) -> int:
    """A child process's part: its own hub from the same settings, its own runner."""
    from services.bootstrap import build_hub
    from services.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    hub = build_hub(settings)
    try:
        return hub.views.sibling(groups).rebuild()
    finally:
        hub.close()
