"""One batch of view row changes, and the statements both databases write it with.

``ViewWrites`` collects a page's row changes for every view group; ``write_batch``
writes them and then each group's tracking position, compared and set, in the
caller's transaction: a crash never double-applies or skips an event, and a batch
computed from positions its views have left is refused whole (``ViewsMoved``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking

from services.views.sql.schema import (
    AUDIT_COLUMNS,
    CASELOAD_COLUMNS,
    DOC_COLUMNS,
    INBOX_COLUMNS,
    Columns,
    ViewSchema,
    dump_json,
    epoch,
    on_conflict,
    tracking_name,
)


class ViewsMoved(IntegrityError):
    """A batch was computed from positions its views no longer stand at (another
    runner applied them, or a rebuild reset them): nothing of it is written."""


@dataclass
class ViewWrites:
    """Row changes of one batch. ``positions``: the group's last applied position.

    Inbox and caseload rows (``inbox_values``/``caseload_values`` tuples) come as
    ``*_replace`` (case -> all its rows: any old ones are deleted first), or, where
    the runner knows what the table holds, as only the difference."""

    positions: dict[str, int] = field(default_factory=dict)
    # The positions the batch was computed from, for the groups in ``positions``: it
    # commits only if every one of them still stands there (else ``ViewsMoved``).
    expected: dict[str, int] = field(default_factory=dict)
    case_docs: dict[str, str] = field(default_factory=dict)  # case -> document (JSON)
    case_docs_insert: list[tuple[str, str]] = field(default_factory=list)  # case had none
    inbox_replace: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    inbox_insert: list[tuple[Any, ...]] = field(default_factory=list)  # case had none
    caseload_replace: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    caseload_insert: list[tuple[Any, ...]] = field(default_factory=list)  # case had none
    caseload_upsert: list[tuple[Any, ...]] = field(default_factory=list)
    caseload_delete: list[tuple[str, str]] = field(default_factory=list)  # (agency, case)
    audit: list[tuple[Any, ...]] = field(default_factory=list)  # projections.audit.audit_row
    checkpoints: list[tuple[int, str]] = field(default_factory=list)
    dashboard: dict[str, Any] | None = None


def require_single_row_tracking(datastore: Any) -> None:
    # ``write_positions`` compares and sets the one tracking row of each view group.
    if not datastore.single_row_tracking:
        raise ValueError("the view tables need the library's single-row tracking (its default)")


class BatchWriter(ViewSchema):
    """Writes a ``ViewWrites`` through a cursor of the caller's transaction."""

    def write_batch(self, c: Any, writes: ViewWrites) -> None:
        p = self.P
        if writes.case_docs:
            self.upsert_rows(
                c,
                "view_case_docs",
                DOC_COLUMNS,
                list(writes.case_docs.items()),
            )
        if writes.case_docs_insert:
            self.insert_rows(c, "view_case_docs", DOC_COLUMNS, writes.case_docs_insert)
        if writes.inbox_replace:
            self.delete_cases(c, "view_inbox", list(writes.inbox_replace))
        inbox = [r for rows in writes.inbox_replace.values() for r in rows]
        inbox += writes.inbox_insert
        if inbox:
            self.insert_rows(
                c,
                "view_inbox",
                INBOX_COLUMNS,
                [
                    (*r[:8], epoch(r[7]), r[8], epoch(r[8]))  # offered_ts, due_ts
                    for r in inbox
                ],
            )
        if writes.caseload_replace:
            self.delete_cases(c, "view_caseload", list(writes.caseload_replace))
        caseload = [r for rows in writes.caseload_replace.values() for r in rows]
        caseload += writes.caseload_insert
        if caseload:
            self.insert_rows(c, "view_caseload", CASELOAD_COLUMNS, caseload)
        if writes.caseload_delete:
            self.delete_caseload_rows(c, writes.caseload_delete)
        if writes.caseload_upsert:
            self.upsert_rows(c, "view_caseload", CASELOAD_COLUMNS, writes.caseload_upsert)
        if writes.audit:
            self.insert_rows(c, "view_audit", AUDIT_COLUMNS, writes.audit)
        if writes.checkpoints:
            c.executemany(
                f"INSERT INTO view_audit_checkpoints VALUES ({p},{p},{p})",
                [
                    (pos, head, datetime.now().astimezone().isoformat())
                    for pos, head in writes.checkpoints
                ],
            )
        if writes.dashboard is not None:
            c.execute(
                f"INSERT INTO view_dashboard VALUES ({p},{p}) "
                "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
                ("totals", dump_json(writes.dashboard)),
            )
        self.write_positions(c, writes)

    def write_positions(self, c: Any, writes: ViewWrites) -> None:
        """Each group's new position, set only where the group still stands at its
        expected one (else ``ViewsMoved``, and the transaction rolls back). Last in the
        batch: by then the transaction holds the write lock (SQLite) or the views'
        lock (PostgreSQL), so nothing moves between this check and the commit."""
        t, p = self.tracking_table, self.P
        for group, position in writes.positions.items():
            name = tracking_name(group)
            expected = writes.expected.get(group)
            if expected is None:  # no expectation: only forwards, as the library does
                self._insert_tracking(c, Tracking(name, position))
                continue
            if expected == 0:  # the group has no row yet (new, or reset)
                c.execute(
                    f"INSERT INTO {t} VALUES ({p}, {p}) ON CONFLICT DO NOTHING "
                    "RETURNING notification_id",
                    (name, position),
                )
            else:
                c.execute(
                    f"UPDATE {t} SET notification_id = {p} "
                    f"WHERE application_name = {p} AND notification_id = {p} "
                    "RETURNING notification_id",
                    (position, name, expected),
                )
            if c.fetchone() is None:
                raise ViewsMoved(f"{group} no longer stands at {expected}")

    # Row statements, one call per table and batch. SQLite: prepared statements run
    # row by row in this process, as quick as it gets there. PostgreSQL overrides
    # them with COPY (through a staging table for upserts) and array parameters.

    def insert_rows(
        self, c: Any, table: str, columns: Columns, rows: list[tuple[Any, ...]]
    ) -> None:
        marks = ",".join([self.P] * len(columns))
        c.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)

    def upsert_rows(
        self, c: Any, table: str, columns: Columns, rows: list[tuple[Any, ...]]
    ) -> None:
        marks = ",".join([self.P] * len(columns))
        c.executemany(f"INSERT INTO {table} VALUES ({marks}) {on_conflict(table)}", rows)

    def delete_cases(self, c: Any, table: str, case_ids: list[str]) -> None:
        c.executemany(f"DELETE FROM {table} WHERE case_id = {self.P}", [(k,) for k in case_ids])

    def delete_caseload_rows(self, c: Any, keys: list[tuple[str, str]]) -> None:
        p = self.P
        c.executemany(f"DELETE FROM view_caseload WHERE agency = {p} AND case_id = {p}", keys)
