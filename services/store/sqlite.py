"""SQLite recorder with the hub's side tables, in the same file as the events."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteApplicationRecorder, SQLiteCursor

from services.store import (
    RECEIPT_COLUMNS,
    NotificationRow,
    PositionedEvent,
    Receipt,
    TokenRecord,
    agency_of_state,
)

# Keyed by (agency, message_id), by the unique index that ``_migrate_receipts``
# creates. agency is NULL only in receipts migrated from before it, whose agency was
# not found (see Receipt). The first table (message_id TEXT PRIMARY KEY, no agency,
# no body_hash) is rebuilt into this one at start.
RECEIPTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS {name} ("
    "message_id TEXT NOT NULL, case_id TEXT NOT NULL, message_type TEXT NOT NULL, "
    "handover_id TEXT, case_version INTEGER NOT NULL, agency TEXT, body_hash TEXT)"
)


class HubSQLiteRecorder(SQLiteApplicationRecorder):
    legacy_receipts = False

    def create_table(self) -> None:
        super().create_table()
        self._migrate_receipts()

    def _migrate_receipts(self) -> None:
        """Bring a receipts table of the first schema to the current one, in place and
        idempotently; resolve legacy receipts' agency from their case's event."""
        if self._has_nulls():  # the first schema, or receipts still without agency
            with self.datastore.transaction(commit=True) as c:
                # A write first: it takes the write lock (waiting for another process
                # migrating at the same time), then the schema is read again.
                c.execute(RECEIPTS_TABLE.format(name="hub_receipts_next"))
                c.execute("PRAGMA table_info(hub_receipts)")
                if "agency" in {row["name"] for row in c.fetchall()}:
                    c.execute("DROP TABLE hub_receipts_next")
                else:
                    c.execute(
                        f"INSERT INTO hub_receipts_next ({RECEIPT_COLUMNS}) SELECT message_id, "
                        "case_id, message_type, handover_id, case_version, NULL, NULL "
                        "FROM hub_receipts"
                    )
                    c.execute("DROP TABLE hub_receipts")
                    c.execute("ALTER TABLE hub_receipts_next RENAME TO hub_receipts")
                self._resolve_agencies(c)
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "CREATE UNIQUE INDEX IF NOT EXISTS hub_receipts_key "
                "ON hub_receipts (agency, message_id)"
            )
        self.legacy_receipts = self._has_nulls()

    def _has_nulls(self) -> bool:
        with self.datastore.transaction(commit=False) as c:
            c.execute("PRAGMA table_info(hub_receipts)")
            if "agency" not in {row["name"] for row in c.fetchall()}:
                return True
            c.execute("SELECT 1 FROM hub_receipts WHERE agency IS NULL LIMIT 1")
            return c.fetchone() is not None

    def _resolve_agencies(self, c: SQLiteCursor) -> None:
        c.execute(
            "SELECT r.rowid AS id, e.state FROM hub_receipts r "
            f"JOIN {self.events_table_name} e ON e.originator_id = r.case_id "
            "AND e.originator_version = r.case_version WHERE r.agency IS NULL"
        )
        found = [(agency_of_state(bytes(row["state"])), row["id"]) for row in c.fetchall()]
        resolved = [(agency, rowid) for agency, rowid in found if agency is not None]
        if resolved:
            c.sqlite_cursor.executemany(
                "UPDATE hub_receipts SET agency = ? WHERE rowid = ?", resolved
            )

    def construct_create_table_statements(self) -> list[str]:
        return [
            *super().construct_create_table_statements(),
            RECEIPTS_TABLE.format(name="hub_receipts"),
            "CREATE TABLE IF NOT EXISTS hub_tokens ("
            "token_hash TEXT PRIMARY KEY, role TEXT NOT NULL, subject TEXT NOT NULL, "
            "name TEXT NOT NULL, created_at TEXT DEFAULT CURRENT_TIMESTAMP)",
            # Participant keys, wrapped by the master key; NULL once destroyed.
            "CREATE TABLE IF NOT EXISTS hub_keys (key_id TEXT PRIMARY KEY, wrapped BLOB, "
            "created_at TEXT DEFAULT CURRENT_TIMESTAMP, destroyed_at TEXT)",
            "CREATE TABLE IF NOT EXISTS hub_key_check (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "value BLOB NOT NULL)",
        ]

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        positions = super()._insert_events(c, stored_events, **kwargs)
        destroy: str | None = kwargs.get("destroy_key")
        if destroy is not None:
            self._destroy_key(c, destroy)
        receipt: Receipt | None = kwargs.get("receipt")
        if receipt is not None:
            c.execute(
                f"INSERT INTO hub_receipts ({RECEIPT_COLUMNS}) VALUES (?,?,?,?,?,?,?)",
                (
                    receipt.message_id.hex,
                    receipt.case_id.hex,
                    receipt.message_type,
                    str(receipt.handover_id) if receipt.handover_id else None,
                    receipt.case_version,
                    receipt.agency,
                    receipt.body_hash,
                ),
            )
        return positions

    # ---- participant keys (services.crypto.KeyTable) ----------------------------

    @staticmethod
    def _destroy_key(c: SQLiteCursor, key_id: str) -> None:
        c.execute(
            "INSERT INTO hub_keys (key_id, wrapped, destroyed_at) VALUES (?, NULL, "
            "CURRENT_TIMESTAMP) ON CONFLICT (key_id) DO UPDATE SET wrapped = NULL, "
            "destroyed_at = CURRENT_TIMESTAMP",
            (key_id,),
        )

    def destroy_key(self, key_id: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            self._destroy_key(c, key_id)

    def load_key(self, key_id: str) -> tuple[bytes | None, bool] | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT wrapped, destroyed_at FROM hub_keys WHERE key_id=?", (key_id,))
            row = c.fetchone()
        if row is None:
            return None
        return (
            None if row["wrapped"] is None else bytes(row["wrapped"]),
            row["destroyed_at"] is not None,
        )

    def insert_key(self, key_id: str, wrapped: bytes) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "INSERT INTO hub_keys (key_id, wrapped) VALUES (?, ?) ON CONFLICT DO NOTHING",
                (key_id, wrapped),
            )

    def load_check(self) -> bytes | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT value FROM hub_key_check WHERE id = 1")
            row = c.fetchone()
        return None if row is None else bytes(row["value"])

    def insert_check(self, value: bytes) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute("INSERT INTO hub_key_check VALUES (1, ?) ON CONFLICT DO NOTHING", (value,))

    def find_receipt(self, message_id: UUID, agency: str | None = None) -> Receipt | None:
        # An agency's own receipt first, else a legacy one without agency.
        of_agency = "" if agency is None else "AND (r.agency = ? OR r.agency IS NULL) "
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT r.*, e.rowid AS position FROM hub_receipts r "
                f"LEFT JOIN {self.events_table_name} e ON e.originator_id = r.case_id "
                f"AND e.originator_version = r.case_version WHERE r.message_id=? {of_agency}"
                "ORDER BY r.agency IS NULL LIMIT 1",
                (message_id.hex,) if agency is None else (message_id.hex, agency),
            )
            row = c.fetchone()
        if row is None:
            return None
        return Receipt(
            message_id=UUID(row["message_id"]),
            case_id=UUID(row["case_id"]),
            message_type=row["message_type"],
            handover_id=UUID(row["handover_id"]) if row["handover_id"] else None,
            case_version=row["case_version"],
            position=row["position"],
            agency=row["agency"],
            body_hash=row["body_hash"],
        )

    def insert_token(self, token_hash: str, role: str, subject: str, name: str) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "INSERT INTO hub_tokens (token_hash, role, subject, name) VALUES (?,?,?,?)",
                (token_hash, role, subject, name),
            )

    def find_token(self, token_hash: str) -> TokenRecord | None:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                "SELECT role, subject, name, token_hash FROM hub_tokens WHERE token_hash=?",
                (token_hash,),
            )
            row = c.fetchone()
        return (
            None
            if row is None
            else TokenRecord(row["role"], row["subject"], row["name"], row["token_hash"])
        )

    def select_notification_rows(self, start: int, limit: int) -> list[NotificationRow]:
        """``select_notifications(start, limit)`` as ``NotificationRow`` tuples."""
        # Ids are stored as 32 hex digits (UUID.hex); SQLite formats them canonically.
        o = "originator_id"
        canonical = (
            f"CASE WHEN length({o}) = 32 THEN substr({o},1,8)||'-'||substr({o},9,4)||'-'||"
            f"substr({o},13,4)||'-'||substr({o},17,4)||'-'||substr({o},21) ELSE {o} END"
        )
        with self.datastore.transaction(commit=False) as c:
            cursor = c.sqlite_cursor
            cursor.row_factory = None  # plain tuples
            cursor.execute(
                # The table name is the recorder's own setting, never input.
                f"SELECT rowid, {canonical}, originator_version, topic, state "
                f"FROM {self.events_table_name} WHERE rowid >= ? ORDER BY rowid LIMIT ?",
                (start, limit),
            )
            return cursor.fetchall()

    def select_case_events(self, originator_id: UUID) -> list[PositionedEvent]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                # The table name is the recorder's own setting, never input.
                f"SELECT rowid, originator_version, topic, state FROM {self.events_table_name} "
                "WHERE originator_id=? ORDER BY originator_version",
                (originator_id.hex,),
            )
            return [
                PositionedEvent(r["rowid"], r["originator_version"], r["topic"], r["state"])
                for r in c.fetchall()
            ]


def prune_snapshots(recorder: SQLiteAggregateRecorder, originator_id: UUID, version: int) -> None:
    """Delete the snapshots of ``originator_id`` older than ``version`` (the library's
    snapshot table, ``stored_snapshots``: apart from the events and their log)."""
    with recorder.datastore.transaction(commit=True) as c:
        c.execute(
            # The table name is the recorder's own setting, never input.
            f"DELETE FROM {recorder.events_table_name} "
            "WHERE originator_id = ? AND originator_version < ?",
            (originator_id.hex, version),
        )
