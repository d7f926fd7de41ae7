"""PostgreSQL recorder with the hub's side tables, in the events' schema."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

from services.store import NotificationRow, PositionedEvent, Receipt, TokenRecord


class HubPostgresRecorder(PostgresApplicationRecorder):
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
                "CREATE TABLE IF NOT EXISTS {} ("
                "message_id uuid PRIMARY KEY, case_id uuid NOT NULL, "
                "message_type text NOT NULL, handover_id uuid, case_version bigint NOT NULL)"
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
                SQL("INSERT INTO {} VALUES (%s,%s,%s,%s,%s)").format(self._receipts),
                (
                    receipt.message_id,
                    receipt.case_id,
                    receipt.message_type,
                    receipt.handover_id,
                    receipt.case_version,
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

    def find_receipt(self, message_id: UUID) -> Receipt | None:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL(
                    "SELECT r.*, e.notification_id AS position FROM {} r LEFT JOIN {} e "
                    "ON e.originator_id = r.case_id AND e.originator_version = r.case_version "
                    "WHERE r.message_id=%s"
                ).format(self._receipts, self._events),
                (message_id,),
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
