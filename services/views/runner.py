"""Drives the pure reducers of ``projections`` over the notification log.

Reads events after each view group's tracked position in pages, folds them into
row changes, and commits rows and positions in one transaction per page. Used
live (a thread that wakes when this process records, and polls for other
writers: SQLite's recorder has no subscription) and for rebuilds.
"""

from __future__ import annotations

import gc
import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError

from projections.audit import GENESIS, audit_row
from projections.case_doc import Doc, reduce_case
from projections.caseload import caseload_rows
from projections.dashboard import (
    DashboardOps,
    apply_all_dashboard_ops,
    dashboard_ops,
    dashboard_snapshot,
    empty_state,
)
from projections.events import CASE_TOPIC_PREFIX, EventRecord, decode
from projections.inbox import inbox_rows
from services.store import NotificationRow
from services.views.store import (
    GROUPS,
    ViewWrites,
    caseload_values,
    dump_json,
    inbox_values,
    tracking_name,
)

log = structlog.get_logger("hub.views")

MAX_CACHED_DOCS = 200_000  # bound memory on very large rebuilds
MAX_REFUSALS = 10  # pages in a row refused because the views moved meanwhile
_REFUSED = -1  # ``_page``: nothing written, the views moved under the page
_UNKNOWN: Any = object()


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


