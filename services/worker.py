"""The faust-streaming worker: dashboard figures from ``hub.events.v1``, at scale.

It folds the same reducers as the in-process views (``projections``) over the
relay's envelopes: case documents in one table, dashboard totals in another,
one entry per partition (so every write stays on its event's partition), and
serves the merged figures on a loopback web view. Repeated envelopes (the relay
publishes at least once) are dropped by the case document's version.
"""

from __future__ import annotations

import json
import ssl
from datetime import UTC, datetime
from typing import Any

import faust
import structlog
from prometheus_client import Counter

from projections.case_doc import reduce_case
from projections.dashboard import (
    dashboard_delta,
    dashboard_figures,
    dashboard_snapshot,
    empty_state,
    merge_states,
)
from projections.events import EventRecord
from projections.inbox import inbox_rows
from services.metrics import HubMetrics
from services.settings import Settings

log = structlog.get_logger("hub.worker")


def record_of(envelope: dict[str, Any]) -> EventRecord:
    return EventRecord(
        position=envelope["position"],
        case_id=envelope["case_id"],
        version=envelope["version"],
        type=envelope["type"],
        agency=envelope["agency"],
        actor=envelope["actor"],
        occurred_at=envelope["occurred_at"],
        recorded_at=envelope["recorded_at"],
        data=_with_withheld(envelope["payload"], envelope.get("withheld") or []),
    )


def _with_withheld(payload: dict[str, Any], withheld: list[str]) -> dict[str, Any]:
    """The payload with every withheld path back in, as None: the reducers expect the
    fields the in-process views hold as ciphertext (a plan's goals, a measure's title)."""
    data = json.loads(json.dumps(payload)) if withheld else dict(payload)
    for path in withheld:
        _put_none(data, path.split("."))
    return data


def _put_none(value: Any, keys: list[str]) -> None:
    if isinstance(value, list):  # paths run through lists without an index
        for item in value:
            _put_none(item, keys)
    elif isinstance(value, dict):
        head, rest = keys[0], keys[1:]
        if not rest:
            value.setdefault(head, None)
        elif head in value:
            _put_none(value[head], rest)


def apply_envelope(docs: Any, totals: Any, envelope: dict[str, Any], partition: int) -> bool:
    """Fold one envelope into the tables; False when it was a repeat."""
    record = record_of(envelope)
    before = docs.get(record.case_id)
    if before is not None and before["version"] >= record.version:
        return False
    snapshot = dashboard_snapshot(before)
    after = reduce_case(before, record)
    docs[record.case_id] = after
    key = f"partition-{partition}"
    state = totals.get(key) or empty_state()
    dashboard_delta(state, snapshot, after)
    totals[key] = state
    return True


def figures(docs: Any, totals: Any, now: datetime) -> dict[str, Any]:
    offers = [row for doc in docs.values() for row in inbox_rows(doc)]
    return dashboard_figures(merge_states(totals.values()), offers, now)


class WorkerMetrics(HubMetrics):
    """The worker's figures beside the process ones (``hub worker --metrics-port``)."""

    def __init__(self) -> None:
        super().__init__()
        self.events = Counter(
            "hub_worker_events_total",
            "Envelopes from the events topic: folded (applied), dropped as a repeat, or failed",
            ["outcome"],
            registry=self.registry,
        )


def broker_urls(settings: Settings) -> list[str]:
    """faust's broker list: one ``kafka://host:port`` per bootstrap server."""
    return [f"kafka://{host.strip()}" for host in (settings.kafka_bootstrap or "").split(",")]


def broker_credentials(settings: Settings) -> faust.SASLCredentials | faust.SSLCredentials | None:
    """``HUB_KAFKA_SECURITY_PROTOCOL`` and the settings beside it, as faust takes them
    (the same ones the relay and inbox give kafka-python)."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    context = None
    if protocol.endswith("SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
        context.check_hostname = settings.kafka_ssl_check_hostname
        if settings.kafka_ssl_certfile and settings.kafka_ssl_keyfile:
            context.load_cert_chain(settings.kafka_ssl_certfile, settings.kafka_ssl_keyfile)
    if protocol.startswith("SASL_"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    return faust.SSLCredentials(context)


def build_worker(settings: Settings, metrics: WorkerMetrics | None = None) -> faust.App:
    if not settings.kafka_bootstrap:
        raise SystemExit("hub worker needs HUB_KAFKA_BOOTSTRAP")
    (settings.var_dir / "faust").mkdir(parents=True, exist_ok=True)
    counted = metrics or WorkerMetrics()
    app = faust.App(
        "hub-dashboard",
        broker=broker_urls(settings),
        broker_credentials=broker_credentials(settings),
        store="memory://",
        web_host="127.0.0.1",
        web_port=settings.worker_web_port,
        topic_partitions=settings.kafka_events_partitions,
        web_in_thread=True,
        datadir=str(settings.var_dir / "faust"),
    )
    events = app.topic(settings.kafka_events_topic, value_serializer="raw", key_serializer="raw")
    docs = app.Table("hub-case-docs", default=None, partitions=settings.kafka_events_partitions)
    totals = app.Table(
        "hub-dashboard-totals", default=None, partitions=settings.kafka_events_partitions
    )

    @app.agent(events)
    async def fold(stream: Any) -> None:
        async for event in stream.events():
            try:
                envelope = json.loads(event.value)
                applied = apply_envelope(docs, totals, envelope, event.message.partition)
            except Exception as error:  # one bad envelope must not stop the agent
                log.error(  # its type and place only: the envelope may quote a value
                    "worker_envelope_failed",
                    partition=event.message.partition,
                    offset=event.message.offset,
                    error=type(error).__name__,
                )
                counted.events.labels("failed").inc()
                continue
            counted.events.labels("applied" if applied else "repeat").inc()

    @app.page("/dashboard")
    async def dashboard_page(web: Any, request: Any) -> Any:
        moment = request.query.get("now")
        try:
            now = datetime.fromisoformat(moment) if moment else datetime.now(UTC)
        except ValueError:
            return web.json(
                {"error": {"code": "invalid_request", "message": "now is ISO 8601"}}, status=400
            )
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        return web.json(figures(docs, totals, now))

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        return web.json({"status": "ok"})

    return app


def main() -> None:
    app = build_worker(Settings())
    app.main()


if __name__ == "__main__":
    main()
