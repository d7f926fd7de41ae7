"""The case views: each case's document, its inbox and caseload rows, and the
dashboard totals the documents move, folded by the pure reducers of
``projections`` (the same ones the faust worker runs).

The group tracks two positions, "cases" and "dashboard", always committed
together. It caches what it read or wrote (documents, each case's rows as last
committed) so a page writes only the rows that changed. Live, every page's rows
commit with it; a rebuild keeps the documents in memory and writes each case once,
at the end (or whenever the cache is full).

The cache is bounded in bytes (``HUB_VIEW_CACHE_MB``), by an estimate of what each
case holds in memory: its document's JSON length when it was last loaded or written
times ``MEMORY_PER_JSON_BYTE``, plus ``MEMORY_PER_STATE_BYTE`` for each stored byte of
the events folded into it since. Once past the bound, the cases used longest ago are
dropped (all written by then) until a quarter of it is free again.
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
from services.views.sql.schema import LIVE, Tables, caseload_values, dump_json, inbox_values

DEFAULT_CACHE_MB = 512
MAX_CACHED_DOCS = 200_000  # and at most this many cases, however small
# Measured on the benchmark's history (bench.history): a parsed case document takes
# 4.3 times its compact JSON in memory; a document grows by about 0.6 JSON bytes per
# stored event byte folded into it. Rows and snapshots kept beside it: ~1 KB.
MEMORY_PER_JSON_BYTE = 4
MEMORY_PER_STATE_BYTE = 2.5
MEMORY_PER_CASE = 1024
_UNKNOWN: Any = object()


class CaseViews:
    tracks = ("cases", "dashboard")

    def __init__(
        self, views: Any, *, tables: Tables = LIVE, cache_bytes: int | None = None
    ) -> None:
        self._views = views  # SQLiteViewStore | PostgresViewStore
        self._tables = tables
        self._defer = False  # rebuilding: write each case once
        self.cache_bytes = DEFAULT_CACHE_MB * 2**20 if cache_bytes is None else cache_bytes
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
        # Per cached case, its estimated memory, in the order the cases were last used.
        self._sizes: dict[str, float] = {}
        self.cached_bytes = 0.0
        # True while a rebuild fills empty tables: a case missing from the caches then
        # has no document and no rows at all, unless it is one of ``_evicted``: cases
        # dropped from the caches once written, with the agencies of their caseload
        # rows (their deletes then go by primary key: the shadow tables have no index
        # by case until the rebuild's end).
        self._complete = False
        self._evicted: dict[str, tuple[str, ...]] = {}

    def begin_rebuild(self) -> None:
        self._complete = self._defer = True

    def end_rebuild(self) -> None:
        self._complete = self._defer = False
        self._evicted = {}

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
        grown: dict[str, int] = {}  # stored bytes of the events folded, per case
        for row, record in zip(page.rows, page.records, strict=True):
            if record is None or record.position <= after:
                continue
            case_id = record.case_id
            events = changed.get(case_id)
            if events is None:
                changed[case_id] = [record]
                grown[case_id] = len(row[4])
            else:
                events.append(record)
                grown[case_id] += len(row[4])
        if not self._complete:
            self._load_docs(changed.keys() - self._docs.keys())
        elif self._evicted:
            evicted, docs = self._evicted, self._docs
            self._load_docs({c for c in changed if c in evicted and c not in docs})
        docs, snapshots, dirty, sizes = self._docs, self._snapshots, self._dirty, self._sizes
        total = self.cached_bytes
        for case_id, events in changed.items():
            doc = docs.get(case_id)
            if case_id not in snapshots:
                snapshots[case_id] = dashboard_snapshot(doc)
            for record in events:
                doc = reduce_case(doc, record, in_place=True)
            docs[case_id] = doc
            dirty[case_id] = None
            # Used last: to the end of the eviction order, with its estimate grown.
            size = sizes.pop(case_id, None)
            if size is None:  # a case new to the cache
                size = MEMORY_PER_CASE
                total += size
            growth = MEMORY_PER_STATE_BYTE * grown[case_id]
            sizes[case_id] = size + growth
            total += growth
        self.cached_bytes = total
        self._pending = page.last

    def _full(self) -> bool:
        return self.cached_bytes > self.cache_bytes or len(self._docs) > MAX_CACHED_DOCS

    # ---- writing -----------------------------------------------------------------

    def flush(self, writes: ViewWrites, *, drained: bool) -> None:
        """Live, every page's cases; rebuilding, only once the log is drained or the
        cache is full."""
        if self._pending is not None and (not self._defer or drained or self._full()):
            self._write_cases(writes)

    def _write_cases(self, writes: ViewWrites) -> None:
        """Every dirty case's document, its rows (what changed), the dashboard moved
        by each case's change, and both positions (also with no case dirty: a page of
        other aggregates' events)."""
        docs, snapshots, sizes = self._docs, self._snapshots, self._sizes
        ops: list[DashboardOps] = []
        total = self.cached_bytes
        for case_id in self._dirty:
            doc = docs[case_id]
            text = dump_json(doc)
            if (  # never written (its rows are known once it was)
                self._complete
                and case_id not in self._caseload_rows
                and case_id not in self._evicted
            ):
                writes.case_docs_insert.append((case_id, text))
            else:
                writes.case_docs[case_id] = text
            # The estimate made exact again: the document's JSON is known now.
            size = MEMORY_PER_CASE + MEMORY_PER_JSON_BYTE * len(text)
            total += size - sizes[case_id]
            sizes[case_id] = size
            self._diff_rows(case_id, doc, writes)
            snapshots[case_id], op = dashboard_ops(snapshots[case_id], doc)
            ops.append(op)
        self.cached_bytes = total
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
        written = self._evicted.pop(case_id, None)  # its caseload agencies, if evicted
        fresh = self._complete and written is None  # no rows in the tables yet
        self._diff_inbox(case_id, doc, writes, fresh=fresh)
        caseload = {r["agency"]: caseload_values(r) for r in caseload_rows(doc)}
        before = self._caseload_rows.get(case_id, _UNKNOWN)
        if before is _UNKNOWN and written is not None:
            before = dict.fromkeys(written)  # rows there, contents unknown: all upserted
        elif before is _UNKNOWN and fresh:
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

    def _diff_inbox(self, case_id: str, doc: Doc, writes: ViewWrites, *, fresh: bool) -> None:
        inbox = [inbox_values(r) for r in inbox_rows(doc)]
        known = self._inbox_rows.get(case_id, _UNKNOWN)
        if known is _UNKNOWN and fresh:
            known = []
        if known is _UNKNOWN or known != inbox:
            if known is _UNKNOWN or known:
                writes.inbox_replace[case_id] = inbox
            else:
                writes.inbox_insert.extend(inbox)
        self._inbox_rows[case_id] = inbox

    def committed(self) -> None:
        if self._full() and not self._dirty:
            self._evict()

    def _evict(self) -> None:
        """Drop the cases used longest ago (every one written) until a quarter of the
        bound is free: they are loaded again from the tables when next needed."""
        keep_bytes, keep_count = self.cache_bytes * 0.75, MAX_CACHED_DOCS * 3 // 4
        sizes, total = self._sizes, self.cached_bytes
        dropped: list[str] = []
        for case_id, size in sizes.items():
            if total <= keep_bytes and len(sizes) - len(dropped) <= keep_count:
                break
            dropped.append(case_id)
            total -= size
        for case_id in dropped:
            del sizes[case_id]
            self._docs.pop(case_id, None)
            self._snapshots.pop(case_id, None)
            self._inbox_rows.pop(case_id, None)
            rows = self._caseload_rows.pop(case_id, None)
            if self._complete:  # rebuilding: remember it has rows now
                self._evicted[case_id] = tuple(rows or ())
        self.cached_bytes = total

    # ---- reading what is committed -------------------------------------------------

    def _load_docs(self, case_ids: set[str]) -> None:
        ids = sorted(case_ids)
        p = self._views.P
        for i in range(0, len(ids), 500):
            chunk = ids[i : i + 500]
            rows = self._views.query(
                f"SELECT case_id, doc FROM {self._tables['view_case_docs']} "
                f"WHERE case_id IN ({','.join([p] * len(chunk))})",
                tuple(chunk),
            )
            for row in rows:
                case_id, text = row["case_id"], row["doc"]
                self._docs[case_id] = json.loads(text)
                self._snapshots.pop(case_id, None)
                size = MEMORY_PER_CASE + MEMORY_PER_JSON_BYTE * len(text)
                self.cached_bytes += size - self._sizes.pop(case_id, 0)
                self._sizes[case_id] = size

    def _load_dashboard(self) -> dict[str, Any]:
        if self._dashboard is None:
            rows = self._views.query(
                f"SELECT doc FROM {self._tables['view_dashboard']} WHERE name = 'totals'"
            )
            self._dashboard = json.loads(rows[0]["doc"]) if rows else empty_state()
        return self._dashboard
