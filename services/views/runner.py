"""Drives the pure reducers of ``projections`` over the notification log.

Reads events after each view group's tracked position in pages, folds them into
row changes, and commits rows and positions in one transaction per page. Used
live (a thread that wakes when this process records, and polls for other
writers: SQLite's recorder has no subscription) and for rebuilds.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import structlog
from eventsourcing.persistence import IntegrityError

from projections.audit import GENESIS, audit_entry
from projections.case_doc import Doc, reduce_case
from projections.caseload import caseload_rows
from projections.dashboard import dashboard_delta, dashboard_snapshot, empty_state
from projections.events import EventRecord, decode, is_case_event
from projections.inbox import inbox_rows
from services.views.store import GROUPS, ViewWrites, tracking_name

log = structlog.get_logger("hub.views")


class ViewRunner:
    def __init__(
        self,
        recorder: Any,
        views: Any,
        *,
        page_size: int = 2000,
        checkpoint_every: int = 1000,
    ) -> None:
        self._recorder = recorder  # the application recorder (notification log)
        self._views = views  # SQLiteViewStore | PostgresViewStore
        self._page_size = page_size
        self._checkpoint_every = checkpoint_every
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._forget()

    def _forget(self) -> None:
        """Drop every cache; the next page reloads state from the view tables."""
        self._docs: dict[str, Doc] = {}
        self._dashboard: dict[str, Any] | None = None
        self._head: str | None = None

    # ---- positions -------------------------------------------------------------

    def positions(self) -> dict[str, int]:
        return {g: self._views.max_tracking_id(tracking_name(g)) or 0 for g in GROUPS}

    def position(self) -> int:
        return min(self.positions().values())

    def wait_for(self, position: int, timeout: float = 5.0) -> bool:
        """Read-your-writes: True once every view has applied ``position``."""
        deadline = time.monotonic() + timeout
        self.notify()
        while True:
            if self.position() >= position:
                return True
            if time.monotonic() >= deadline:
                return False
            if self._thread is None:
                self.catch_up()
            else:
                time.sleep(0.005)

    # ---- processing --------------------------------------------------------------

    def catch_up(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Apply everything recorded so far. Returns the number of events applied."""
        with self._lock:
            applied = 0
            while True:
                done = self._page()
                if done is None:
                    return applied
                applied += done
                if progress is not None:
                    progress(applied, self._recorder.max_notification_id() or 0)

    def _page(self) -> int | None:
        positions = self.positions()
        start = min(positions.values()) + 1
        notifications = self._recorder.select_notifications(start, self._page_size)
        if not notifications:
            return None
        writes = ViewWrites()
        try:
            self._apply(notifications, positions, writes)
            self._views.commit(writes)
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

    def _apply(
        self, notifications: Iterable[Any], positions: dict[str, int], writes: ViewWrites
    ) -> None:
        notifications = list(notifications)
        case_ids = {str(n.originator_id) for n in notifications if is_case_event(n.topic)}
        self._load_docs(case_ids - set(self._docs))
        dashboard = self._load_dashboard() if "dashboard" in positions else None
        head = self._load_head()
        changed: set[str] = set()
        for n in notifications:
            record: EventRecord | None = None
            if is_case_event(n.topic):
                record = decode(n.id, n.originator_id, n.originator_version, n.topic, n.state)
                if n.id > positions["cases"]:
                    before = self._docs.get(record.case_id)
                    snapshot = dashboard_snapshot(before) if n.id > positions["dashboard"] else None
                    after = reduce_case(before, record, in_place=True)
                    self._docs[record.case_id] = after
                    changed.add(record.case_id)
                    if n.id > positions["dashboard"] and dashboard is not None:
                        dashboard_delta(dashboard, snapshot, after)
            if n.id > positions["audit"]:
                entry = audit_entry(
                    head, n.id, n.originator_id, n.originator_version, n.topic, n.state, record
                )
                head = entry["hash"]
                writes.audit.append(entry)
                if n.id % self._checkpoint_every == 0:
                    writes.checkpoints.append((n.id, head))
                    log.info("audit_checkpoint", position=n.id, head_hash=head)
        last = notifications[-1].id
        for case_id in changed:
            doc = self._docs[case_id]
            writes.case_docs[case_id] = doc
            writes.inbox[case_id] = inbox_rows(doc)
            writes.caseload[case_id] = caseload_rows(doc)
        if last > positions["cases"]:
            writes.positions["cases"] = last
        if last > positions["dashboard"]:
            writes.dashboard = dashboard
            writes.positions["dashboard"] = last
        if last > positions["audit"]:
            writes.positions["audit"] = last
            self._head = head
        if len(self._docs) > 200_000:  # bound memory on very large rebuilds
            self._docs = {k: self._docs[k] for k in changed}

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
            self._views.reset(groups)
            self._forget()
        return self.catch_up(progress)

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
