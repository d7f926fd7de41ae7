"""SQLite recorder with the hub's side tables, in the same file as the events."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InternalError,
    NotSupportedError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.sqlite import SQLiteAggregateRecorder, SQLiteApplicationRecorder, SQLiteCursor

from services.store import (
    ADDED_TOKEN_COLUMNS,
    RECEIPT_COLUMNS,
    TOKEN_COLUMNS,
    TOKEN_DECIDING_COLUMNS,
    NotificationRow,
    PositionedEvent,
    Receipt,
    TokenRecord,
    agency_of_state,
    token_record,
)
from services.store.group_commit import GroupCommitting, Write
from services.store.webhooks import WebhookTables, webhook_tables

# Keyed by (agency, message_id), by the unique index that ``_migrate_receipts``
# creates. agency is NULL only in receipts migrated from before it, whose agency was
# not found (see Receipt). The first table (message_id TEXT PRIMARY KEY, no agency,
# no body_hash) is rebuilt into this one at start.
RECEIPTS_TABLE = (
    "CREATE TABLE IF NOT EXISTS {name} ("
    "message_id TEXT NOT NULL, case_id TEXT NOT NULL, message_type TEXT NOT NULL, "
    "handover_id TEXT, case_version INTEGER NOT NULL, agency TEXT, body_hash TEXT)"
)
# The first schema's columns, then those added for per-user, expiring, revocable
# tokens (``_migrate_tokens`` adds them to a table of the first schema).
TOKENS_TABLE = (
    "CREATE TABLE IF NOT EXISTS hub_tokens ("
    "token_hash TEXT PRIMARY KEY, role TEXT NOT NULL, subject TEXT NOT NULL, "
    "name TEXT NOT NULL, created_at TEXT DEFAULT CURRENT_TIMESTAMP, token_id TEXT, "
    "user_id TEXT, expires_at TEXT, last_used_at TEXT, revoked_at TEXT)"
)
_BUMP = "BEGIN UPDATE hub_token_state SET version = version + 1 WHERE id = 1; END"
TOKEN_TRIGGERS = (
    f"CREATE TRIGGER IF NOT EXISTS hub_tokens_deleted AFTER DELETE ON hub_tokens {_BUMP}",
    "CREATE TRIGGER IF NOT EXISTS hub_tokens_changed AFTER UPDATE OF "
    f"{TOKEN_DECIDING_COLUMNS} ON hub_tokens {_BUMP}",
)


def _text(moment: datetime) -> str:
    """Fixed-width UTC text, so stored moments compare as strings."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    parsed = datetime.fromisoformat(text)  # also the first schema's "YYYY-MM-DD HH:MM:SS"
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


