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
    apply_dashboard_ops,
    dashboard_ops,
    dashboard_snapshot,
    empty_state,
)
from projections.events import CASE_TOPIC_PREFIX, EventRecord, decode
from projections.inbox import inbox_rows
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
_UNKNOWN: Any = object()


class ViewRunner:
    def __init__(
        self,
        recorder: Any,
        views: Any,
        *,
        page_size: int = 2000,
        checkpoint_every: int = 1000,
        rebuild_page_size: int = 100_000,
    ) -> None:
        self._recorder = recorder  # the application recorder (notification log)
        self._views = views  # SQLiteViewStore | PostgresViewStore
        self._page_size = page_size
        # A rebuild reads larger pages: a case changed by several events of one page
        # is written once, and each page's fixed costs (the dashboard document, the
        # commit) are spread over more events. Never smaller than ``page_size``.
        self._rebuild_page_size = max(page_size, rebuild_page_size)
        self._checkpoint_every = checkpoint_every
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._applied = threading.Condition()
        self._applied_position = 0  # the lowest view position known applied
        self._forget()

    def _forget(self) -> None:
        """Drop every cache; the next page reloads state from the view tables."""
        # The positions this runner's caches stand at; None: caches are empty.
        self._cached_at: dict[str, int] | None = None
        self._docs: dict[str, Doc] = {}
        self._dashboard: dict[str, Any] | None = None
        self._head: str | None = None
        # Per cached case: its dashboard snapshot (the next event's ``before``), and the
        # inbox and caseload rows last committed for it, so unchanged rows are not
        # written again. Only ever filled from rows this runner committed itself.
        self._snapshots: dict[str, dict[str, Any] | None] = {}
        self._inbox_rows: dict[str, list[tuple[Any, ...]]] = {}
        self._caseload_rows: dict[str, dict[str, tuple[Any, ...]]] = {}
        # True right after the case tables were emptied by ``rebuild``: a case missing
        # from the caches then has no document and no rows at all.
        self._complete = False

    # ---- positions -------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        return {g: self._views.max_tracking_id(tracking_name(g)) or 0 for g in GROUPS}

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
            if self.position() >= position:
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
            applied = 0
            while True:
                done = self._page(page_size)
                if done is None:
                    return applied
                applied += done
                if progress is not None:
                    progress(applied, self._recorder.max_notification_id() or 0)

    def _page(self, page_size: int | None = None) -> int | None:
        positions = self.positions()
        if self._cached_at is not None and self._cached_at != positions:
            # Another runner (another process) moved the views on: our caches are stale.
            log.info("views_advanced_elsewhere", positions=positions)
            self._forget()
        start = min(positions.values()) + 1
        notifications = self._recorder.select_notifications(start, page_size or self._page_size)
        if not notifications:
            return None
        writes = ViewWrites()
        try:
            self._apply(notifications, positions, writes)
            self._views.commit(writes)
            self._cached_at = {**positions, **writes.positions}
            self._announce(min(self._cached_at.values()))
        except IntegrityError:
            # Another runner advanced the same views first: its rows stand, ours are
            # dropped whole with the transaction; start again from the tables.
            log.info("views_advanced_elsewhere", start=start)
            self._forget()
            return 0
        except BaseException:
            self._forget()
            raise
        return len(notifications)

    def _announce(self, position: int) -> None:
        with self._applied:
            if position > self._applied_position:
                self._applied_position = position
                self._applied.notify_all()

    def _apply(
        self, notifications: Iterable[Any], positions: dict[str, int], writes: ViewWrites
    ) -> None:
        notifications = list(notifications)
        # Each case event's id as text, once (None for other aggregates' events).
        case_ids = [
            str(n.originator_id) if n.topic.startswith(CASE_TOPIC_PREFIX) else None
            for n in notifications
        ]
        docs = self._docs
        if not self._complete:
            self._load_docs({c for c in case_ids if c is not None} - docs.keys())
        dashboard = self._load_dashboard() if "dashboard" in positions else None
        head = self._load_head()
        at_cases, at_dashboard, at_audit = (
            positions["cases"],
            positions["dashboard"],
            positions["audit"],
        )
        changed, digest = self._decode_and_chain(
            notifications, case_ids, at_cases, at_audit, bytes.fromhex(head), writes
        )
        ops = self._fold_cases(changed, at_dashboard if dashboard is not None else None, writes)
        # 3. In global order again: the dashboard totals (dashboard_delta's effect).
        if dashboard is not None:
            for position in sorted(ops):
                apply_dashboard_ops(dashboard, ops[position])
        last = notifications[-1].id
        if last > at_cases:
            writes.positions["cases"] = last
        if last > at_dashboard:
            writes.dashboard = dashboard
            writes.positions["dashboard"] = last
        if last > at_audit:
            writes.positions["audit"] = last
            self._head = digest.hex()
        if len(docs) > MAX_CACHED_DOCS:  # bound memory on very large rebuilds
            self._docs = {k: docs[k] for k in changed}
            for cache in (self._snapshots, self._inbox_rows, self._caseload_rows):
                for k in [k for k in cache if k not in changed]:
                    del cache[k]
            self._complete = False

    def _decode_and_chain(
        self,
        notifications: list[Any],
        case_ids: list[str | None],
        at_cases: int,
        at_audit: int,
        digest: bytes,
        writes: ViewWrites,
    ) -> tuple[dict[str, list[EventRecord]], bytes]:
        """1. In global order: decode each case event, and chain the audit trail.
        Returns each case's events to fold (in order) and the chain's head."""
        audit = writes.audit
        checkpoint_every = self._checkpoint_every
        changed: dict[str, list[EventRecord]] = {}
        for n, case_id in zip(notifications, case_ids, strict=True):
            position = n.id
            record: EventRecord | None = None
            if case_id is not None:
                record = decode(position, case_id, n.originator_version, n.topic, n.state)
                if position > at_cases:
                    if case_id in changed:
                        changed[case_id].append(record)
                    else:
                        changed[case_id] = [record]
            if position > at_audit:
                digest, row = audit_row(
                    digest,
                    position,
                    n.originator_id,
                    n.originator_version,
                    n.topic,
                    n.state,
                    record,
                    case_id,
                )
                audit.append(row)
                if position % checkpoint_every == 0:
                    head = row[-1]
                    writes.checkpoints.append((position, head))
                    log.info("audit_checkpoint", position=position, head_hash=head)
        return changed, digest

    def _fold_cases(
        self,
        changed: dict[str, list[EventRecord]],
        at_dashboard: int | None,
        writes: ViewWrites,
    ) -> dict[int, DashboardOps]:
        """2. Case by case: fold each case's events of the page into its document and
        work out what each does to the dashboard (from ``at_dashboard`` on; None: no
        dashboard), while the case is at hand: a page touches tens of thousands of
        documents, and visiting each once rather than once per event spares most trips
        to memory. Then the case's rows and JSON. Returns position -> dashboard ops."""
        docs, snapshots = self._docs, self._snapshots
        ops: dict[int, DashboardOps] = {}
        for case_id, events in changed.items():
            doc = docs.get(case_id)
            snapshot = snapshots.pop(case_id, _UNKNOWN)
            for record in events:
                if at_dashboard is not None and record.position > at_dashboard:
                    if snapshot is _UNKNOWN:
                        snapshot = dashboard_snapshot(doc)
                    doc = reduce_case(doc, record, in_place=True)
                    snapshot, ops[record.position] = dashboard_ops(snapshot, doc)
                else:
                    snapshot = _UNKNOWN
                    doc = reduce_case(doc, record, in_place=True)
            docs[case_id] = doc
            if snapshot is not _UNKNOWN:
                snapshots[case_id] = snapshot
            writes.case_docs[case_id] = dump_json(doc)
            self._diff_rows(case_id, doc, writes)
        return ops

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
        self, groups: tuple[str, ...] = GROUPS, progress: Callable[[int, int], None] | None = None
    ) -> int:
        """Drop the groups' rows and positions, then apply every event again."""
        if "dashboard" in groups and "cases" not in groups:
            groups = ("cases", *groups)  # the dashboard folds case changes
        with self._lock:
            self._views.reset(groups, drop_indexes=True)
            self._forget()
            with self._applied:
                self._applied_position = 0
            self._complete = "cases" in groups
        # A rebuild keeps every case document in memory: millions of long-lived, acyclic
        # objects that the cyclic collector would traverse again and again as they
        # accumulate. Reference counting frees all the rest; collection resumes after.
        collecting = gc.isenabled()
        gc.disable()
        try:
            return self._catch_up(progress, self._rebuild_page_size)
        finally:
            self._complete = False
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
