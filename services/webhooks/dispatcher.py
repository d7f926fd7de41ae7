"""Delivers each endpoint's part of the feed, apart from recording (its own threads;
it only reads the event store and views, and writes the webhook tables and reads).

Per endpoint, in the feed's global order (so in order per case): one event at a
time, the next only after the receiver answered 2xx for this one (at least once:
the position and the delivery log are saved together, at least every 50 ms and at
the end of each run, so a restart may repeat the last deliveries; receivers
deduplicate on ``webhook-id``, the event id). A failure waits a backoff
(``HUB_WEBHOOKS_RETRY_BASE_S`` doubled per failure in a row, capped) and, after
``HUB_WEBHOOKS_MAX_FAILURES`` in a row, disables the endpoint until ``hub webhook
enable``. Endpoints are served by a small pool, so a slow one holds up only itself.
"""

from __future__ import annotations

import dataclasses
import http.client
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import structlog

from services.access import Principal
from services.feed import EventFeed, FeedPage
from services.settings import Settings
from services.store.webhooks import WebhookEndpoint
from services.webhooks import signing, targets

log = structlog.get_logger("hub.webhooks")

BATCH = 100  # events read per endpoint per turn
_ERROR_TEXT = 200  # characters of an error kept in the log (never a body: no personal data)
_SAVE_EVERY = 0.05  # seconds: deliveries in a run are saved together, at least this often


