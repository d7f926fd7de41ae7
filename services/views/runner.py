"""Drives the view groups over the notification log, as the ``eventsourcing``
library's ``ProjectionRunner`` drives a ``Projection``, a page at a time.

Each page: read it after the lowest position any group has folded to, decode it
once (``page``), hand it to every group (``groups``), and commit all their rows
with their new positions in one transaction, each position compared and set, and
the view generation compared: a page computed from positions the views have left
(another runner applied it, a reset emptied them, a rebuild swapped new tables in)
is refused whole and computed again from the tables. Used live (``live``: a thread
and read-your-writes waits) and, over a rebuild's shadow tables, to rebuild
(``rebuild``: filled beside the live views, then swapped in).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError, OperationalError

from services.errors import ServiceError
from services.views.groups import ViewGroup, groups_for, view_groups
from services.views.live import LiveViews
from services.views.page import decode_page, read_rows
from services.views.sql.batch import ViewWrites
from services.views.sql.schema import GROUPS, LIVE, SHADOWS, Tables

__all__ = ["MAX_REFUSALS", "SwapFailed", "ViewRunner", "view_groups"]

log = structlog.get_logger("hub.views")

MAX_REFUSALS = 10  # pages in a row refused because the views moved meanwhile
_REFUSED = -1  # ``_page``: nothing written, the views moved under the page
SWAP_WITHIN = 120.0  # seconds a rebuild keeps trying to swap its shadow tables in


class SwapFailed(ServiceError):
    code = "swap_failed"


class _NotYet(Exception):
    """The shadow tables are not (yet) where the live views stand: roll the swap back."""


class ViewRunner:
    """Applies events to the view groups ``groups`` (all of them by default), in
    ``tables`` (the live views; a rebuild's runners write ``SHADOWS``)."""

    def __init__(
        self,
        recorder: Any,
        views: Any,
        *,
        groups: Iterable[str] = GROUPS,
        page_size: int = 2000,
        checkpoint_every: int = 1000,
        rebuild_page_size: int = 100_000,
        cache_bytes: int | None = None,
        tables: Tables = LIVE,
    ) -> None:
        self._recorder = recorder  # the application recorder (notification log)
        self._views = views  # SQLiteViewStore | PostgresViewStore
        self.groups = view_groups(groups)
        self._page_size = page_size
        # A rebuild reads larger pages: each page's fixed costs are spread over more
        # events. Never smaller than ``page_size``.
        self._rebuild_page_size = max(page_size, rebuild_page_size)
        self._checkpoint_every = checkpoint_every
        self._cache_bytes = cache_bytes
        self._tables = tables
        self._lock = threading.Lock()  # one page at a time, live thread or caller
        self._view_groups: tuple[ViewGroup, ...] = groups_for(
            self.groups,
            views,
            checkpoint_every=checkpoint_every,
            tables=tables,
            cache_bytes=cache_bytes,
        )
        self._live = LiveViews(self)
        self._forget()

    def sibling(self, groups: Iterable[str], *, tables: Tables | None = None) -> ViewRunner:
        """A runner over the same store and with the same settings, for ``groups`` (in
        ``tables``: by default this runner's)."""
        return ViewRunner(
            self._recorder,
            self._views,
            groups=groups,
            page_size=self._page_size,
            checkpoint_every=self._checkpoint_every,
            rebuild_page_size=self._rebuild_page_size,
            cache_bytes=self._cache_bytes,
            tables=self._tables if tables is None else tables,
        )

    def _forget(self) -> None:
        """Drop every cache; the next page reloads state from the view tables."""
        # The committed positions the groups' caches stand at; None: caches are empty.
        self._cached_at: dict[str, int] | None = None
        # The view generation the caches were filled in; None: not known yet.
        self._generation: int | None = None
        for group in self._view_groups:
            group.forget()

    @property
    def cache_bytes(self) -> int:
        """The bound on the memory this runner's case documents take (estimated)."""
        return sum(getattr(g, "cache_bytes", 0) for g in self._view_groups)

    @property
    def cached_bytes(self) -> float:
        """The estimated memory its cached case documents take now."""
        return sum(getattr(g, "cached_bytes", 0.0) for g in self._view_groups)

    # ---- positions -------------------------------------------------------------

    def _names(self, tables: Tables | None = None) -> list[str]:
        return [(tables or self._tables).tracking(g) for g in self.groups]

    def positions(self) -> dict[str, int]:
        """Each of this runner's view groups' committed position."""
        found = self._views.max_tracking_ids(self._names())
        return {g: found[self._tables.tracking(g)] for g in self.groups}

    @property
    def applied_position(self) -> int:
        """The lowest position this runner knows every one of its views has applied,
        announced after each commit (memory only; another process's runner may have
        applied more: ``position()`` reads the tables). A swap keeps it true: new
        tables come in only at or beyond the live ones' positions."""
        return self._live.applied_position

    def on_applied(self, listener: Callable[[int], None]) -> None:
        """Call ``listener`` (on the committing thread) with each new
        ``applied_position``: read-your-writes waits are woken, not polled."""
        self._live.on_announce(listener)

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
        generation, found = self._views.read_state(self._names())
        committed = {g: found[self._tables.tracking(g)] for g in self.groups}
        for group in self._view_groups:
            if self._tables == LIVE and len({committed[name] for name in group.tracks}) > 1:
                # Only an interrupted older release leaves a group's positions apart:
                # rebuild the group.
                log.warning("views_out_of_step", positions=committed)
                self._views.reset(group.tracks)
                self._forget()
                generation, found = self._views.read_state(self._names())
                committed = {g: found[self._tables.tracking(g)] for g in self.groups}
        if self._generation is not None and generation != self._generation:
            # A rebuild (perhaps in another process) swapped new tables in: nothing
            # cached describes them.
            log.info("views_swapped", generation=generation, positions=committed)
            self._forget()
        elif self._cached_at is not None and self._cached_at != committed:
            # Another runner (another process) moved the views on: our caches are stale.
            log.info("views_advanced_elsewhere", positions=committed)
            self._forget()
        self._generation = generation
        return committed

    def _page(
        self, page_size: int, commit: Callable[[ViewWrites], None] | None = None
    ) -> int | None:
        """Apply one page; the number of events applied, None when there was nothing,
        ``_REFUSED`` when the views moved meanwhile (nothing written). ``commit``:
        how the rows are written (by default, in a transaction of their own)."""
        committed = self._committed()
        start = min(group.folded_to(committed) for group in self._view_groups) + 1
        rows = read_rows(self._recorder, start, page_size)
        if not rows and not self._holds_unwritten():
            return None
        writes = ViewWrites(tables=self._tables)
        try:
            if rows:
                page = decode_page(rows)
                for group in self._view_groups:
                    group.process(page, committed, writes)
            for group in self._view_groups:
                group.flush(writes, drained=not rows)
            writes.expected = {g: committed[g] for g in writes.positions}
            # The live views' pages are refused after a swap; a rebuild's shadow
            # tables have one writer and no swap under them.
            writes.generation = self._generation if self._tables == LIVE else None
            (commit or self._views.commit)(writes)
        except IntegrityError:
            # Another runner advanced the same views first, a reset emptied them, or a
            # swap replaced them (``ViewsMoved``): their rows stand, ours are dropped
            # whole with the transaction; start again from the tables.
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
        """Rebuild the groups from every event into shadow tables while the live views
        keep serving (and this or another process's live runner keeps them current),
        then swap them in at once. Returns the number of events applied."""
        from services.views.swap import shadow_build

        groups = view_groups(self.groups if groups is None else groups)
        if not set(groups) <= set(self.groups):
            raise ValueError(f"this runner keeps {self.groups}, not {groups}")
        with shadow_build(self._views, groups):
            shadow = self.sibling(groups, tables=SHADOWS)
            applied = shadow.fill(progress)
            applied += shadow.swap_in()
        with self._lock:
            self._forget()  # whatever this runner cached describes the old tables
        return applied

    def fill(self, progress: Callable[[int, int], None] | None = None) -> int:
        """A rebuild's bulk part, into this runner's (empty, shadow) tables: every event
        in large pages, case rows written once at the end or when the cache is full."""
        for group in self._view_groups:
            group.begin_rebuild()
        # A rebuild keeps every case document in memory: millions of long-lived, acyclic
        # objects that the cyclic collector would traverse again and again as they
        # accumulate. Reference counting frees all the rest; collection resumes after.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._catch_up(progress, self._rebuild_page_size)
        finally:
            for group in self._view_groups:
                group.end_rebuild()
            if collecting:
                gc.enable()

    def swap_in(self) -> int:
        """Index the shadow tables, catch them up with the log, and swap them in: in one
        transaction that no live commit can enter, the last events are applied to
        them and they replace the live tables once they stand at least where those
        do (so no waiter released by the live views ever sees less). Returns the
        number of events applied on the way."""
        if self._tables == LIVE:
            raise ValueError("only a rebuild's shadow tables are swapped in")
        self._views.create_indexes(self.groups, self._tables)
        applied, deadline = 0, time.monotonic() + SWAP_WITHIN
        while True:
            applied += self._catch_up(None, self._rebuild_page_size)
            try:
                with self._lock, self._views.exclusive() as c:
                    done = self._page(self._page_size, commit=partial(self._views.write_batch, c))
                    if done == _REFUSED:
                        raise _NotYet
                    live = self._views.positions_in(c, self._names(LIVE))
                    mine = self._views.positions_in(c, self._names())
                    behind = [
                        g
                        for g in self.groups
                        if mine[self._tables.tracking(g)] < live[LIVE.tracking(g)]
                    ]
                    if behind:
                        raise _NotYet
                    self._views.swap(c, self.groups)
                log.info("views_swapped_in", groups=self.groups, positions=mine)
                return applied + (done or 0)
            except (_NotYet, OperationalError) as reason:
                # Behind the live views (more than a page since the catch-up), or a
                # lock not granted in time (PostgreSQL: a reader mid-query): again.
                self._forget()
                log.info("views_swap_retried", reason=type(reason).__name__)
            if time.monotonic() > deadline:
                raise SwapFailed(
                    f"the rebuilt views did not catch up with the live ones within "
                    f"{SWAP_WITHIN:.0f} s; the live views keep serving"
                )

    # ---- live ------------------------------------------------------------------------

    def notify(self) -> None:
        """This process just recorded: wake the live runner now rather than at the poll."""
        self._live.notify()

    def start(self, poll_interval: float = 0.25) -> None:
        self._live.start(poll_interval)

    def stop(self) -> None:
        self._live.stop()
