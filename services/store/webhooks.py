"""The webhook tables, beside the events in both stores: each endpoint with its
position in the feed (the hub's database keeps where each receiver stands) and a
delivery log per endpoint. Mixed into ``HubSQLiteRecorder`` and ``HubPostgresRecorder``;
the SQL is the same for both but for the placeholder and the schema prefix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ENDPOINT_COLUMNS = (
    "endpoint_id, agency, url, secret, types, enabled, position, failures, retry_at, "
    "disabled_reason, created_at"
)
DELIVERY_COLUMNS = "endpoint_id, event_id, position, attempt, at, status, ok, error, ms"


def webhook_tables(endpoints: str, deliveries: str) -> list[str]:
    return [
        f"CREATE TABLE IF NOT EXISTS {endpoints} (endpoint_id TEXT PRIMARY KEY, "
        "agency TEXT NOT NULL, url TEXT NOT NULL, secret TEXT NOT NULL, types TEXT NOT NULL, "
        "enabled INTEGER NOT NULL, position BIGINT NOT NULL, failures INTEGER NOT NULL, "
        "retry_at TEXT, disabled_reason TEXT, created_at TEXT NOT NULL)",
        f"CREATE TABLE IF NOT EXISTS {deliveries} (endpoint_id TEXT NOT NULL, "
        "event_id TEXT NOT NULL, position BIGINT NOT NULL, attempt INTEGER NOT NULL, "
        "at TEXT NOT NULL, status INTEGER, ok INTEGER NOT NULL, error TEXT, ms REAL)",
        f"CREATE INDEX IF NOT EXISTS hub_webhook_deliveries_endpoint ON {deliveries} "
        "(endpoint_id, at)",
    ]


@dataclass(frozen=True)
class WebhookEndpoint:
    endpoint_id: str
    agency: str
    url: str
    secret: str
    types: tuple[str, ...]  # event types delivered; empty: all
    enabled: bool
    position: int  # the global position delivered up to (the feed's cursor)
    failures: int  # failed attempts in a row
    retry_at: str | None  # ISO 8601 UTC: no attempt before
    disabled_reason: str | None
    created_at: str

    def public(self) -> dict[str, Any]:
        """What listings show: everything but the secret."""
        return {
            "endpoint_id": self.endpoint_id,
            "agency": self.agency,
            "url": self.url,
            "types": list(self.types),
            "enabled": self.enabled,
            "position": self.position,
            "failures": self.failures,
            "retry_at": self.retry_at,
            "disabled_reason": self.disabled_reason,
            "created_at": self.created_at,
        }


def _endpoint(row: Any) -> WebhookEndpoint:
    return WebhookEndpoint(
        endpoint_id=row["endpoint_id"],
        agency=row["agency"],
        url=row["url"],
        secret=row["secret"],
        types=tuple(t for t in row["types"].split(",") if t),
        enabled=bool(row["enabled"]),
        position=int(row["position"]),
        failures=int(row["failures"]),
        retry_at=row["retry_at"],
        disabled_reason=row["disabled_reason"],
        created_at=row["created_at"],
    )


class WebhookTables:
    """Methods over the two tables. The recorder sets ``_wh_endpoints``,
    ``_wh_deliveries`` (table names) and ``_wh_placeholder``."""

    datastore: Any
    _wh_endpoints: str
    _wh_deliveries: str
    _wh_placeholder: str

    def _wh_sql(self, text: str) -> str:
        return text.format(e=self._wh_endpoints, d=self._wh_deliveries).replace(
            "?", self._wh_placeholder
        )

    def _wh_run(self, text: str, args: tuple[Any, ...] = (), *, fetch: bool = False) -> list[Any]:
        with self.datastore.transaction(commit=not fetch) as c:
            cursor: Any = c
            cursor.execute(self._wh_sql(text), args)
            return list(cursor.fetchall()) if fetch else []

    def insert_webhook(self, endpoint: WebhookEndpoint) -> None:
        self._wh_run(
            f"INSERT INTO {{e}} ({ENDPOINT_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                endpoint.endpoint_id,
                endpoint.agency,
                endpoint.url,
                endpoint.secret,
                ",".join(endpoint.types),
                int(endpoint.enabled),
                endpoint.position,
                endpoint.failures,
                endpoint.retry_at,
                endpoint.disabled_reason,
                endpoint.created_at,
            ),
        )

    def list_webhooks(self, agency: str | None = None) -> list[WebhookEndpoint]:
        where, args = ("WHERE agency = ?", (agency,)) if agency else ("", ())
        rows = self._wh_run(
            f"SELECT {ENDPOINT_COLUMNS} FROM {{e}} {where} ORDER BY created_at, endpoint_id",
            args,
            fetch=True,
        )
        return [_endpoint(row) for row in rows]

    def find_webhook(self, endpoint_id: str) -> WebhookEndpoint | None:
        rows = self._wh_run(
            f"SELECT {ENDPOINT_COLUMNS} FROM {{e}} WHERE endpoint_id = ?",
            (endpoint_id,),
            fetch=True,
        )
        return _endpoint(rows[0]) if rows else None

    def delete_webhook(self, endpoint_id: str) -> None:
        self._wh_run("DELETE FROM {d} WHERE endpoint_id = ?", (endpoint_id,))
        self._wh_run("DELETE FROM {e} WHERE endpoint_id = ?", (endpoint_id,))

    def set_webhook_state(
        self,
        endpoint_id: str,
        *,
        enabled: bool,
        position: int,
        failures: int,
        retry_at: str | None,
        disabled_reason: str | None,
    ) -> None:
        self._wh_run(
            "UPDATE {e} SET enabled = ?, position = ?, failures = ?, retry_at = ?, "
            "disabled_reason = ? WHERE endpoint_id = ?",
            (int(enabled), position, failures, retry_at, disabled_reason, endpoint_id),
        )

    def insert_webhook_delivery(self, row: dict[str, Any]) -> None:
        self.save_webhook_progress(row["endpoint_id"], [row], None)

    def save_webhook_progress(
        self, endpoint_id: str, rows: list[dict[str, Any]], state: dict[str, Any] | None
    ) -> None:
        """Delivery log rows and the endpoint's new state in one transaction (one
        commit for a run of deliveries, not two per delivery)."""
        with self.datastore.transaction(commit=True) as c:
            cursor: Any = c
            insert = self._wh_sql(
                f"INSERT INTO {{d}} ({DELIVERY_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?)"
            )
            for row in rows:
                cursor.execute(insert, tuple(row[k.strip()] for k in DELIVERY_COLUMNS.split(",")))
            if state is not None:
                cursor.execute(
                    self._wh_sql(
                        "UPDATE {e} SET enabled = ?, position = ?, failures = ?, retry_at = ?, "
                        "disabled_reason = ? WHERE endpoint_id = ?"
                    ),
                    (
                        int(state["enabled"]),
                        state["position"],
                        state["failures"],
                        state["retry_at"],
                        state["disabled_reason"],
                        endpoint_id,
                    ),
                )

    def list_webhook_deliveries(self, endpoint_id: str, limit: int = 50) -> list[dict[str, Any]]:
        rows = self._wh_run(
            f"SELECT {DELIVERY_COLUMNS} FROM {{d}} WHERE endpoint_id = ? "
            "ORDER BY at DESC, attempt DESC LIMIT ?",
            (endpoint_id, limit),
            fetch=True,
        )
        return [
            {c.strip(): row[c.strip()] for c in DELIVERY_COLUMNS.split(",")}
            | {"ok": bool(row["ok"])}
            for row in rows
        ]