class WebhookDispatcher:
    def __init__(
        self,
        store: Any,
        feed: EventFeed,
        settings: Settings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._store = store
        self._feed = feed
        self._settings = settings
        self._clock = clock
        self._pool = ThreadPoolExecutor(settings.webhooks_workers, "hub-webhook")
        self._busy: set[str] = set()
        self._lock = threading.Lock()
        self._ssl = ssl.create_default_context()

    # ---- running --------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: each interval, serve every endpoint with something new."""
        log.info("webhooks_started")
        try:
            while not stop.is_set():
                try:
                    self.turn()
                except Exception:  # a store hiccup: log, wait, go on
                    log.exception("webhooks_turn_failed")
                stop.wait(self._settings.webhooks_poll_interval_s)
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)
            log.info("webhooks_stopped")

    def start(self) -> tuple[threading.Thread, threading.Event]:
        stop = threading.Event()
        thread = threading.Thread(target=self.run, args=(stop,), name="hub-webhooks", daemon=True)
        thread.start()
        return thread, stop

    def turn(self) -> None:
        head = self._feed.head()
        now = self._clock()
        for endpoint in self._store.list_webhooks():
            if not endpoint.enabled or endpoint.position >= head:
                continue
            if endpoint.retry_at is not None and datetime.fromisoformat(endpoint.retry_at) > now:
                continue
            with self._lock:
                if endpoint.endpoint_id in self._busy:
                    continue
                self._busy.add(endpoint.endpoint_id)
            self._pool.submit(self._serve_guarded, endpoint.endpoint_id)

    def deliver_pending(self, endpoint_id: str) -> None:
        """Serve one endpoint now, in this thread (tests, ``bench``)."""
        self._serve(endpoint_id)

    # ---- one endpoint -----------------------------------------------------------

    def _serve_guarded(self, endpoint_id: str) -> None:
        try:
            self._serve(endpoint_id)
        except Exception:
            log.exception("webhook_serve_failed", endpoint_id=endpoint_id)
        finally:
            with self._lock:
                self._busy.discard(endpoint_id)

    def _serve(self, endpoint_id: str) -> None:
        endpoint = self._store.find_webhook(endpoint_id)  # as it is now (removed? disabled?)
        if endpoint is None or not endpoint.enabled:
            return
        principal = Principal(
            role="agency",
            subject=endpoint.agency,
            name=endpoint.agency,
            user=f"webhook:{endpoint.endpoint_id}",
        )
        page = self._feed.page(principal, endpoint.position, BATCH)
        progress = _Progress(endpoint)
        for item in page.items:
            if endpoint.types and item["type"] not in endpoint.types:
                progress.position = item["position"]
                continue
            row, error = self._attempt(endpoint, item, progress.failures + 1)
            progress.rows.append(row)
            if error is not None:
                self._failed(progress, error)
                break
            progress.delivered(item)
            if time.monotonic() - progress.saved_at >= _SAVE_EVERY:
                self._save(progress)
        else:
            progress.position = max(progress.position, page.position)  # examined beyond
            self._save(progress)
        if progress.cases:
            shown = {case: c for case, c in page.to_record.items() if case in progress.cases}
            self._feed.record(principal, FeedPage([], "", False, 0, shown), scope="webhook")

    def _save(self, progress: _Progress) -> None:
        """The log rows and the position reached, in one commit (a crash before it
        repeats these deliveries: at least once)."""
        if not progress.rows and progress.position == progress.endpoint.position:
            return
        self._store.save_webhook_progress(
            progress.endpoint.endpoint_id,
            progress.rows,
            {
                "enabled": True,
                "position": progress.position,
                "failures": 0,
                "retry_at": None,
                "disabled_reason": None,
            },
        )
        progress.rows = []
        progress.saved_at = time.monotonic()

    def _attempt(
        self, endpoint: WebhookEndpoint, item: dict[str, Any], attempt: int
    ) -> tuple[dict[str, Any], str | None]:
        body = orjson.dumps({"type": item["type"], "timestamp": item["recorded_at"], "data": item})
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            status = self._post(endpoint, item["event_id"], body)
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except targets.WebhookTargetRefused as refused:
            error = f"target refused: {refused}"
        except (OSError, http.client.HTTPException) as failure:
            error = type(failure).__name__ + (f": {failure}" if str(failure) else "")
        row = {
            "endpoint_id": endpoint.endpoint_id,
            "event_id": item["event_id"],
            "position": item["position"],
            "attempt": attempt,
            "at": self._clock().isoformat(timespec="microseconds"),
            "status": status,
            "ok": int(error is None),
            "error": None if error is None else error[:_ERROR_TEXT],
            "ms": round((time.monotonic() - started) * 1000, 1),
        }
        return row, error

    def _failed(self, progress: _Progress, error: str) -> None:
        settings = self._settings
        failures = progress.failures + 1
        disabled = failures >= settings.webhooks_max_failures
        wait = min(
            settings.webhooks_retry_max_s, settings.webhooks_retry_base_s * 2 ** (failures - 1)
        )
        self._store.save_webhook_progress(
            progress.endpoint.endpoint_id,
            progress.rows,
            {
                "enabled": not disabled,
                "position": progress.position,
                "failures": failures,
                "retry_at": (self._clock() + timedelta(seconds=wait)).isoformat(
                    timespec="microseconds"
                ),
                "disabled_reason": f"{failures} failures in a row; last: {error[:_ERROR_TEXT]}"
                if disabled
                else None,
            },
        )
        progress.rows = []
        log.warning(
            "webhook_delivery_failed",
            endpoint_id=progress.endpoint.endpoint_id,
            agency=progress.endpoint.agency,
            failures=failures,
            disabled=disabled,
            error=error[:_ERROR_TEXT],
        )

    def _post(self, endpoint: WebhookEndpoint, event_id: str, body: bytes) -> int:
        target = targets.resolve(endpoint.url, allow_private=self._settings.webhooks_allow_private)
        timeout = self._settings.webhooks_timeout_s
        connection: http.client.HTTPConnection
        if target.scheme == "https":
            connection = _PinnedHTTPS(target, timeout, self._ssl)
        else:
            connection = _PinnedHTTP(target, timeout)
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "handover-hub-webhooks/1",
            **signing.headers(endpoint.secret, event_id, int(time.time()), body),
        }
        try:
            connection.request("POST", target.path, body=body, headers=headers)
            response = connection.getresponse()
            response.read(64 * 1024)  # drained, not kept
            return response.status
        finally:
            connection.close()


class _PinnedHTTP(http.client.HTTPConnection):
    """Connects to the address ``targets`` checked, names the host in ``Host``."""

    def __init__(self, target: targets.Target, timeout: float) -> None:
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = target.address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: targets.Target, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(target.host, target.port, timeout=timeout, context=context)
        self._address = target.address
        self._context_pinned = context

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), self.timeout)
        # SNI and the certificate check on the name, the connection to the checked address.
        self.sock = self._context_pinned.wrap_socket(raw, server_hostname=self.host)


@dataclasses.dataclass
class _Progress:
    """One turn of one endpoint: where it stands, what is not yet saved."""

    endpoint: WebhookEndpoint
    position: int = 0
    failures: int = 0
    rows: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    cases: set[str] = dataclasses.field(default_factory=set)
    saved_at: float = dataclasses.field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.position, self.failures = self.endpoint.position, self.endpoint.failures

    def delivered(self, item: dict[str, Any]) -> None:
        self.position, self.failures = item["position"], 0
        self.cases.add(item["case_id"])


def dispatcher_for(hub: Any) -> WebhookDispatcher:
    """The dispatcher of ``hub`` (a ``services.bootstrap.Hub``)."""
    from services.feed import feed_for

    return WebhookDispatcher(hub.app.store, feed_for(hub), hub.settings)
