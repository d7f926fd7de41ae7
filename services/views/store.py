"""View tables for SQLite and PostgreSQL, as ``eventsourcing`` tracking recorders.

``ViewWrites`` collects one batch's row changes for every view group; ``commit``
writes them and each group's tracking position in one transaction, so a crash
never double-applies or skips an event. The SQL is shared; only placeholders
and column types differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar
from zlib import crc32

import orjson
from eventsourcing.persistence import IntegrityError, Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder

GROUPS = ("cases", "dashboard", "audit")


class ViewsMoved(IntegrityError):
    """A batch was computed from positions its views no longer stand at (another
    runner applied them, or a rebuild reset them): nothing of it is written."""


def dump_json(doc: Any) -> str:
    """How every view document is stored: compact JSON (what the standard library
    writes with ``separators=(",", ":"), ensure_ascii=False``, several times quicker)."""
    return orjson.dumps(doc).decode()


def tracking_name(group: str) -> str:
    return f"view:{group}"


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def inbox_values(r: dict[str, Any]) -> tuple[Any, ...]:
    """An inbox row (``projections.inbox``) as column values, without the epochs."""
    return (
        r["handover_id"],
        r["agency"],
        r["case_id"],
        r["programme"],
        r["site"],
        r["kind"],
        r["from_agency"],
        r["offered_at"],
        r["due_at"],
    )


def caseload_values(r: dict[str, Any]) -> tuple[Any, ...]:
    """A caseload row (``projections.caseload``) as column values, in column order."""
    return (
        r["agency"],
        r["case_id"],
        r["programme"],
        r["site"],
        r["stage"],
        r["lead_agency"],
        r["coach"],
        r["next_due_at"],
        r["last_activity_at"],
    )


Columns = tuple[tuple[str, str], ...]  # (name, PostgreSQL type) in table order

DOC_COLUMNS: Columns = (("case_id", "text"), ("doc", "text"))
INBOX_COLUMNS: Columns = (
    ("handover_id", "text"),
    ("agency", "text"),
    ("case_id", "text"),
    ("programme", "text"),
    ("site", "text"),
    ("kind", "text"),
    ("from_agency", "text"),
    ("offered_at", "text"),
    ("offered_ts", "float8"),
    ("due_at", "text"),
    ("due_ts", "float8"),
)
CASELOAD_COLUMNS: Columns = (
    ("agency", "text"),
    ("case_id", "text"),
    ("programme", "text"),
    ("site", "text"),
    ("stage", "text"),
    ("lead_agency", "text"),
    ("coach", "text"),
    ("next_due_at", "text"),
    ("last_activity_at", "text"),
)
AUDIT_COLUMNS: Columns = (
    ("position", "int8"),
    ("case_id", "text"),
    ("type", "text"),
    ("agency", "text"),
    ("actor", "text"),
    ("occurred_at", "text"),
    ("recorded_at", "text"),
    ("legal_basis", "text"),
    ("hash", "text"),
)
_KEYS = {"view_case_docs": ("case_id",), "view_caseload": ("agency", "case_id")}
_UPSERTED = {"view_case_docs": DOC_COLUMNS, "view_caseload": CASELOAD_COLUMNS}


def _on_conflict(table: str) -> str:
    keys = _KEYS[table]
    updates = ", ".join(
        f"{name} = excluded.{name}" for name, _ in _UPSERTED[table] if name not in keys
    )
    return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"


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


class _ViewSQL:
    """Statements in one dialect; ``P`` is the placeholder, ``REAL`` a float type."""

    P = "?"
    REAL = "REAL"
    TEXT_KEY = "TEXT"
    # SQLite: the audit position is the table's own rowid, with no separate index to
    # keep, and caseload rows live in their primary key's b-tree.
    POSITION_KEY = "INTEGER PRIMARY KEY"
    KEYED_TABLE = " WITHOUT ROWID"
    tracking_table = "tracking"

    def view_create_statements(self) -> list[str]:
        t, r = self.TEXT_KEY, self.REAL
        return [
            f"CREATE TABLE IF NOT EXISTS view_case_docs (case_id {t} PRIMARY KEY, doc TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS view_inbox (handover_id {t} PRIMARY KEY, agency {t} NOT NULL, "
            "case_id TEXT NOT NULL, programme TEXT, site TEXT, kind TEXT NOT NULL, "
            f"from_agency TEXT NOT NULL, offered_at TEXT NOT NULL, offered_ts {r} NOT NULL, "
            f"due_at TEXT NOT NULL, due_ts {r} NOT NULL)",
            "CREATE INDEX IF NOT EXISTS view_inbox_agency ON view_inbox (agency, offered_ts)",
            "CREATE INDEX IF NOT EXISTS view_inbox_case ON view_inbox (case_id)",
            f"CREATE TABLE IF NOT EXISTS view_caseload (agency {t} NOT NULL, case_id {t} NOT NULL, "
            "programme TEXT, site TEXT, stage TEXT NOT NULL, lead_agency TEXT, coach TEXT, "
            "next_due_at TEXT, last_activity_at TEXT, PRIMARY KEY (agency, case_id))"
            f"{self.KEYED_TABLE}",
            *self.create_index_statements("cases"),
            f"CREATE TABLE IF NOT EXISTS view_audit (position {self.POSITION_KEY}, case_id TEXT, "
            "type TEXT NOT NULL, agency TEXT, actor TEXT, occurred_at TEXT, recorded_at TEXT, "
            "legal_basis TEXT NOT NULL, hash TEXT NOT NULL)",
            *self.create_index_statements("audit"),
            "CREATE TABLE IF NOT EXISTS view_audit_checkpoints (position BIGINT PRIMARY KEY, "
            "head_hash TEXT NOT NULL, created_at TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS view_dashboard (name {t} PRIMARY KEY, doc TEXT NOT NULL)",
        ]

    # ---- writing -------------------------------------------------------------

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
        c.executemany(f"INSERT INTO {table} VALUES ({marks}) {_on_conflict(table)}", rows)

    def delete_cases(self, c: Any, table: str, case_ids: list[str]) -> None:
        c.executemany(f"DELETE FROM {table} WHERE case_id = {self.P}", [(k,) for k in case_ids])

    def delete_caseload_rows(self, c: Any, keys: list[tuple[str, str]]) -> None:
        p = self.P
        c.executemany(f"DELETE FROM view_caseload WHERE agency = {p} AND case_id = {p}", keys)

    # ---- resetting -----------------------------------------------------------

    # Secondary indexes a rebuild drops with the rows and creates again at its end: one
    # sort then is far cheaper than a million inserts at random places in the index.
    # The runner never reads through them (the queries do); they return on any start.
    def bulk_indexes(self, group: str) -> dict[str, str]:
        if group == "cases":
            return {
                "view_caseload_case": "CREATE INDEX IF NOT EXISTS view_caseload_case "
                "ON view_caseload (case_id)",
            }
        if group == "audit":
            return {
                "view_audit_case": "CREATE INDEX IF NOT EXISTS view_audit_case "
                "ON view_audit (case_id, position)"
            }
        return {}

    def drop_index_statements(self, group: str) -> list[str]:
        return [f"DROP INDEX IF EXISTS {name}" for name in self.bulk_indexes(group)]

    def create_index_statements(self, group: str) -> list[str]:
        return list(self.bulk_indexes(group).values())

    GROUP_TABLES: ClassVar[dict[str, tuple[str, ...]]] = {
        "cases": ("view_case_docs", "view_inbox", "view_caseload"),
        "dashboard": ("view_dashboard",),
        "audit": ("view_audit", "view_audit_checkpoints"),
    }

    def reset_statements(self, group: str) -> list[tuple[str, tuple[Any, ...]]]:
        statements: list[tuple[str, tuple[Any, ...]]] = [
            (f"DELETE FROM {table}", ()) for table in self.GROUP_TABLES[group]
        ]
        statements.append(
            (
                f"DELETE FROM {self.tracking_table} WHERE application_name = {self.P}",
                (tracking_name(group),),
            )
        )
        return statements


def _require_single_row_tracking(datastore: Any) -> None:
    # ``write_positions`` compares and sets the one tracking row of each view group.
    if not datastore.single_row_tracking:
        raise ValueError("the view tables need the library's single-row tracking (its default)")


class SQLiteViewStore(_ViewSQL, SQLiteTrackingRecorder):
    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        _require_single_row_tracking(datastore)
        super().__init__(datastore, **kwargs)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *self.view_create_statements()]

    def max_tracking_ids(self, names: list[str]) -> dict[str, int]:
        """``max_tracking_id`` of each name (0 for none), in one read transaction."""
        with self.datastore.transaction(commit=False) as c:
            return {name: self._max_tracking_id(name, c) or 0 for name in names}

    def commit(self, writes: ViewWrites) -> None:
        # Views are derived data, so their commits need not wait for the disk: in WAL
        # mode, synchronous=NORMAL keeps the database consistent after a crash or a
        # power cut, only the last view pages may be gone, with their tracked
        # positions, and are applied again. The connection is shared with the event
        # recorder, whose commits stay as they were (restored right after).
        with self.datastore.get_connection(commit=True) as conn:
            raw = conn._sqlite_conn
            level = raw.execute("PRAGMA synchronous").fetchone()[0]
            relax = level > 1 and self.datastore.pool.is_journal_mode_wal
            raw.execute("PRAGMA cache_size=-65536")
            if relax:
                raw.execute("PRAGMA synchronous=NORMAL")
            try:
                with conn.transaction(commit=True) as c:
                    self.write_batch(c, writes)
            finally:
                if relax:
                    raw.execute(f"PRAGMA synchronous={int(level)}")

    def reset(self, groups: tuple[str, ...], *, drop_indexes: bool = False) -> None:
        with self.datastore.transaction(commit=True) as c:
            for group in groups:
                for statement, params in self.reset_statements(group):
                    c.execute(statement, params)
                for statement in self.drop_index_statements(group) if drop_indexes else ():
                    c.execute(statement)

    def create_indexes(self, groups: tuple[str, ...]) -> None:
        with self.datastore.transaction(commit=True) as c:
            for group in groups:
                for statement in self.create_index_statements(group):
                    c.execute(statement)

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # plain tuples, zipped with the names: quicker
            cursor.execute(statement, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


class PostgresViewStore(_ViewSQL, PostgresTrackingRecorder):
    P = "%s"
    REAL = "DOUBLE PRECISION"
    TEXT_KEY = "TEXT"
    POSITION_KEY = "BIGINT PRIMARY KEY"
    KEYED_TABLE = ""

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        _require_single_row_tracking(datastore)
        super().__init__(datastore, **kwargs)
        from psycopg.sql import SQL

        self._schema = self.datastore.schema
        self._lz4: bool | None = None
        self.tracking_table = self.tracking_table_name
        self.sql_create_statements.extend(SQL(s) for s in self.view_create_statements())  # type: ignore[arg-type]

    def _create_table(self, curs: Any) -> None:
        self._in_schema(curs)
        super()._create_table(curs)

    def max_tracking_ids(self, names: list[str]) -> dict[str, int]:
        """``max_tracking_id`` of each name (0 for none), over one connection."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            return {name: self._max_tracking_id(name, curs) or 0 for name in names}

    def _in_schema(self, curs: Any, *then: str) -> None:
        """This transaction in the hub's schema, then ``then`` (plain statements), in
        one round trip."""
        from psycopg.sql import SQL, Identifier

        statements = [SQL("SET LOCAL search_path TO {}").format(Identifier(self._schema))]
        statements.extend(SQL(statement) for statement in then)  # type: ignore[arg-type]
        curs.execute(SQL("; ").join(statements))

    def _lock_views(self) -> str:
        """Commits and resets of this schema's views, one at a time (until the
        transaction ends): a reset's deletes never miss rows of a commit that lands
        while it runs, and a commit's positions are set against settled rows."""
        return f"SELECT pg_advisory_xact_lock({crc32(f'hub-views:{self._schema}'.encode())})"

    def commit(self, writes: ViewWrites) -> None:
        with self.datastore.transaction(commit=True) as curs:
            if self._lz4 is None:
                curs.execute(
                    "SELECT 'lz4' = ANY(enumvals) AS lz4 FROM pg_settings "
                    "WHERE name = 'default_toast_compression'"
                )
                found = curs.fetchone()
                self._lz4 = bool(found and found["lz4"])
            self._in_schema(
                curs,
                self._lock_views(),
                # Views are derived data: a crash may lose the last view commits (never
                # half of one), which are applied again from the tracked positions.
                "SET LOCAL synchronous_commit = off",
                # Documents (kilobytes each) compress several times quicker.
                *(["SET LOCAL default_toast_compression = 'lz4'"] if self._lz4 else []),
            )
            self.write_batch(curs, writes)

    def insert_rows(
        self, c: Any, table: str, columns: Columns, rows: list[tuple[Any, ...]]
    ) -> None:
        names = ", ".join(name for name, _ in columns)
        with c.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
            write = copy.write_row
            for row in rows:
                write(row)

    def upsert_rows(
        self, c: Any, table: str, columns: Columns, rows: list[tuple[Any, ...]]
    ) -> None:
        if table == "view_case_docs" or len(rows) < 500:
            # Documents (kilobytes each) are quickest as a pipelined executemany; so
            # are a few rows, where a staging table would not pay its way.
            super().upsert_rows(c, table, columns, rows)
            return
        # Many small rows: COPY into a session's staging table (emptied at commit),
        # then one INSERT ... SELECT ... ON CONFLICT.
        staging = f"staging_{table}"
        c.execute(f"CREATE TEMP TABLE IF NOT EXISTS {staging} (LIKE {table}) ON COMMIT DELETE ROWS")
        names = ", ".join(name for name, _ in columns)
        with c.copy(f"COPY {staging} ({names}) FROM STDIN") as copy:
            write = copy.write_row
            for row in rows:
                write(row)
        c.execute(
            f"INSERT INTO {table} ({names}) SELECT {names} FROM {staging} {_on_conflict(table)}"
        )

    def delete_cases(self, c: Any, table: str, case_ids: list[str]) -> None:
        c.execute(f"DELETE FROM {table} WHERE case_id = ANY(%s::text[])", (case_ids,))

    def delete_caseload_rows(self, c: Any, keys: list[tuple[str, str]]) -> None:
        agencies, cases = (list(values) for values in zip(*keys, strict=True))
        c.execute(
            "DELETE FROM view_caseload WHERE (agency, case_id) IN "
            "(SELECT * FROM unnest(%s::text[], %s::text[]))",
            (agencies, cases),
        )

    def reset(self, groups: tuple[str, ...], *, drop_indexes: bool = False) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._in_schema(curs, self._lock_views())
            for group in groups:
                for statement, params in self.reset_statements(group):
                    curs.execute(statement, params)
                for statement in self.drop_index_statements(group) if drop_indexes else ():
                    curs.execute(statement)

    def create_indexes(self, groups: tuple[str, ...]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._in_schema(curs)
            for group in groups:
                for statement in self.create_index_statements(group):
                    curs.execute(statement)
                # Fresh statistics for the planner after a bulk load (autovacuum may take
                # its time): e.g. an agency's caseload page walks the primary key
                # rather than sorting all of the agency's rows.
                curs.execute(f"ANALYZE {', '.join(self.GROUP_TABLES[group])}")

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            self._in_schema(curs)
            curs.execute(statement, params)
            return curs.fetchall()  # dict rows already, a new dict each
