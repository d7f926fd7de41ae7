"""The view tables: their columns, how rows and documents are stored, and the DDL.

One class of statements for both databases; a dialect sets only the placeholder
and a few column types. Grouped by the tracked view group each table belongs to,
so a reset or a rebuild touches one group's tables and position together.
"""

from __future__ import annotations

from dataclasses import dataclass
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
# A rebuild fills shadow tables (each view table's name with ``SHADOW`` appended,
# and tracked positions likewise) beside the live ones, which keep serving; the swap
# renames the live tables to ``RETIRED`` names and the shadow ones to the live names
# in one transaction, then drops the retired ones.
SHADOW = "__next"
RETIRED = "__old"
# Secondary indexes keep their names through a rename, so a shadow table's index
# takes whichever of two names its live table's does not hold.
INDEX_ALT = "__b"


@dataclass(frozen=True)
class Tables:
    """The names one set of view tables goes by: the live ones, or a rebuild's shadow."""

    suffix: str = ""

    def __getitem__(self, table: str) -> str:
        return table + self.suffix

    def tracking(self, group: str) -> str:
        return tracking_name(group) + self.suffix


LIVE = Tables()
SHADOWS = Tables(SHADOW)


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
    # Every secondary index, by its first name: (table, columns, bulk). A rebuild
    # creates the bulk ones only after its rows are written: one sort then is far
    # cheaper than a million inserts at random places in the index. The runner never
    # reads through them (the queries do).
    INDEXES: ClassVar[dict[str, tuple[str, str, bool]]] = {
        "view_inbox_agency": ("view_inbox", "agency, offered_ts", False),
        "view_inbox_case": ("view_inbox", "case_id", False),
        # The dashboard's overdue offers (due_ts < now), counted per agency from the
        # index alone.
        "view_inbox_due": ("view_inbox", "due_ts, agency", True),
        "view_caseload_case": ("view_caseload", "case_id", True),
        "view_audit_case": ("view_audit", "case_id, position", True),
    }

    def table_statements(self, tables: Tables = LIVE) -> dict[str, str]:
        """Each view table's CREATE TABLE under ``tables``' names, by its live name."""
        t, r = self.TEXT_KEY, self.REAL
        create = "CREATE TABLE IF NOT EXISTS"
        return {
            "view_case_docs": f"{create} {tables['view_case_docs']} (case_id {t} PRIMARY KEY, "
            "doc TEXT NOT NULL)",
            "view_inbox": f"{create} {tables['view_inbox']} (handover_id {t} PRIMARY KEY, "
            f"agency {t} NOT NULL, case_id TEXT NOT NULL, programme TEXT, site TEXT, "
            f"kind TEXT NOT NULL, from_agency TEXT NOT NULL, offered_at TEXT NOT NULL, "
            f"offered_ts {r} NOT NULL, due_at TEXT NOT NULL, due_ts {r} NOT NULL)",
            "view_caseload": f"{create} {tables['view_caseload']} (agency {t} NOT NULL, "
            f"case_id {t} NOT NULL, programme TEXT, site TEXT, stage TEXT NOT NULL, "
            "lead_agency TEXT, coach TEXT, next_due_at TEXT, last_activity_at TEXT, "
            f"PRIMARY KEY (agency, case_id)){self.KEYED_TABLE}",
            "view_audit": f"{create} {tables['view_audit']} (position {self.POSITION_KEY}, "
            "case_id TEXT, type TEXT NOT NULL, agency TEXT, actor TEXT, occurred_at TEXT, "
            "recorded_at TEXT, legal_basis TEXT NOT NULL, hash TEXT NOT NULL)",
            "view_audit_checkpoints": f"{create} {tables['view_audit_checkpoints']} "
            "(position BIGINT PRIMARY KEY, head_hash TEXT NOT NULL, created_at TEXT NOT NULL)",
            "view_dashboard": f"{create} {tables['view_dashboard']} (name {t} PRIMARY KEY, "
            "doc TEXT NOT NULL)",
        }

    def view_create_statements(self) -> list[str]:
        """The live tables and the generation (indexes: ``index_statements``)."""
        return [
            *self.table_statements().values(),
            # Bumped by every swap: a runner that sees it change drops its caches, and
            # a page computed before it is refused.
            f"CREATE TABLE IF NOT EXISTS view_generation (name {self.TEXT_KEY} PRIMARY KEY, "
            "generation BIGINT NOT NULL)",
        ]

    def group_of(self, table: str) -> str:
        return next(g for g, names in self.GROUP_TABLES.items() if table in names)

    def index_statements(
        self,
        existing: dict[str, str],
        groups: tuple[str, ...] = GROUPS,
        tables: Tables = LIVE,
        *,
        bulk: bool | None = None,
    ) -> list[str]:
        """CREATE INDEX for each secondary index ``groups``' tables (under ``tables``'
        names) lack; ``existing``: index name -> its table, as the database has them.
        ``bulk``: only those (True) or only the others (False); None: all."""
        statements = []
        existing = dict(existing)
        for base, (table, columns, is_bulk) in self.INDEXES.items():
            if self.group_of(table) not in groups or bulk not in (None, is_bulk):
                continue
            actual = tables[table]
            names = (base, base + INDEX_ALT)
            if any(existing.get(name) == actual for name in names):
                continue
            free = [name for name in names if name not in existing]
            if not free:  # only stale shadow or retired tables could hold both
                raise RuntimeError(f"index names {names} are both taken; run a rebuild")
            existing[free[0]] = actual
            statements.append(f"CREATE INDEX IF NOT EXISTS {free[0]} ON {actual} ({columns})")
        return statements

    def drop_statements(self, suffix: str) -> list[str]:
        """Drop every view table named with ``suffix`` (stale shadow or retired ones)."""
        return [
            f"DROP TABLE IF EXISTS {table}{suffix}"
            for names in self.GROUP_TABLES.values()
            for table in names
        ]

    def shadow_tracking_names(self) -> tuple[str, ...]:
        return tuple(SHADOWS.tracking(group) for group in GROUPS)

    def bump_generation_statement(self) -> str:
        return (
            "INSERT INTO view_generation VALUES ('views', 1) ON CONFLICT (name) "
            "DO UPDATE SET generation = view_generation.generation + 1"
        )

    def generation_statement(self) -> str:
        return "SELECT generation FROM view_generation WHERE name = 'views'"

    def swap_statements(self, groups: tuple[str, ...]) -> list[tuple[str, tuple[Any, ...]]]:
        """The shadow tables of ``groups`` become the live ones, with their positions;
        the live ones are renamed to retired names (dropped after the commit)."""
        t, p = self.tracking_table, self.P
        statements: list[tuple[str, tuple[Any, ...]]] = []
        for group in groups:
            for table in self.GROUP_TABLES[group]:
                statements += [
                    (f"DROP TABLE IF EXISTS {table}{RETIRED}", ()),
                    (f"ALTER TABLE {table} RENAME TO {table}{RETIRED}", ()),
                    (f"ALTER TABLE {table}{SHADOW} RENAME TO {table}", ()),
                ]
            statements += [
                (f"DELETE FROM {t} WHERE application_name = {p}", (tracking_name(group),)),
                (
                    f"UPDATE {t} SET application_name = {p} WHERE application_name = {p}",
                    (tracking_name(group), SHADOWS.tracking(group)),
                ),
            ]
        return statements

    def reset_statements(self, group: str) -> list[tuple[str, tuple[Any, ...]]]:
        """Empty the group's live tables and drop its position, so it applies from the
        start (only what an interrupted older release left behind needs this)."""
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
