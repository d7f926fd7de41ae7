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
    LIVE,
    Columns,
    Tables,
    ViewSchema,
    dump_json,
    epoch,
    on_conflict,
)


class ViewsMoved(IntegrityError):
    """A batch was computed from positions its views no longer stand at (another
    runner applied them, a reset emptied them, or a rebuild swapped new tables in):
    nothing of it is written."""


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
    # The view generation the batch was computed in (None: not compared): it commits
    # only if no swap came between (else ``ViewsMoved``).
    generation: int | None = None
    tables: Tables = LIVE  # which tables: the live ones, or a rebuild's shadow
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
        p, t = self.P, writes.tables
        if writes.case_docs:
            self.upsert_rows(c, t, "view_case_docs", DOC_COLUMNS, list(writes.case_docs.items()))
        if writes.case_docs_insert:
            self.insert_rows(c, t, "view_case_docs", DOC_COLUMNS, writes.case_docs_insert)
        if writes.inbox_replace:
            self.delete_cases(c, t, "view_inbox", list(writes.inbox_replace))
        inbox = [r for rows in writes.inbox_replace.values() for r in rows]
        inbox += writes.inbox_insert
        if inbox:
            self.insert_rows(
                c,
                t,
                "view_inbox",
                INBOX_COLUMNS,
                [
                    (*r[:8], epoch(r[7]), r[8], epoch(r[8]))  # offered_ts, due_ts
                    for r in inbox
                ],
            )
        if writes.caseload_replace:
            self.delete_cases(c, t, "view_caseload", list(writes.caseload_replace))
        caseload = [r for rows in writes.caseload_replace.values() for r in rows]
        caseload += writes.caseload_insert
        if caseload:
            self.insert_rows(c, t, "view_caseload", CASELOAD_COLUMNS, caseload)
        if writes.caseload_delete:
            self.delete_caseload_rows(c, t, writes.caseload_delete)
        if writes.caseload_upsert:
            self.upsert_rows(c, t, "view_caseload", CASELOAD_COLUMNS, writes.caseload_upsert)
        if writes.audit:
            self.insert_rows(c, t, "view_audit", AUDIT_COLUMNS, writes.audit)
        if writes.checkpoints:
            c.executemany(
                f"INSERT INTO {t['view_audit_checkpoints']} VALUES ({p},{p},{p})",
                [
                    (pos, head, datetime.now().astimezone().isoformat())
                    for pos, head in writes.checkpoints
                ],
            )
        if writes.dashboard is not None:
            c.execute(
                f"INSERT INTO {t['view_dashboard']} VALUES ({p},{p}) "
                "ON CONFLICT (name) DO UPDATE SET doc = excluded.doc",
                ("totals", dump_json(writes.dashboard)),
            )
        self.write_positions(c, writes)

    def write_positions(self, c: Any, writes: ViewWrites) -> None:
        """Each group's new position, set only where the group still stands at its
        expected one, and only in the expected generation (else ``ViewsMoved``, and
        the transaction rolls back). Last in the batch: by then the transaction holds
        the write lock (SQLite) or the views' lock (PostgreSQL), so nothing moves
        between this check and the commit."""
        t, p = self.tracking_table, self.P
        for group, position in writes.positions.items():
            name = writes.tables.tracking(group)
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
        if writes.generation is not None and self.generation_in(c) != writes.generation:
            raise ViewsMoved(f"the views were swapped since generation {writes.generation}")

    def generation_in(self, c: Any) -> int:
        c.execute(self.generation_statement())
        row = c.fetchone()
        if row is None:
            return 0
        return int(row["generation"] if isinstance(row, dict) else row[0])

    def positions_in(self, c: Any, names: list[str]) -> dict[str, int]:
        """Tracked positions as the caller's transaction sees them (0 for none)."""
        found = dict.fromkeys(names, 0)
        marks = ",".join([self.P] * len(names))
        c.execute(
            f"SELECT application_name, notification_id FROM {self.tracking_table} "
            f"WHERE application_name IN ({marks})",
            tuple(names),
        )
        for row in c.fetchall():
            name, position = (
                (row["application_name"], row["notification_id"])
                if isinstance(row, dict)
                else (row[0], row[1])
            )
            found[name] = int(position)
        return found

    # Row statements, one call per table and batch. SQLite: prepared statements run
    # row by row in this process, as quick as it gets there. PostgreSQL overrides
    # them with COPY (through a staging table for upserts) and array parameters.
    # ``table`` is the live name; ``tables`` says which set is written.

    def insert_rows(
        self, c: Any, tables: Tables, table: str, columns: Columns, rows: list[tuple[Any, ...]]
    ) -> None:
        marks = ",".join([self.P] * len(columns))
        c.executemany(f"INSERT INTO {tables[table]} VALUES ({marks})", rows)

    def upsert_rows(
        self, c: Any, tables: Tables, table: str, columns: Columns, rows: list[tuple[Any, ...]]
    ) -> None:
        marks = ",".join([self.P] * len(columns))
        c.executemany(f"INSERT INTO {tables[table]} VALUES ({marks}) {on_conflict(table)}", rows)

    def delete_cases(self, c: Any, tables: Tables, table: str, case_ids: list[str]) -> None:
        c.executemany(
            f"DELETE FROM {tables[table]} WHERE case_id = {self.P}", [(k,) for k in case_ids]
        )

    def delete_caseload_rows(self, c: Any, tables: Tables, keys: list[tuple[str, str]]) -> None:
        p = self.P
        c.executemany(
            f"DELETE FROM {tables['view_caseload']} WHERE agency = {p} AND case_id = {p}", keys
        )
