"""The case views: each case's document, its inbox and caseload rows, and the
dashboard totals the documents move, folded by the pure reducers of
``projections`` (the same ones the faust worker runs).

The group tracks two positions, "cases" and "dashboard", always committed
together. It caches what it read or wrote (documents, each case's rows as last
committed) so a page writes only the rows that changed. Live, every page's rows
commit with it; a rebuild keeps the documents in memory and writes each case once,
at the end (or whenever ``MAX_CACHED_DOCS`` are held).
"""

from __future__ import annotations

import json
from typing import Any

from projections.case_doc import Doc, reduce_case
from projections.caseload import caseload_rows
from projections.dashboard import (
    DashboardOps,
    apply_all_dashboard_ops,
    dashboard_ops,
    dashboard_snapshot,
    empty_state,
)
from projections.events import EventRecord
from projections.inbox import inbox_rows
from services.views.page import Page
from services.views.sql.batch import ViewWrites
from services.views.sql.schema import caseload_values, dump_json, inbox_values

MAX_CACHED_DOCS = 200_000  # bound memory on very large rebuilds
_UNKNOWN: Any = object()


class CaseViews:
    tracks = ("cases", "dashboard")

    def __init__(self, views: Any) -> None:
        self._views = views  # SQLiteViewStore | PostgresViewStore
        self._defer = False  # rebuilding: write each case once
        self.forget()

    def forget(self) -> None:
        # The position the cached documents were folded to when that is ahead of what
        # is committed (a rebuild defers writing them); those cases are ``_dirty``.
        self._pending: int | None = None
        self._dirty: dict[str, None] = {}  # an ordered set: rows are written in this order
        self._docs: dict[str, Doc] = {}
        self._dashboard: dict[str, Any] | None = None
        # Per cached case: its dashboard entries as last committed (the ``before`` of
        # its next change), and the inbox and caseload rows last committed for it, so
        # unchanged rows are not written again. Only ever filled from rows this group
        # committed itself, or from the documents it loaded.
        self._snapshots: dict[str, Any] = {}
        self._inbox_rows: dict[str, list[tuple[Any, ...]]] = {}
        self._caseload_rows: dict[str, dict[str, tuple[Any, ...]]] = {}
        # True right after the case tables were emptied by a rebuild: a case missing
        # from the caches then has no document and no rows at all.
        self._complete = False

    def begin_rebuild(self) -> None:
        self._complete = self._defer = True

    def end_rebuild(self) -> None:
        self._complete = self._defer = False

    def folded_to(self, committed: dict[str, int]) -> int:
        return committed["cases"] if self._pending is None else self._pending

    def holds_unwritten(self) -> bool:
        return self._pending is not None

    # ---- folding -----------------------------------------------------------------

    def process(self, page: Page, committed: dict[str, int], writes: ViewWrites) -> None:
        """Fold each case's events of the page into its document, in order, keeping
        its dashboard entries as last committed; the case becomes dirty."""
        after = self.folded_to(committed)
        if page.last <= after:
            return
        changed: dict[str, list[EventRecord]] = {}
        for record in page.records:
            if record is None or record.position <= after:
                continue
            events = changed.get(record.case_id)
            if events is None:
                changed[record.case_id] = [record]
            else:
                events.append(record)
        if not self._complete:
            self._load_docs(changed.keys() - self._docs.keys())
        docs, snapshots, dirty = self._docs, self._snapshots, self._dirty
        for case_id, events in changed.items():
            doc = docs.get(case_id)
            if case_id not in snapshots:
                snapshots[case_id] = dashboard_snapshot(doc)
            for record in events:
                doc = reduce_case(doc, record, in_place=True)
            docs[case_id] = doc
            dirty[case_id] = None
        self._pending = page.last

    # ---- writing -----------------------------------------------------------------

    def flush(self, writes: ViewWrites, *, drained: bool) -> None:
        """Live, every page's cases; rebuilding, only once the log is drained or the
        cache is full."""
        if self._pending is not None and (
            not self._defer or drained or len(self._docs) > MAX_CACHED_DOCS
        ):
            self._write_cases(writes)

    def _write_cases(self, writes: ViewWrites) -> None:
        """Every dirty case's document, its rows (what changed), the dashboard moved
        by each case's change, and both positions (also with no case dirty: a page of
        other aggregates' events)."""
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
        this group last committed for it (all of them when those are unknown)."""
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

    def committed(self) -> None:
        if len(self._docs) > MAX_CACHED_DOCS and not self._dirty:
            # Bound memory on very large rebuilds: drop every cached case (all written).
            self._docs, self._snapshots = {}, {}
            self._inbox_rows, self._caseload_rows = {}, {}
            self._complete = False

    # ---- reading what is committed -------------------------------------------------

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
