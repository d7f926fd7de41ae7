"""Rebuilding views, the audit trail in a second process beside the case views.

The audit trail and the case views share nothing but the notification log they
read: each process reads it and commits its own rows with its own positions into
the rebuild's shadow tables, so on two or more cores a rebuild takes about as long
as the slower of the two. This process then catches both up and swaps them in
together (``ViewRunner.swap_in``); the live views serve until then.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from typing import TYPE_CHECKING

from services.views.groups import view_groups
from services.views.sql.schema import GROUPS, SHADOWS
from services.views.swap import shadow_build

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
    """Rebuild ``groups`` beside the live views and swap them in; returns the number
    of events applied.

    ``parallel``: rebuild the audit trail in a second process (default: when there
    are at least ``PARALLEL_FROM`` events and more than one core). ``progress``
    follows the case views."""
    groups = view_groups(groups)
    if parallel is None:
        events = hub.app.recorder.max_notification_id() or 0
        parallel = events >= PARALLEL_FROM and (os.cpu_count() or 1) > 1
    if not (parallel and "audit" in groups and "cases" in groups):
        return hub.views.rebuild(groups, progress)
    with shadow_build(hub.view_store, groups):
        # spawn, not fork: the parent holds database connections and may run threads.
        with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
            audit = pool.submit(fill_in_own_process, hub.settings, ("audit",), os.getpid())
            cases = hub.views.sibling(tuple(g for g in groups if g != "audit"), tables=SHADOWS)
            # Each counts the events up to where it stopped; the swap the rest.
            applied = min(cases.fill(progress), audit.result())
        applied += hub.views.sibling(groups, tables=SHADOWS).swap_in()
    # This process's live runner sees the new generation at its next page.
    return applied


def fill_in_own_process(settings: Settings, groups: tuple[str, ...], parent: int) -> int:
    """A child process's part: its own hub from the same settings, its own runner
    filling the shadow tables of ``groups`` (prepared by the parent)."""
    from services.bootstrap import build_hub
    from services.logging import configure_logging

    configure_logging(settings.log_level, settings.log_format)
    hub = build_hub(settings)

    def orphaned(_done: int, _total: int) -> None:
        # The parent was killed: stop rather than write into tables nobody will swap
        # in (the next rebuild drops them).
        if os.getppid() != parent:
            raise SystemExit(1)

    try:
        return hub.views.sibling(groups, tables=SHADOWS).fill(orphaned)
    finally:
        hub.close()
