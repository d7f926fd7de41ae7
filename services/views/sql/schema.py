"""The view tables: their columns, how rows and documents are stored, and the DDL.

One class of statements for both databases; a dialect sets only the placeholder
and a few column types. Grouped by the tracked view group each table belongs to,
so a reset or a rebuild touches one group's tables and position together.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import orjson

# The tracked view groups, each one tracking row: the case documents with their
# inbox and caseload rows, the dashboard totals, the audit trail.
GROUPS = ("cases", "dashboard", "audit")


def tracking_name(group: str) -> str:
    return f"view:{group}"


def dump_json(doc: Any) -> str:
    """How every view document is stored: compact JSON (what the standard library
    writes with ``separators=(",", ":"), ensure_ascii=False``, several times quicker)."""
    return orjson.dumps(doc).decode()


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


def on_conflict(table: str) -> str:
    """The upsert clause of ``table``: every column but the key takes the new row's."""
    keys = _KEYS[table]
    updates = ", ".join(
        f"{name} = excluded.{name}" for name, _ in _UPSERTED[table] if name not in keys
    )
    return f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"


class ViewSchema:
    """DDL and resets in one dialect; ``P`` is the placeholder, ``REAL`` a float type."""

    P = "?"
    REAL = "REAL"
    TEXT_KEY = "TEXT"
    # SQLite: the audit position is the table's own rowid, with no separate index to
    # keep, and caseload rows live in their primary key's b-tree.
    POSITION_KEY = "INTEGER PRIMARY KEY"
    KEYED_TABLE = " WITHOUT ROWID"
    tracking_table = "tracking"

    GROUP_TABLES: ClassVar[dict[str, tuple[str, ...]]] = {
        "cases": ("view_case_docs", "view_inbox", "view_caseload"),
        "dashboard": ("view_dashboard",),
        "audit": ("view_audit", "view_audit_checkpoints"),
    }

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

    def reset_statements(self, group: str) -> list[tuple[str, tuple[Any, ...]]]:
        """Empty the group's tables and drop its position, so it applies from the start."""
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