class HubSQLiteRecorder(GroupCommitting, WebhookTables, SQLiteApplicationRecorder):
    legacy_receipts = False
    _wh_endpoints, _wh_deliveries, _wh_placeholder = "hub_webhooks", "hub_webhook_deliveries", "?"

    def create_table(self) -> None:
        super().create_table()
        self._migrate_receipts()
        self._migrate_tokens()

    def _migrate_tokens(self) -> None:
        """Add the per-user token columns to a table of the first schema, name its
        tokens (old tokens keep working, with no user), and install the triggers that
        bump the version row; idempotent."""
        with self.datastore.transaction(commit=True) as c:
            # A write first: it takes the write lock (another process starting at
            # the same time waits), then the schema is read.
            c.execute("INSERT OR IGNORE INTO hub_token_state (id, version) VALUES (1, 0)")
            c.execute("PRAGMA table_info(hub_tokens)")
            present = {row["name"] for row in c.fetchall()}
            for column in ADDED_TOKEN_COLUMNS:
                if column not in present:
                    c.execute(f"ALTER TABLE hub_tokens ADD COLUMN {column} TEXT")
            c.execute(
                "UPDATE hub_tokens SET token_id = 'tok_' || lower(hex(randomblob(6))) "
                "WHERE token_id IS NULL"
            )
            c.execute("CREATE UNIQUE INDEX IF NOT EXISTS hub_tokens_id ON hub_tokens (token_id)")
            for trigger in TOKEN_TRIGGERS:
                c.execute(trigger)

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
            TOKENS_TABLE,
            "CREATE TABLE IF NOT EXISTS hub_token_state (id INTEGER PRIMARY KEY "
            "CHECK (id = 1), version INTEGER NOT NULL)",
            # Participant keys, wrapped by the master key; NULL once destroyed.
            "CREATE TABLE IF NOT EXISTS hub_keys (key_id TEXT PRIMARY KEY, wrapped BLOB, "
            "created_at TEXT DEFAULT CURRENT_TIMESTAMP, destroyed_at TEXT)",
            "CREATE TABLE IF NOT EXISTS hub_key_check (id INTEGER PRIMARY KEY CHECK (id = 1), "
            "value BLOB NOT NULL)",
            *webhook_tables("hub_webhooks", "hub_webhook_deliveries"),
        ]

    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        group = self._group
        if group is None or not stored_events:
            return super().insert_events(stored_events, **kwargs)
        return group.submit((stored_events, kwargs))

    def _commit_group(self, writes: Sequence[Write]) -> list[Sequence[int] | Exception | None]:
        """The writes in one transaction, each inside a savepoint: one refused (a
        repeated receipt, a concurrent version) is rolled back to it and answered
        with its own error, the others commit together. A failure of the transaction
        itself ("database is locked", the commit) raises: every write's."""
        if len(writes) == 1:
            events, kwargs = writes[0]
            try:
                return [super().insert_events(events, **kwargs)]
            except Exception as error:
                return [error]
        outcomes: list[Sequence[int] | Exception | None] = []
        with self.datastore.transaction(commit=True) as c:
            for i, (events, kwargs) in enumerate(writes):
                c.execute(f"SAVEPOINT w{i}")
                try:
                    outcomes.append(self._insert_events(c, events, **kwargs))
                except (sqlite3.OperationalError, sqlite3.InterfaceError):
                    raise  # the transaction's, not the write's
                except sqlite3.DatabaseError as error:
                    c.execute(f"ROLLBACK TO w{i}")
                    outcomes.append(_translated(error))
                c.execute(f"RELEASE w{i}")
        return outcomes

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

    def insert_token(self, record: TokenRecord) -> None:
        created = record.created_at or datetime.now(UTC)
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"INSERT INTO hub_tokens ({TOKEN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,NULL,NULL)",
                (
                    record.token_id,
                    record.role,
                    record.subject,
                    record.name,
                    record.token_hash,
                    record.user,
                    _text(created),
                    None if record.expires_at is None else _text(record.expires_at),
                ),
            )

    def _tokens(self, where: str = "", *args: str) -> list[TokenRecord]:
        with self.datastore.transaction(commit=False) as c:
            c.execute(f"SELECT {TOKEN_COLUMNS} FROM hub_tokens {where}", args)
            return [token_record(row, _moment) for row in c.fetchall()]

    def find_token(self, token_hash: str) -> TokenRecord | None:
        found = self._tokens("WHERE token_hash=?", token_hash)
        return found[0] if found else None

    def find_token_by_id(self, token_id: str) -> TokenRecord | None:
        found = self._tokens("WHERE token_id=?", token_id)
        return found[0] if found else None

    def list_tokens(self) -> list[TokenRecord]:
        return self._tokens()

    def revoke_token(self, token_id: str, at: datetime) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "UPDATE hub_tokens SET revoked_at=? WHERE token_id=? AND revoked_at IS NULL",
                (_text(at), token_id),
            )

    def touch_token(self, token_id: str, at: datetime, unless_after: datetime) -> None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                "UPDATE hub_tokens SET last_used_at=? WHERE token_id=? "
                "AND (last_used_at IS NULL OR last_used_at <= ?)",
                (_text(at), token_id, _text(unless_after)),
            )

    def tokens_version(self) -> int:
        with self.datastore.transaction(commit=False) as c:
            c.execute("SELECT version FROM hub_token_state WHERE id = 1")
            row = c.fetchone()
        return 0 if row is None else int(row["version"])

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


_TRANSLATED: tuple[tuple[type[sqlite3.Error], type[PersistenceError]], ...] = (
    (sqlite3.IntegrityError, IntegrityError),
    (sqlite3.DataError, DataError),
    (sqlite3.InternalError, InternalError),
    (sqlite3.ProgrammingError, ProgrammingError),
    (sqlite3.NotSupportedError, NotSupportedError),
    (sqlite3.DatabaseError, DatabaseError),
)


def _translated(error: sqlite3.Error) -> PersistenceError:
    """The library's error for an sqlite3 one, as ``SQLiteTransaction`` translates it."""
    for raw, ours in _TRANSLATED:
        if isinstance(error, raw):
            translated = ours(str(error))
            translated.__cause__ = error
            return translated
    return PersistenceError(str(error))


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
