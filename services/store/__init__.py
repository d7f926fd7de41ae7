"""Persistence adapters: the ``eventsourcing`` recorders for SQLite and PostgreSQL,
extended with the hub's side tables (message receipts, tokens) that must commit in
the same transaction as the events or live beside them.

``HubStore`` is the small protocol both recorders offer to the services.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import parse_qs, unquote, urlparse
from uuid import UUID

SQLITE_RECORDER_TOPIC = "services.store.sqlite:HubSQLiteRecorder"
POSTGRES_RECORDER_TOPIC = "services.store.postgres:HubPostgresRecorder"


@dataclass(frozen=True)
class Receipt:
    """The first answer to a message, stored with its events (idempotency).

    The key is (``agency``, ``message_id``): message ids are the sender's, so another
    agency's message with the same id is another message. ``body_hash`` tells a true
    repeat from a reused id (see ``services.application.message_body_hash``). Receipts stored
    before the key had an agency are migrated; one whose agency could not be found
    keeps ``agency`` None and answers for every agency, as all receipts did then.
    """

    message_id: UUID
    case_id: UUID
    message_type: str
    handover_id: UUID | None
    # The case's version after the message; its event's position is looked up on
    # read, so writing the receipt needs no extra round trip after the insert.
    case_version: int
    position: int | None = None
    agency: str | None = None
    body_hash: str | None = None

    def to_result(self) -> dict[str, Any]:
        result: dict[str, Any] = {
            "message_id": str(self.message_id),
            "case_id": str(self.case_id),
            "type": self.message_type,
            "position": self.position,
        }
        if self.handover_id is not None:
            result["handover_id"] = str(self.handover_id)
        return result


@dataclass(frozen=True)
class PositionedEvent:
    position: int
    originator_version: int
    topic: str
    state: bytes


# A notification as the view runner reads it: (position, originator id as canonical
# UUID text, originator version, topic, stored state). Plain tuples, no UUID objects:
# a rebuild reads a million of them.
NotificationRow = tuple[int, str, int, str, bytes]

RECEIPT_COLUMNS = "message_id, case_id, message_type, handover_id, case_version, agency, body_hash"


def agency_of_state(state: bytes) -> str | None:
    """The acting agency of a stored case event (every case event records its act's
    ``agency``), or None when the state is not the JSON this hub writes."""
    try:
        decoded = json.loads(state)
    except (ValueError, UnicodeDecodeError):
        return None
    agency = decoded.get("agency") if isinstance(decoded, dict) else None
    return agency if isinstance(agency, str) and agency else None


@dataclass(frozen=True)
class TokenRecord:
    """A bearer token as stored: its SHA-256, never the token itself.

    ``user`` is the person inside the agency (or the auditor) the token was issued
    to; tokens issued before per-user tokens existed have none. Timestamps are UTC.
    """

    token_id: str
    role: str
    subject: str
    name: str
    token_hash: str
    user: str | None = None
    created_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None


# Columns of hub_tokens as ``token_record`` reads them (names, not secrets); the
# first schema had role, subject, name, token_hash and created_at.
TOKEN_COLUMNS = ", ".join(
    [
        *("token_id", "role", "subject", "name", "token_hash", "user_id", "created_at"),
        *("expires_at", "last_used_at", "revoked_at"),
    ]
)
ADDED_TOKEN_COLUMNS = ("token_id", "user_id", "expires_at", "last_used_at", "revoked_at")
# Changes that decide whether a token is valid: any of them bumps the version row
# (by a trigger, so an edit by hand counts too); a recorded use does not.
TOKEN_DECIDING_COLUMNS = ", ".join(
    ("token_hash", "role", "subject", "name", "user_id", "expires_at", "revoked_at")
)


def token_record(row: Any, moment: Any = lambda value: value) -> TokenRecord:
    """A ``TokenRecord`` from a row with ``TOKEN_COLUMNS``; ``moment`` turns a stored
    timestamp into an aware UTC datetime (SQLite keeps text)."""
    return TokenRecord(
        token_id=row["token_id"],
        role=row["role"],
        subject=row["subject"],
        name=row["name"],
        token_hash=row["token_hash"],
        user=row["user_id"],
        created_at=moment(row["created_at"]),
        expires_at=moment(row["expires_at"]),
        last_used_at=moment(row["last_used_at"]),
        revoked_at=moment(row["revoked_at"]),
    )


class HubStore(Protocol):
    # True while receipts without an agency (legacy, unresolved) exist; see Receipt.
    legacy_receipts: bool

    def find_receipt(self, message_id: UUID, agency: str | None = None) -> Receipt | None:
        """The receipt of ``agency``'s message ``message_id`` (None: any agency's)."""
        ...

    def insert_token(self, record: TokenRecord) -> None: ...

    def find_token(self, token_hash: str) -> TokenRecord | None: ...

    def find_token_by_id(self, token_id: str) -> TokenRecord | None: ...

    def list_tokens(self) -> list[TokenRecord]: ...

    def revoke_token(self, token_id: str, at: datetime) -> None:
        """Mark the token revoked at ``at`` (kept if it already was)."""
        ...

    def touch_token(self, token_id: str, at: datetime, unless_after: datetime) -> None:
        """Record a use at ``at``, unless one after ``unless_after`` is recorded."""
        ...

    def tokens_version(self) -> int:
        """A number that grows with every change to the tokens other than a use
        (triggers bump it, so a hand edit counts too)."""
        ...

    def select_case_events(self, originator_id: UUID) -> list[PositionedEvent]: ...

    def max_notification_id(self) -> int | None: ...


def prune_snapshots(recorder: Any, originator_id: UUID, version: int) -> None:
    """Keep only the latest snapshot of an aggregate: a load starts from the latest,
    and a case's state can be large, so older ones would only fill the table (and
    keep older copies of personal ciphertext)."""
    from eventsourcing.sqlite import SQLiteAggregateRecorder

    if isinstance(recorder, SQLiteAggregateRecorder):
        from services.store.sqlite import prune_snapshots as prune_sqlite

        prune_sqlite(recorder, originator_id, version)
        return
    from eventsourcing.postgres import PostgresAggregateRecorder

    if isinstance(recorder, PostgresAggregateRecorder):
        from services.store.postgres import prune_snapshots as prune_postgres

        prune_postgres(recorder, originator_id, version)
    # Any other recorder (the library's in-memory one in tests) keeps them all.


def eventsourcing_env(database_url: str) -> dict[str, str]:
    """Translate ``HUB_DATABASE_URL`` into the ``eventsourcing`` library's settings."""
    parsed = urlparse(database_url)
    if parsed.scheme == "sqlite":
        # sqlite:///relative/path.db or sqlite:////absolute/path.db or sqlite:///:memory:
        path = unquote(parsed.path[1:] if parsed.path.startswith("/") else parsed.path)
        if not path:
            raise ValueError("sqlite URL needs a file path, e.g. sqlite:///var/hub.db")
        return {
            "PERSISTENCE_MODULE": "eventsourcing.sqlite",
            "SQLITE_DBNAME": path,
            "SQLITE_LOCK_TIMEOUT": "30",
            "APPLICATION_RECORDER_TOPIC": SQLITE_RECORDER_TOPIC,
        }
    if parsed.scheme in ("postgresql", "postgres"):
        query = parse_qs(parsed.query)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": unquote(parsed.path.lstrip("/")) or "postgres",
            "POSTGRES_HOST": parsed.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parsed.port or 5432),
            "POSTGRES_USER": unquote(parsed.username or "postgres"),
            "POSTGRES_PASSWORD": unquote(parsed.password or ""),
            "POSTGRES_CONNECT_TIMEOUT": "5",
            "POSTGRES_POOL_SIZE": "5",
            "POSTGRES_LOCK_TIMEOUT": "10",
            "APPLICATION_RECORDER_TOPIC": POSTGRES_RECORDER_TOPIC,
        }
        if "schema" in query:
            env["POSTGRES_SCHEMA"] = query["schema"][0]
        return env
    raise ValueError(
        f"unsupported database URL scheme {parsed.scheme!r}: use sqlite:/// or postgresql://"
    )