class ViewRunner:
    """Applies events to the view groups ``groups`` (all of them by default).

    Live, each page's rows commit with its positions. A rebuild of the case views
    keeps the documents in memory and writes each case once, at the end (or when
    ``MAX_CACHED_DOCS`` are held), with the cases' and dashboard's positions in the
    same transaction; the audit trail still commits page by page."""

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
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._applied = threading.Condition()
        self._applied_position = 0  # the lowest view position known applied
        self._defer = False  # rebuilding the case views: write each case once
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
        # The committed positions this runner's caches stand at; None: caches are empty.
        self._cached_at: dict[str, int] | None = None
        # The position the cached case documents were folded to when that is ahead of
        # what is committed (a rebuild defers writing them); those cases are ``_dirty``.
        self._pending: int | None = None
        self._dirty: dict[str, None] = {}  # an ordered set: rows are written in this order
        self._docs: dict[str, Doc] = {}
        self._dashboard: dict[str, Any] | None = None
        self._head: str | None = None
        # Per cached case: its dashboard entries as last committed (the ``before`` of
        # its next change), and the inbox and caseload rows last committed for it, so
        # unchanged rows are not written again. Only ever filled from rows this runner
        # committed itself, or from the documents it loaded.
        self._snapshots: dict[str, Any] = {}
        self._inbox_rows: dict[str, list[tuple[Any, ...]]] = {}
        self._caseload_rows: dict[str, dict[str, tuple[Any, ...]]] = {}
        # True right after the case tables were emptied by ``rebuild``: a case missing
        # from the caches then has no document and no rows at all.
        self._complete = False

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
        return self._applied_position

    def position(self) -> int:
        return min(self.positions().values())

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """Read-your-writes: True once every view has applied ``position``.

        With the live runner started, waiters sleep until its next commit wakes
        them (another process's runner may also advance the views: the tables are
        read again at least every 50 ms)."""
        deadline = time.monotonic() + timeout
        if self._applied_position >= position:
            return True
        self.notify()
        while True:
            if self._applied_position >= position or self.position() >= position:
                return True
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if self._thread is None:
                self.catch_up()
                continue
            with self._applied:
                self._applied.wait_for(
                    lambda: self._applied_position >= position, timeout=min(remaining, 0.05)
                )

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
                if done < page_size and self._pending is None:
                    # A short page reached the head: asking again would cost a round of
                    # reads for an empty page (the live loop is woken for anything new).
                    return applied

    def _committed(self) -> dict[str, int]:
        committed = self.positions()
        if "cases" in committed and committed["cases"] != committed["dashboard"]:
            # Only an interrupted older release leaves them apart: rebuild both.
            log.warning("views_out_of_step", positions=committed)
            self._views.reset(("cases", "dashboard"))
            self._forget()
            committed = self.positions()
        if self._cached_at is not None and self._cached_at != committed:
            # Another runner (another process) moved the views on: our caches are stale.
            log.info("views_advanced_elsewhere", positions=committed)
            self._forget()
        return committed

    def _page(self, page_size: int | None = None) -> int | None:
        """Apply one page; the number of events applied, None when there was nothing,
        ``_REFUSED`` when the views moved meanwhile (nothing written)."""
        committed = self._committed()
        at = dict(committed)
        if self._pending is not None:
            at["cases"] = at["dashboard"] = self._pending
        notifications = self._read(min(at.values()) + 1, page_size or self._page_size)
        if not notifications and self._pending is None:
            return None
        writes = ViewWrites()
        try:
            if notifications:
                self._apply(notifications, at, writes)
            if self._pending is not None and (
                not self._defer or not notifications or len(self._docs) > MAX_CACHED_DOCS
            ):
                self._write_cases(writes)
            writes.expected = {g: committed[g] for g in writes.positions}
            self._views.commit(writes)
        except IntegrityError:
            # Another runner advanced the same views first, or a rebuild reset them
            # (``ViewsMoved``): their rows stand, ours are dropped whole with the
            # transaction; start again from the tables.
            log.info("views_advanced_elsewhere", start=min(at.values()) + 1)
            self._forget()
            return _REFUSED
        except BaseException:
            self._forget()
            raise
        self._cached_at = {**committed, **writes.positions}
        if len(self._docs) > MAX_CACHED_DOCS and not self._dirty:
            self._evict()
        self._announce(min(self._cached_at.values()))
        return len(notifications)

    def _announce(self, position: int) -> None:
        with self._applied:
            if position > self._applied_position:
                self._applied_position = position
                self._applied.notify_all()

    def _evict(self) -> None:
        """Bound memory on very large rebuilds: drop every cached case (all written)."""
        self._docs, self._snapshots = {}, {}
        self._inbox_rows, self._caseload_rows = {}, {}
        self._complete = False

    def _read(self, start: int, limit: int) -> list[NotificationRow]:
        """The notification log from ``start`` as plain tuples (the hub's recorders
        read them without building UUIDs; any other recorder is adapted)."""
        read_rows = getattr(self._recorder, "select_notification_rows", None)
        if read_rows is not None:
            return read_rows(start, limit)
        return [
            (n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
            for n in self._recorder.select_notifications(start, limit)
        ]

    def _apply(
        self, notifications: list[NotificationRow], at: dict[str, int], writes: ViewWrites
    ) -> None:
        at_cases = at.get("cases")
        at_audit = at.get("audit")
        # Each case event's id as text, once (None for other aggregates' events).
        case_ids = [n[1] if n[3].startswith(CASE_TOPIC_PREFIX) else None for n in notifications]
        if at_cases is not None and not self._complete:
            self._load_docs(
                {
                    c
                    for n, c in zip(notifications, case_ids, strict=True)
                    if c is not None and n[0] > at_cases
                }
                - self._docs.keys()
            )
        changed, digest = self._decode_and_chain(
            notifications, case_ids, at_cases, at_audit, writes
        )
        if changed:
            self._fold_cases(changed)
        last = notifications[-1][0]
        if at_cases is not None and last > at_cases:
            self._pending = last
        if at_audit is not None and last > at_audit:
            writes.positions["audit"] = last
            self._head = digest.hex()

    def _decode_and_chain(
        self,
        notifications: list[NotificationRow],
        case_ids: list[str | None],
        at_cases: int | None,
        at_audit: int | None,
        writes: ViewWrites,
    ) -> tuple[dict[str, list[EventRecord]], bytes]:
        """1. In global order: decode each case event, and chain the audit trail.
        Returns each case's events to fold (in order) and the chain's head."""
        fold_after = at_cases if at_cases is not None else notifications[-1][0]
        chain_after = at_audit if at_audit is not None else notifications[-1][0]
        digest = bytes.fromhex(self._load_head()) if at_audit is not None else b""
        audit = writes.audit
        checkpoint_every = self._checkpoint_every
        changed: dict[str, list[EventRecord]] = {}
        for (position, originator_id, version, topic, state), case_id in zip(
            notifications, case_ids, strict=True
        ):
            fold = position > fold_after
            chain = position > chain_after
            if not (fold or chain):
                continue
            record: EventRecord | None = None
            if case_id is not None:
                record = decode(position, case_id, version, topic, state)
                if fold:
                    if case_id in changed:
                        changed[case_id].append(record)
                    else:
                        changed[case_id] = [record]
            if chain:
                digest, row = audit_row(
                    digest,
                    position,
                    originator_id,
                    version,
                    topic,
                    state,
                    record,
                    originator_id,  # canonical UUID text already
                )
                audit.append(row)
                if position % checkpoint_every == 0:
                    head = row[-1]
                    writes.checkpoints.append((position, head))
                    log.info("audit_checkpoint", position=position, head_hash=head)
        return changed, digest

    def _fold_cases(self, changed: dict[str, list[EventRecord]]) -> None:
        """2. Case by case: fold each case's events of the page into its document,
        keeping its dashboard entries as last committed; the case becomes dirty."""
        docs, snapshots, dirty = self._docs, self._snapshots, self._dirty
        for case_id, events in changed.items():
            doc = docs.get(case_id)
            if case_id not in snapshots:
                snapshots[case_id] = dashboard_snapshot(doc)
            for record in events:
                doc = reduce_case(doc, record, in_place=True)
            docs[case_id] = doc
            dirty[case_id] = None

    def _write_cases(self, writes: ViewWrites) -> None:
        """3. Every dirty case's document, its rows (what changed), the dashboard moved
        by each case's change, and both groups' position (also with no case dirty:
        a page of other aggregates' events)."""
        docs, snapshots = self._docs, self._snapshots
        ops: list[DashboardOps] = []
        for case_id in self._dirty:
            doc = docs[case_id]
            if self._complete and case_id not in self._inbox_rows:  # never written
                writes.case_docs_insert.append((case_id, dump_json(doc)))
            else:
                writes.case_docs[case_id] = dump_json(doc)
            self._diff_rows(case_id, doc, writes)
            snapshots[case_id], op = dashboard_ops(snapshots[case_id], doc)
            ops.append(op)
        if any(op is not None for op in ops):  # most pages of notes and reads: none
            dashboard = self._load_dashboard()
            apply_all_dashboard_ops(dashboard, ops)
            writes.dashboard = dashboard
        writes.positions["cases"] = writes.positions["dashboard"] = self._pending  # type: ignore[assignment]
        self._dirty = {}
        self._pending = None

    def _diff_rows(self, case_id: str, doc: Doc, writes: ViewWrites) -> None:
        """The case's inbox and caseload rows, as writes of what changed since the rows
        this runner last committed for it (all of them when those are unknown)."""
        inbox = [inbox_values(r) for r in inbox_rows(doc)]
        known = self._inbox_rows.get(case_id, _UNKNOWN)
        if known is _UNKNOWN and self._complete:
            known = []
        if known is _UNKNOWN or known != inbox:
            if known is _UNKNOWN or known:
                writes.inbox_replace[case_id] = inbox
            else:
                writes.inbox_insert.extend(inbox)
            self._inbox_rows[case_id] = inbox

        caseload = {r["agency"]: caseload_values(r) for r in caseload_rows(doc)}
        before = self._caseload_rows.get(case_id, _UNKNOWN)
        if before is _UNKNOWN and self._complete:
            before = {}
        if before is _UNKNOWN:
            writes.caseload_replace[case_id] = list(caseload.values())
        elif not before:  # the case has no rows yet
            writes.caseload_insert.extend(caseload.values())
        else:
            for agency, row in caseload.items():
                if before.get(agency) != row:
                    writes.caseload_upsert.append(row)
            for agency in before:
                if agency not in caseload:
                    writes.caseload_delete.append((agency, case_id))
        self._caseload_rows[case_id] = caseload

    def _load_docs(self, case_ids: set[str]) -> None:
        ids = sorted(case_ids)
        p = self._views.P
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self._views.query(
                f"SELECT case_id, doc FROM view_case_docs WHERE case_id IN ({','.join([p] * len(chunk))})",
                tuple(chunk),
            )
            for row in rows:
                self._docs[row["case_id"]] = json.loads(row["doc"])
                self._snapshots.pop(row["case_id"], None)

    def _load_dashboard(self) -> dict[str, Any]:
        if self._dashboard is None:
            rows = self._views.query("SELECT doc FROM view_dashboard WHERE name = 'totals'")
            self._dashboard = json.loads(rows[0]["doc"]) if rows else empty_state()
        return self._dashboard

    def _load_head(self) -> str:
        if self._head is None:
            rows = self._views.query("SELECT hash FROM view_audit ORDER BY position DESC LIMIT 1")
            self._head = rows[0]["hash"] if rows else GENESIS
        return self._head

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
        with self._lock:
            self._views.reset(groups, drop_indexes=True)
            self._forget()
            with self._applied:
                self._applied_position = 0
            self._complete = self._defer = "cases" in groups
        # A rebuild keeps every case document in memory: millions of long-lived, acyclic
        # objects that the cyclic collector would traverse again and again as they
        # accumulate. Reference counting frees all the rest; collection resumes after.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._catch_up(progress, self._rebuild_page_size)
        finally:
            self._complete = self._defer = False
            if collecting:
                gc.enable()
            self._views.create_indexes(groups)

    # ---- live ------------------------------------------------------------------------

    def notify(self) -> None:
        """This process just recorded: wake the live runner now rather than at the poll."""
        self._wake.set()

    def start(self, poll_interval: float = 0.25) -> None:
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.is_set():
                try:
                    self.catch_up()
                except Exception:
                    log.exception("view_runner_failed")
                    self._stop.wait(1.0)
                self._wake.wait(poll_interval)
                self._wake.clear()

        self._thread = threading.Thread(target=loop, name="hub-views", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
