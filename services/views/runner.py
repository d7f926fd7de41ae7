"""Drives the view groups over the notification log, as the ``eventsourcing``
library's ``ProjectionRunner`` drives a ``Projection``, a page at a time.

Each page: read it after the lowest position any group has folded to, decode it
once (``page``), hand it to every group (``groups``), and commit all their rows
with their new positions in one transaction, each position compared and set: a
page computed from positions the views have left (another runner applied it, or
a rebuild reset them) is refused whole and computed again from the tables. Used
live (``live``: a thread and read-your-writes waits) and for rebuilds.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError

from services.views.groups import ViewGroup, groups_for, view_groups
from services.views.live import LiveViews
from services.views.page import decode_page, read_rows
from services.views.sql.batch import ViewWrites
from services.views.sql.schema import GROUPS, tracking_name

__all__ = ["MAX_REFUSALS", "ViewRunner", "view_groups"]

log = structlog.get_logger("hub.views")

MAX_REFUSALS = 10  # pages in a row refused because the views moved meanwhile
_REFUSED = -1  # ``_page``: nothing written, the views moved under the page


class ViewRunner:
    """Applies events to the view groups ``groups`` (all of them by default)."""

    def __init__(
        self,
        recorder: Any,
        views: Any,
        *,
        groups: Iterable[str] = GROUPS,
        page_size: int = 2000,
        checkpoint_every: int = 1000,
        rebuild_page_size: int = 100_000,
    ) -> None:
        self._recorder = recorder  # the application recorder (notification log)
        self._views = views  # SQLiteViewStore | PostgresViewStore
        self.groups = view_groups(groups)
        self._page_size = page_size
        # A rebuild reads larger pages: each page's fixed costs are spread over more
        # events. Never smaller than ``page_size``.
        self._rebuild_page_size = max(page_size, rebuild_page_size)
        self._checkpoint_every = checkpoint_every
        self._lock = threading.Lock()  # one page at a time, live thread or caller
        self._view_groups: tuple[ViewGroup, ...] = groups_for(
            self.groups, views, checkpoint_every=checkpoint_every
        )
        self._live = LiveViews(self)
        self._forget()

    def sibling(self, groups: Iterable[str]) -> ViewRunner:
        """A runner over the same store and with the same settings, for ``groups``."""
        return ViewRunner(
            self._recorder,
            self._views,
            groups=groups,
            page_size=self._page_size,
            checkpoint_every=self._checkpoint_every,
            rebuild_page_size=self._rebuild_page_size,
        )

    def _forget(self) -> None:
        """Drop every cache; the next page reloads state from the view tables."""
        # The committed positions the groups' caches stand at; None: caches are empty.
        self._cached_at: dict[str, int] | None = None
        for group in self._view_groups:
            group.forget()

    # ---- positions -------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        """Each of this runner's view groups' committed position."""
        found = self._views.max_tracking_ids([tracking_name(g) for g in self.groups])
        return {g: found[tracking_name(g)] for g in self.groups}

    @property
    def applied_position(self) -> int:
        """The lowest position this runner knows every one of its views has applied,
        announced after each commit (memory only; another process's runner may have
        applied more: ``position()`` reads the tables)."""
        return self._live.applied_position

    def position(self) -> int:
        return min(self.positions().values())

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """Read-your-writes: True once every view has applied ``position``."""
        return self._live.wait_for(position, timeout)

    # ---- processing --------------------------------------------------------------

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Apply everything recorded so far. Returns the number of events applied."""
        return self._catch_up(progress, self._page_size)

    def _catch_up(self, progress: Callable[[int, int], None] | None, page_size: int) -> int:
        with self._lock:
            applied = refused = 0
            while True:
                done = self._page(page_size)
                if done is None:
                    return applied
                if done == _REFUSED:  # the views moved under this page: look again
                    refused += 1
                    if refused > MAX_REFUSALS:
                        return applied  # the live loop tries again at its next wake-up
                    continue
                refused = 0
                applied += done
                if progress is not None:
                    progress(applied, self._recorder.max_notification_id() or 0)
                if done < page_size and not self._holds_unwritten():
                    # A short page reached the head: asking again would cost a round of
                    # reads for an empty page (the live loop is woken for anything new).
                    return applied

    def _holds_unwritten(self) -> bool:
        return any(group.holds_unwritten() for group in self._view_groups)

    def _committed(self) -> dict[str, int]:
        committed = self.positions()
        for group in self._view_groups:
            if len({committed[name] for name in group.tracks}) > 1:
                # Only an interrupted older release leaves a group's positions apart:
                # rebuild the group.
                log.warning("views_out_of_step", positions=committed)
                self._views.reset(group.tracks)
                self._forget()
                committed = self.positions()
        if self._cached_at is not None and self._cached_at != committed:
            # Another runner (another process) moved the views on: our caches are stale.
            log.info("views_advanced_elsewhere", positions=committed)
            self._forget()
        return committed

    def _page(self, page_size: int) -> int | None:
        """Apply one page; the number of events applied, None when there was nothing,
        ``_REFUSED`` when the views moved meanwhile (nothing written)."""
        committed = self._committed()
        start = min(group.folded_to(committed) for group in self._view_groups) + 1
        rows = read_rows(self._recorder, start, page_size)
        if not rows and not self._holds_unwritten():
            return None
        writes = ViewWrites()
        try:
            if rows:
                page = decode_page(rows)
                for group in self._view_groups:
                    group.process(page, committed, writes)
            for group in self._view_groups:
                group.flush(writes, drained=not rows)
            writes.expected = {g: committed[g] for g in writes.positions}
            self._views.commit(writes)
        except IntegrityError:
            # Another runner advanced the same views first, or a rebuild reset them
            # (``ViewsMoved``): their rows stand, ours are dropped whole with the
            # transaction; start again from the tables.
            log.info("views_advanced_elsewhere", start=start)
            self._forget()
            return _REFUSED
        except BaseException:
            self._forget()
            raise
        self._cached_at = {**committed, **writes.positions}
        for group in self._view_groups:
            group.committed()
        self._live.announce(min(self._cached_at.values()))
        return len(rows)

    # ---- rebuild -------------------------------------------------------------------

    def rebuild(
        self,
        groups: Iterable[str] | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> int:
        """Drop the groups' rows and positions, then apply every event again."""
        groups = view_groups(self.groups if groups is None else groups)
        if not set(groups) <= set(self.groups):
            raise ValueError(f"this runner keeps {self.groups}, not {groups}")
        rebuilt = [g for g in self._view_groups if set(g.tracks) & set(groups)]
        with self._lock:
            self._views.reset(groups, drop_indexes=True)
            self._forget()
            self._live.restart()
            for group in rebuilt:
                group.begin_rebuild()
        # A rebuild keeps every case document in memory: millions of long-lived, acyclic
        # objects that the cyclic collector would traverse again and again as they
        # accumulate. Reference counting frees all the rest; collection resumes after.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._catch_up(progress, self._rebuild_page_size)
        finally:
            for group in rebuilt:
                group.end_rebuild()
            if collecting:
                gc.enable()
            self._views.create_indexes(groups)

    # ---- live ------------------------------------------------------------------------

    def notify(self) -> None:
        """This process just recorded: wake the live runner now rather than at the poll."""
        self._live.notify()

    def start(self, poll_interval: float = 0.25) -> None:
        self._live.start(poll_interval)

    def stop(self) -> None:
        self._live.stop()
