"""PostgreSQL recorder with the hub's side tables, in the events' schema."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from services.store import (
    RECEIPT_COLUMNS,
    NotificationRow,
    PositionedEvent,
    Receipt,
    TokenRecord,
    agency_of_state,
)


class HubPostgresRecorder(PostgresApplicationRecorder):
    legacy_receipts = False

    def create_table(self) -> None:
        super().create_table()
        self._migrate_receipts()

    def _migrate_receipts(self) -> None:
        """Bring a receipts table of the first schema (message_id uuid PRIMARY KEY, no
        agency, no body_hash) to the current one, in place and idempotently; resolve
        legacy receipts' agency from their case's event."""
        if self._receipts_current():
            self.legacy_receipts = False
            return
        with self.datastore.transaction(commit=True) as curs:
            # Serialises processes starting together; the statements are idempotent.
            curs.execute(SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self._receipts))
            curs.execute(
                SQL(
                    "ALTER TABLE {} ADD COLUMN IF NOT EXISTS agency text, "
                    "ADD COLUMN IF NOT EXISTS body_hash text"
                ).format(self._receipts)
            )
            curs.execute(
                SQL("ALTER TABLE {} DROP CONSTRAINT IF EXISTS hub_receipts_pkey").format(
                    self._receipts
                )
            )
            curs.execute(
                SQL(
                    "CREATE UNIQUE INDEX IF NOT EXISTS hub_receipts_key ON {} (agency, message_id)"
                ).format(self._receipts)
            )
            curs.execute(
                SQL(
                    "SELECT r.message_id, e.state FROM {} r JOIN {} e "
                    "ON e.originator_id = r.case_id AND e.originator_version = r.case_version "
                    "WHERE r.agency IS NULL"
                ).format(self._receipts, self._events)
            )
            found = [(agency_of_state(bytes(r["state"])), r["message_id"]) for r in curs.fetchall()]
            resolved = [(agency, message_id) for agency, message_id in found if agency]
            if resolved:
                curs.executemany(
                    SQL(
                        "UPDATE {} SET agency = %s WHERE message_id = %s AND agency IS NULL"
                    ).format(self._receipts),
                    resolved,
                )
        self.legacy_receipts = not self._receipts_current()

    def _receipts_current(self) -> bool:
        """The table has the key (agency, message_id) and every receipt an agency."""
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT count(*) AS n FROM pg_indexes WHERE schemaname = %s "
                "AND tablename = 'hub_receipts' AND indexname = 'hub_receipts_key'",
                (self.datastore.schema,),
            )
            row = curs.fetchone()
            if row is None or row["n"] == 0:
                return False
            curs.execute(
                SQL("SELECT EXISTS (SELECT 1 FROM {} WHERE agency IS NULL) AS legacy").format(
                    self._receipts
                )
            )
            row = curs.fetchone()
            return row is not None and not row["legacy"]

    def __init__(self, datastore: PostgresDatastore, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        schema = Identifier(self.datastore.schema)
        self._receipts = SQL("{}.hub_receipts").format(schema)
        self._tokens = SQL("{}.hub_tokens").format(schema)
        self._events = SQL("{}.{}").format(schema, Identifier(self.events_table_name))
        # Participant keys live in their own schema, apart from the events.
        keys_schema = (
            "hub_keys" if self.datastore.schema == "public" else f"{self.datastore.schema}_keys"
        )
        self.keys_schema = keys_schema
        self._keys = SQL("{}.hub_keys").format(Identifier(keys_schema))
        self._key_check = SQL("{}.hub_key_check").format(Identifier(keys_schema))
        self.sql_create_statements.append(
            SQL("CREATE SCHEMA IF NOT EXISTS {}").format(Identifier(keys_schema))
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (key_id text PRIMARY KEY, wrapped bytea, "
                "created_at timestamptz DEFAULT now(), destroyed_at timestamptz)"
            ).format(self._keys)
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY CHECK (id = 1), "
                "value bytea NOT NULL)"
            ).format(self._key_check)
        )
        self.sql_create_statements.append(
            SQL(
                # Keyed by (agency, message_id), by the unique index of
                # ``_migrate_receipts``; see HubSQLiteRecorder's RECEIPTS_TABLE.
                "CREATE TABLE IF NOT EXISTS {} ("
                "message_id uuid NOT NULL, case_id uuid NOT NULL, message_type text NOT NULL, "
                "handover_id uuid, case_version bigint NOT NULL, agency text, body_hash text)"
            ).format(self._receipts)
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} ("
                "token_hash text PRIMARY KEY, role text NOT NULL, subject text NOT NULL, "
                "name text NOT NULL, created_at timestamptz DEFAULT now())"
            ).format(self._tokens)
        )

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # Runs in the same pipelined transaction as the events' insert; a repeated
        # message_id surfaces as an IntegrityError at the library's sync.
        super()._insert_events(curs, stored_events, **kwargs)
        destroy: str | None = kwargs.get("destroy_key")
        if destroy is not None:
            self._destroy_key(curs, destroy)
        receipt: Receipt | None = kwargs.get("receipt")
        if receipt is not None:
            curs.execute(
                SQL(
                    "INSERT INTO {} (" + RECEIPT_COLUMNS + ") VALUES (%s,%s,%s,%s,%s,%s,%s)"
                ).format(self._receipts),
                (
                    receipt.message_id,
                    receipt.case_id,
                    receipt.message_type,
                    receipt.handover_id,
                    receipt.case_version,
                    receipt.agency,
                    receipt.body_hash,
                ),
            )

    # ---- participant keys (services.crypto.KeyTable) ----------------------------

    def _destroy_key(self, curs: Cursor[DictRow], key_id: str) -> None:
        curs.execute(
            SQL(
                "INSERT INTO {} (key_id, wrapped, destroyed_at) VALUES (%s, NULL, now()) "
                "ON CONFLICT (key_id) DO UPDATE SET wrapped = NULL, destroyed_at = now()"
            ).format(self._keys),
            (key_id,),
        )

    def destroy_key(self, key_id: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            self._destroy_key(curs, key_id)

    def load_key(self, key_id: str) -> tuple[bytes | None, bool] | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT wrapped, destroyed_at FROM {} WHERE key_id=%s").format(self._keys),
                (key_id,),
            )
            row = curs.fetchone()
        if row is None:
            return None
        wrapped = None if row["wrapped"] is None else bytes(row["wrapped"])
        return wrapped, row["destroyed_at"] is not None

    def insert_key(self, key_id: str, wrapped: bytes) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {} (key_id, wrapped) VALUES (%s, %s) ON CONFLICT DO NOTHING"
                ).format(self._keys),
                (key_id, wrapped),
            )

    def load_check(self) -> bytes | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT value FROM {} WHERE id = 1").format(self._key_check))
            row = curs.fetchone()
        return None if row is None else bytes(row["value"])

    def insert_check(self, value: bytes) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("INSERT INTO {} VALUES (1, %s) ON CONFLICT DO NOTHING").format(self._key_check),
                (value,),
            )

    def find_receipt(self, message_id: UUID, agency: str | None = None) -> Receipt | None:
        # An agency's own receipt first, else a legacy one without agency.
        of_agency = "" if agency is None else "AND (r.agency = %s OR r.agency IS NULL) "
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT r.*, e.notification_id AS position FROM {} r LEFT JOIN {} e "
                    "ON e.originator_id = r.case_id AND e.originator_version = r.case_version "
                    "WHERE r.message_id=%s " + of_agency + "ORDER BY r.agency IS NULL LIMIT 1"
                ).format(self._receipts, self._events),
                (message_id,) if agency is None else (message_id, agency),
            )
            row = curs.fetchone()
        if row is None:
            return None
        return Receipt(
            message_id=row["message_id"],
            case_id=row["case_id"],
            message_type=row["message_type"],
            handover_id=row["handover_id"],
            case_version=row["case_version"],
            position=row["position"],
            agency=row["agency"],
            body_hash=row["body_hash"],
        )

    def insert_token(self, token_hash: str, role: str, subject: str, name: str) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("INSERT INTO {} (token_hash, role, subject, name) VALUES (%s,%s,%s,%s)").format(
                    self._tokens
                ),
                (token_hash, role, subject, name),
            )

    def find_token(self, token_hash: str) -> TokenRecord | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT role, subject, name, token_hash FROM {} WHERE token_hash=%s").format(
                    self._tokens
                ),
                (token_hash,),
            )
            row = curs.fetchone()
        return (
            None
            if row is None
            else TokenRecord(row["role"], row["subject"], row["name"], row["token_hash"])
        )

    def select_notification_rows(self, start: int, limit: int) -> list[NotificationRow]:
        """``select_notifications(start, limit)`` as ``NotificationRow`` tuples."""
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(
                SQL(
                    "SELECT notification_id, originator_id::text, originator_version, topic, "
                    "state FROM {} WHERE notification_id >= %s ORDER BY notification_id LIMIT %s"
                ).format(self._events),
                (start, limit),
                binary=True,  # bytea as raw bytes, not hex text to decode
            )
            return curs.fetchall()

    def select_case_events(self, originator_id: UUID) -> list[PositionedEvent]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT notification_id, originator_version, topic, state FROM {} "
                    "WHERE originator_id=%s ORDER BY originator_version"
                ).format(self._events),
                (originator_id,),
            )
            return [
                PositionedEvent(
                    r["notification_id"], r["originator_version"], r["topic"], bytes(r["state"])
                )
                for r in curs.fetchall()
            ]


def prune_snapshots(recorder: PostgresAggregateRecorder, originator_id: UUID, version: int) -> None:
    """Delete the snapshots of ``originator_id`` older than ``version`` (the library's
    snapshot table, ``<name>_snapshots`` in the events' schema, apart from the events)."""
    table = SQL("{}.{}").format(
        Identifier(recorder.datastore.schema), Identifier(recorder.events_table_name)
    )
    with recorder.datastore.transaction(commit=True) as curs:
        curs.execute(
            SQL("DELETE FROM {} WHERE originator_id = %s AND originator_version < %s").format(
                table
            ),
            (originator_id, version),
        )
