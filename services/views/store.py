"""View tables for SQLite and PostgreSQL, as ``eventsourcing`` tracking recorders.

``ViewWrites`` collects one batch's row changes for every view group; ``commit``
writes them and each group's tracking position in one transaction, so a crash
never double-applies or skips an event. The SQL is shared; only placeholders
and column types differ.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresTrackingRecorder
from eventsourcing.sqlite import SQLiteTrackingRecorder

GROUPS = ("cases", "dashboard", "audit")
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def tracking_name(group: str) -> str:
    return f"view:{group}"


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


@dataclass
class ViewWrites:
    """Row changes of one batch. ``positions``: the group's last applied position."""

    positions: dict[str, int] = field(default_factory=dict)
    case_docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    inbox: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # case -> rows
    caseload: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # case -> rows
    audit: list[dict[str, Any]] = field(default_factory=list)
    checkpoints: list[tuple[int, str]] = field(default_factory=list)
    dashboard: dict[str, Any] | None = None


class _ViewSQL:
    """Statements in one dialect; ``P`` is the placeholder, ``REAL`` a float type."""

    P = "?"
    REAL = "REAL"
    TEXT_KEY = "TEXT"
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
            "next_due_at TEXT, last_activity_at TEXT, PRIMARY KEY (agency, case_id))",
            "CREATE INDEX IF NOT EXISTS view_caseload_case ON view_caseload (case_id)",
            "CREATE TABLE IF NOT EXISTS view_audit (position BIGINT PRIMARY KEY, case_id TEXT, "
            "type TEXT NOT NULL, agency TEXT, actor TEXT, occurred_at TEXT, recorded_at TEXT, "
            "legal_basis TEXT NOT NULL, hash TEXT NOT NULL)",
            "CREATE INDEX IF NOT EXISTS view_audit_case ON view_audit (case_id, position)",
            "CREATE TABLE IF NOT EXISTS view_audit_checkpoints (position BIGINT PRIMARY KEY, "
            "head_hash TEXT NOT NULL, created_at TEXT NOT NULL)",
            f"CREATE TABLE IF NOT EXISTS view_dashboard (name {t} PRIMARY KEY, doc TEXT NOT NULL)",
        ]

    # ---- writing -------------------------------------------------------------

    def write_batch(self, c: Any, writes: ViewWrites) -> None:
        p = self.P
        if writes.case_docs:
            c.executemany(
                f"INSERT INTO view_case_docs VALUES ({p},{p}) "
                "ON CONFLICT (case_id) DO UPDATE SET doc = excluded.doc",
                [(case_id, _dumps(doc)) for case_id, doc in writes.case_docs.items()],
            )
        for table, rows_by_case in (
            ("view_inbox", writes.inbox),
            ("view_caseload", writes.caseload),
        ):
            if not rows_by_case:
                continue
            c.executemany(f"DELETE FROM {table} WHERE case_id = {p}", [(k,) for k in rows_by_case])
            rows = [row for rows in rows_by_case.values() for row in rows]
            if not rows:
                continue
            if table == "view_inbox":
                c.executemany(
                    f"INSERT INTO view_inbox VALUES ({','.join([p] * 11)})",
                    [
                        (
                            r["handover_id"],
                            r["agency"],
                            r["case_id"],
                            r["programme"],
                            r["site"],
                            r["kind"],
                            r["from_agency"],
                            r["offered_at"],
                            epoch(r["offered_at"]),
                            r["due_at"],
                            epoch(r["due_at"]),
                        )
                        for r in rows
                    ],
                )
            else:
                c.executemany(
                    f"INSERT INTO view_caseload VALUES ({','.join([p] * 9)})",
                    [
                        (
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
                        for r in rows
                    ],
                )
        if writes.audit:
            c.executemany(
                f"INSERT INTO view_audit VALUES ({','.join([p] * 9)})",
                [
                    (
                        a["position"],
                        a["case_id"],
                        a["type"],
                        a["agency"],
                        a["actor"],
                        a["occurred_at"],
                        a["recorded_at"],
                        a["legal_basis"],
                        a["hash"],
                    )
                    for a in writes.audit
                ],
            )
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
                ("totals", _dumps(writes.dashboard)),
            )
        for group, position in writes.positions.items():
            self._insert_tracking(c, Tracking(tracking_name(group), position))

    # ---- resetting -----------------------------------------------------------

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


class SQLiteViewStore(_ViewSQL, SQLiteTrackingRecorder):
    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), *self.view_create_statements()]

    def commit(self, writes: ViewWrites) -> None:
        with self.datastore.transaction(commit=True) as c:
            self.write_batch(c, writes)

    def reset(self, groups: tuple[str, ...]) -> None:
        with self.datastore.transaction(commit=True) as c:
            for group in groups:
                for statement, params in self.reset_statements(group):
                    c.execute(statement, params)

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(statement, params)
            return [dict(row) for row in c.fetchall()]


class PostgresViewStore(_ViewSQL, PostgresTrackingRecorder):
    P = "%s"
    REAL = "DOUBLE PRECISION"
    TEXT_KEY = "TEXT"

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        from psycopg.sql import SQL

        self._schema = self.datastore.schema
        self.tracking_table = self.tracking_table_name
        self.sql_create_statements.extend(SQL(s) for s in self.view_create_statements())  # type: ignore[arg-type]

    def _create_table(self, curs: Any) -> None:
        self._in_schema(curs)
        super()._create_table(curs)

    def _in_schema(self, curs: Any) -> None:
        from psycopg.sql import SQL, Identifier

        curs.execute(SQL("SET LOCAL search_path TO {}").format(Identifier(self._schema)))

    def commit(self, writes: ViewWrites) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._in_schema(curs)
            self.write_batch(curs, writes)

    def reset(self, groups: tuple[str, ...]) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._in_schema(curs)
            for group in groups:
                for statement, params in self.reset_statements(group):
                    curs.execute(statement, params)

    def query(self, statement: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.datastore.transaction(commit=False) as curs:
            self._in_schema(curs)
            curs.execute(statement, params)
            return [dict(row) for row in curs.fetchall()]
