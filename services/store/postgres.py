"""PostgreSQL recorder with the hub's side tables, in the events' schema."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    DatabaseError,
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from eventsourcing.postgres import (
    PostgresAggregateRecorder,
    PostgresApplicationRecorder,
    PostgresDatastore,
)
from eventsourcing.utils import retry
from psycopg import Connection, Cursor, Pipeline
from psycopg.errors import PipelineAborted
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Identifier

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

TOKENS_TRIGGER = "hub_tokens_changed"


class HubPostgresRecorder(GroupCommitting, WebhookTables, PostgresApplicationRecorder):
    legacy_receipts = False

    def create_table(self) -> None:
        super().create_table()
        self._migrate_receipts()
        self._migrate_tokens()

    def _migrate_tokens(self) -> None:
        """Add the per-user token columns to a table of the first schema, install the
        trigger that bumps the version row, and name unnamed tokens (old tokens keep
        working, with no user); idempotent."""
        if not self._tokens_current():
            schema = Identifier(self.datastore.schema)
            bump = SQL("{}.hub_tokens_changed").format(schema)
            with self.datastore.transaction(commit=True) as curs:
                # Serialises processes starting together; the statements are idempotent.
                curs.execute(SQL("LOCK TABLE {} IN SHARE ROW EXCLUSIVE MODE").format(self._tokens))
                for column in ADDED_TOKEN_COLUMNS:
                    kind = "text" if column in ("token_id", "user_id") else "timestamptz"
                    curs.execute(
                        SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS {} " + kind).format(
                            self._tokens, Identifier(column)
                        )
                    )
                curs.execute(
                    SQL("INSERT INTO {} VALUES (1, 0) ON CONFLICT DO NOTHING").format(
                        self._token_state
                    )
                )
                curs.execute(
                    SQL(
                        "CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS "
                        "$$ BEGIN UPDATE {} SET version = version + 1 WHERE id = 1; "
                        "RETURN NULL; END $$"
                    ).format(bump, self._token_state)
                )
                curs.execute(
                    SQL("DROP TRIGGER IF EXISTS {} ON {}").format(
                        Identifier(TOKENS_TRIGGER), self._tokens
                    )
                )
                curs.execute(
                    SQL(
                        "CREATE TRIGGER {} AFTER UPDATE OF " + TOKEN_DECIDING_COLUMNS + " OR "
                        "DELETE OR TRUNCATE ON {} FOR EACH STATEMENT EXECUTE FUNCTION {}()"
                    ).format(Identifier(TOKENS_TRIGGER), self._tokens, bump)
                )
                curs.execute(
                    SQL("CREATE UNIQUE INDEX IF NOT EXISTS hub_tokens_id ON {} (token_id)").format(
                        self._tokens
                    )
                )
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "UPDATE {} SET token_id = 'tok_' || substr(md5(random()::text || "
                    "token_hash), 1, 12) WHERE token_id IS NULL"
                ).format(self._tokens)
            )

    def _tokens_current(self) -> bool:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                "SELECT (SELECT count(*) FROM information_schema.columns WHERE "
                "table_schema = %s AND table_name = 'hub_tokens' AND column_name = ANY(%s)) "
                "AS columns, (SELECT count(*) FROM pg_trigger t JOIN pg_class c "
                "ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relname = 'hub_tokens' AND t.tgname = %s) "
                "AS triggers",
                (
                    self.datastore.schema,
                    list(ADDED_TOKEN_COLUMNS),
                    self.datastore.schema,
                    TOKENS_TRIGGER,
                ),
            )
            row = curs.fetchone()
            if row is None or row["columns"] != len(ADDED_TOKEN_COLUMNS) or not row["triggers"]:
                return False
            curs.execute(SQL("SELECT count(*) AS n FROM {}").format(self._token_state))
            state = curs.fetchone()
            return state is not None and state["n"] == 1

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
        self._token_state = SQL("{}.hub_token_state").format(schema)
        quoted = '"' + self.datastore.schema.replace('"', '""') + '"'
        self._wh_endpoints = f"{quoted}.hub_webhooks"
        self._wh_deliveries = f"{quoted}.hub_webhook_deliveries"
        self._wh_placeholder = "%s"
        for statement in webhook_tables(self._wh_endpoints, self._wh_deliveries):
            self.sql_create_statements.append(SQL(statement))  # type: ignore[arg-type]
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
                # The first schema's columns, then those ``_migrate_tokens`` adds.
                "CREATE TABLE IF NOT EXISTS {} ("
                "token_hash text PRIMARY KEY, role text NOT NULL, subject text NOT NULL, "
                "name text NOT NULL, created_at timestamptz DEFAULT now(), token_id text, "
                "user_id text, expires_at timestamptz, last_used_at timestamptz, "
                "revoked_at timestamptz)"
            ).format(self._tokens)
        )
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {} (id int PRIMARY KEY CHECK (id = 1), "
                "version bigint NOT NULL)"
            ).format(self._token_state)
        )

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """One write, in a group when group commit is on (see ``_commit_group``), else
        in a transaction of its own (``_insert_alone``)."""
        if self.datastore.enable_db_functions:  # not used by the hub: no side tables there
            return super().insert_events(stored_events, **kwargs)
        group = self._group
        if group is None or not stored_events:
            return self._insert_alone(stored_events, **kwargs)
        return group.submit((stored_events, kwargs))

    def _commit_group(self, writes: Sequence[Write]) -> list[Sequence[int] | Exception | None]:
        """Commit the writes in one transaction: the table locked once, then each write
        after a savepoint of its own (its side statements, its events RETURNING their
        ids). A write refused by the database (a repeated receipt, a concurrent
        version: an ``IntegrityError``) is rolled back to its savepoint and answered
        with its own error; the others commit together, their ids in write order. A
        failure of the transaction itself (the lock, the connection, the commit)
        raises: it is every write's, nothing of theirs was written.

        Pipelined: the whole group is one round trip, then the commit; a refused
        write costs one more round trip for the writes after it (the server skips a
        pipeline's statements after a failed one). Nothing here is prepared: a
        statement skipped so would leave psycopg's cache of prepared statements out
        of step with the server (see ``_insert_alone``). One write alone takes
        ``_insert_alone``."""
        if len(writes) == 1:
            events, kwargs = writes[0]
            try:
                return [self._insert_alone(events, **kwargs)]
            except Exception as error:
                return [error]
        outcomes: list[Sequence[int] | Exception | None] = [None] * len(writes)
        refusals = 0
        with self.datastore.get_connection() as conn:
            try:
                with conn.pipeline() as pipeline, conn.transaction(), conn.cursor() as control:
                    for statement in self.lock_table_statements:
                        control.execute(statement, prepare=False)
                    notify = SQL("NOTIFY {}").format(Identifier(self.channel_name))
                    control.execute(notify, prepare=False)
                    start: int | None = 0
                    while start is not None:
                        start = self._group_pass(conn, pipeline, control, writes, start, outcomes)
                        refusals += start is not None
            except BaseException:
                conn.close()  # as below; and a failed pipeline's, as in ``_insert_alone``
                raise
            if refusals:
                # psycopg takes the "ROLLBACK" of ``ROLLBACK TO SAVEPOINT`` for a
                # rollback and forgets its prepared statements, sending DEALLOCATE ALL
                # later: on this connection's next use, statements it prepares in
                # between are gone ("prepared statement _pg3_… does not exist", the
                # soak's 500s again). The pool replaces a closed connection.
                conn.close()
        return outcomes

    def _group_pass(
        self,
        conn: Connection[DictRow],
        pipeline: Pipeline,
        control: Cursor[DictRow],
        writes: Sequence[Write],
        start: int,
        outcomes: list[Sequence[int] | Exception | None],
    ) -> int | None:
        """Send the writes from ``start`` on, each after its savepoint, and sync; set
        the outcomes of those the server took. None when it took them all, else the
        refused write is rolled back to its savepoint, given its error, and the
        index of the write after it is returned (the server skipped the rest)."""
        inserts: list[Cursor[DictRow]] = []
        refused: psycopg.DatabaseError | None = None
        try:
            for i in range(start, len(writes)):
                events, kwargs = writes[i]
                control.execute(SQL("SAVEPOINT {}").format(Identifier(f"w{i}")), prepare=False)
                self._side_statements(control, kwargs, prepare=False)
                insert = conn.cursor()
                inserts.append(insert)
                self._insert_rows(insert, events, prepare=False)
            pipeline.sync()
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise  # the transaction's, not a write's
        except psycopg.DatabaseError as error:
            # A write refused: raised by the sync, or by any statement after it once
            # its answer has arrived. The server skips the rest until a sync.
            refused = error
            with suppress(psycopg.errors.PipelineAborted):
                pipeline.sync()
        i = start
        for insert in inserts:
            if insert.statusmessage is None:  # the first write refused
                break
            outcomes[i] = self._fetch_ids_after_insert_events(insert, writes[i][0])
            i += 1
        for insert in inserts:
            insert.close()
        if refused is None:
            return None
        if i == len(writes):
            raise refused  # no write's (the lock, the notification): all fail
        outcomes[i] = _translated(refused)
        control.execute(SQL("ROLLBACK TO SAVEPOINT {}").format(Identifier(f"w{i}")), prepare=False)
        return i + 1

    def _insert_rows(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], *, prepare: bool
    ) -> None:
        """The library's insert of the events (``PostgresAggregateRecorder``), with
        ``prepare`` chosen."""
        rows = [
            self.construct_pg_stored_event(e.originator_id, e.originator_version, e.topic, e.state)
            for e in stored_events
        ]
        curs.execute(self.insert_events_statement, (rows,), prepare=prepare)

    def _insert_alone(
        self, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        """The library's pipelined insert (eventsourcing 9.5), keeping the first error.

        In a pipeline every statement after a failed one answers "pipeline aborted".
        The library keeps the failure it meets inside the block, but when the
        failed statement's answer has arrived early (as a repeated receipt's
        unique violation usually does), closing the
        transaction and pipeline raises ``PipelineAborted`` for the rest and hides
        it: an ``OperationalError`` the library retries, 0.2 s apart, and that the
        service could not tell from a store failure. Here the first error wins, so a
        repeated receipt or a concurrent write is an ``IntegrityError`` at once, as
        on SQLite.
        """
        first_error: Exception | None = None
        notification_ids: Sequence[int] | None = None
        with self.datastore.get_connection() as conn:
            try:
                with conn.pipeline() as pipeline, conn.transaction():
                    with conn.cursor() as curs:
                        self._insert_events(curs, stored_events, **kwargs)
                    if stored_events:
                        with conn.cursor() as curs:
                            try:
                                self._insert_stored_events(curs, stored_events, **kwargs)
                                pipeline.sync()
                                notification_ids = self._fetch_ids_after_insert_events(
                                    curs, stored_events, **kwargs
                                )
                            except Exception as error:  # raised once the pipeline is closed
                                first_error = error
            except PipelineAborted:
                if first_error is None:
                    conn.close()  # see below
                    raise
            if first_error is not None:
                # A statement refused inside a pipeline leaves psycopg's cache of
                # prepared statements out of step with the server ("prepared statement
                # _pg3_… does not exist" on this connection's next use, seen as 500s
                # under a soak with repeats): the pool replaces a closed connection.
                conn.close()
                raise first_error
        return notification_ids

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # Runs first in the same pipelined transaction as the events' insert; a
        # repeated message_id is an IntegrityError (see ``_insert_alone``). The table
        # lock comes before the side statements, as in a group (``_commit_group``):
        # every writer takes the lock first, so two writers of one receipt never wait
        # for each other's row while holding, or waiting for, the lock (a deadlock).
        super()._insert_events(curs, stored_events, **kwargs)
        if stored_events:
            self._lock_table(curs)
            self._notify_channel(curs)
        self._side_statements(curs, kwargs)

    def _insert_stored_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        # The events alone: the lock and notification came first (``_insert_events``,
        # ``_commit_group``).
        PostgresAggregateRecorder._insert_stored_events(self, curs, stored_events, **kwargs)

    def _side_statements(
        self, curs: Cursor[DictRow], kwargs: dict[str, Any], *, prepare: bool | None = None
    ) -> None:
        """The key destroyed and the receipt, in the events' transaction."""
        destroy: str | None = kwargs.get("destroy_key")
        if destroy is not None:
            self._destroy_key(curs, destroy, prepare=prepare)
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
                prepare=prepare,
            )

    # ---- participant keys (services.crypto.KeyTable) ----------------------------

    def _destroy_key(
        self, curs: Cursor[DictRow], key_id: str, *, prepare: bool | None = None
    ) -> None:
        curs.execute(
            SQL(
                "INSERT INTO {} (key_id, wrapped, destroyed_at) VALUES (%s, NULL, now()) "
                "ON CONFLICT (key_id) DO UPDATE SET wrapped = NULL, destroyed_at = now()"
            ).format(self._keys),
            (key_id,),
            prepare=prepare,
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

    def insert_token(self, record: TokenRecord) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "INSERT INTO {} (" + TOKEN_COLUMNS + ") "
                    "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,NULL,NULL)"
                ).format(self._tokens),
                (
                    record.token_id,
                    record.role,
                    record.subject,
                    record.name,
                    record.token_hash,
                    record.user,
                    record.created_at or datetime.now(UTC),
                    record.expires_at,
                ),
            )

    def _select_tokens(self, where: str = "", *args: str) -> list[TokenRecord]:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(
                SQL("SELECT " + TOKEN_COLUMNS + " FROM {} " + where).format(self._tokens), args
            )
            return [token_record(row, _utc) for row in curs.fetchall()]

    def find_token(self, token_hash: str) -> TokenRecord | None:
        found = self._select_tokens("WHERE token_hash=%s", token_hash)
        return found[0] if found else None

    def find_token_by_id(self, token_id: str) -> TokenRecord | None:
        found = self._select_tokens("WHERE token_id=%s", token_id)
        return found[0] if found else None

    def list_tokens(self) -> list[TokenRecord]:
        return self._select_tokens()

    def revoke_token(self, token_id: str, at: datetime) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL("UPDATE {} SET revoked_at=%s WHERE token_id=%s AND revoked_at IS NULL").format(
                    self._tokens
                ),
                (at, token_id),
            )

    def touch_token(self, token_id: str, at: datetime, unless_after: datetime) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(
                SQL(
                    "UPDATE {} SET last_used_at=%s WHERE token_id=%s "
                    "AND (last_used_at IS NULL OR last_used_at <= %s)"
                ).format(self._tokens),
                (at, token_id, unless_after),
            )

    def tokens_version(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(SQL("SELECT version FROM {} WHERE id = 1").format(self._token_state))
            row = curs.fetchone()
        return 0 if row is None else int(row["version"])

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


_TRANSLATED: tuple[tuple[type[psycopg.Error], type[PersistenceError]], ...] = (
    (psycopg.IntegrityError, IntegrityError),
    (psycopg.DataError, DataError),
    (psycopg.InternalError, InternalError),
    (psycopg.ProgrammingError, ProgrammingError),
    (psycopg.NotSupportedError, NotSupportedError),
    (psycopg.DatabaseError, DatabaseError),
)


def _translated(error: psycopg.Error) -> PersistenceError:
    """The library's error for a psycopg one, as ``PostgresDatastore.get_connection``
    translates it."""
    for raw, ours in _TRANSLATED:
        if isinstance(error, raw):
            translated = ours(str(error))
            translated.__cause__ = error
            return translated
    return PersistenceError(str(error))


def _utc(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.astimezone(UTC)


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
